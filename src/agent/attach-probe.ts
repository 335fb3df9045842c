// Which BPF attach types work on this node, probed once at start: the program types the agent's
// datapaths load (libbpf_probe_bpf_prog_type loads a trivial program of each type, so this also
// proves the privileges), and the link kinds that depend on the kernel version. The result goes
// into the Node metadata, so the control plane and operators see what each node can do.
import { release } from 'node:os';
import koffi from 'koffi';
import { libbpf, withLibbpfLog } from './bpf/libbpf.js';

/** Program types (enum bpf_prog_type) behind each capability. */
const PROG_TYPES = { cgroup_sock: 2, tc: 3, xdp: 6, sockops: 13, sk_skb: 14, sk_lookup: 30 } as const;

export type AttachCapability = keyof typeof PROG_TYPES | 'tcx' | 'sockmap_link';

export interface AttachProbe {
  /** Capabilities that work here, e.g. ["cgroup_sock", "sk_lookup", "sk_skb", "sockops", "tc", "tcx", "xdp"]. */
  supported: AttachCapability[];
  /** Why each missing capability is missing. */
  missing: Partial<Record<AttachCapability, string>>;
  kernel: string;
}

/** Major and minor of a kernel release string ("6.18.44-fc" → [6, 18]). */
export function kernelVersion(rel: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

function atLeast(v: [number, number], major: number, minor: number): boolean {
  return v[0] > major || (v[0] === major && v[1] >= minor);
}

let probeFn: ((type: number, opts: null) => number) | undefined;

export function probeAttachTypes(): AttachProbe {
  const kernel = release();
  const v = kernelVersion(kernel);
  const supported: AttachCapability[] = [];
  const missing: AttachProbe['missing'] = {};
  try {
    libbpf(); // loads libbpf.so.1 with its log capture
    probeFn ??= koffi.load('libbpf.so.1').func('int libbpf_probe_bpf_prog_type(int prog_type, const void *opts)') as (type: number, opts: null) => number;
  } catch (e) {
    const why = `libbpf.so.1 could not be loaded: ${(e as Error).message}`;
    for (const k of [...Object.keys(PROG_TYPES), 'tcx', 'sockmap_link'] as AttachCapability[]) missing[k] = why;
    return { supported, missing, kernel };
  }
  for (const [name, type] of Object.entries(PROG_TYPES) as Array<[keyof typeof PROG_TYPES, number]>) {
    const { value: r } = withLibbpfLog(() => probeFn!(type, null));
    if (r === 1) supported.push(name);
    else missing[name] = r === 0 ? `the kernel does not load ${name} programs` : `probing failed (${r}); the agent needs CAP_BPF and CAP_NET_ADMIN (or root)`;
  }
  if (supported.includes('tc') && atLeast(v, 6, 6)) supported.push('tcx');
  else missing.tcx = 'TCX links need Linux 6.6 (netlink tc is used instead)';
  if (supported.includes('sk_skb') && atLeast(v, 6, 10)) supported.push('sockmap_link');
  else missing.sockmap_link = 'sockmap links need Linux 6.10 (bpf_prog_attach to the map is used instead)';
  supported.sort();
  return { supported, missing, kernel };
}
