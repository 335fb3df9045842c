// Where the compiled BPF objects live (bpf/.output/, built by `npm run build:bpf`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const OUTPUT = fileURLToPath(new URL('../../../bpf/.output/', import.meta.url));

/** Path of a compiled object, e.g. bpfObjectPath('skb_splice') or bpfObjectPath('test/tc_count'). */
export function bpfObjectPath(name: string): string {
  const path = `${OUTPUT}${name}.bpf.o`;
  if (!existsSync(path)) throw new Error(`BPF object ${path} is missing; build it with: npm run build:bpf (needs clang, libbpf-dev, bpftool)`);
  return path;
}
