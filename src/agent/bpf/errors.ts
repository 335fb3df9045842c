// The error type of the BPF layer: what failed, on which object, why (errno and libbpf's own
// words), what to do about it, and for a verifier rejection the useful tail of the verifier log.
import { constants } from 'node:os';
import type { LibbpfMessage } from './libbpf.js';

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

export interface BpfErrorInit {
  /** The operation, in words: `load BPF object bpf/.output/skb_splice.bpf.o`. */
  what: string;
  errno: number;
  /** Human text for errno (strerror). */
  reason: string;
  remedy?: string;
  libbpfLog?: LibbpfMessage[];
  verifierLog?: string;
  /** Program the verifier rejected, when known. */
  program?: string;
}

export class BpfError extends Error {
  readonly what: string;
  readonly errno: number;
  readonly code: string;
  readonly remedy: string | undefined;
  /** libbpf's warnings for the failed operation (debug lines left out). */
  readonly libbpfLog: string[];
  /** The full verifier log of a rejected program (see verifierTail for the useful part). */
  readonly verifierLog: string | undefined;
  readonly verifierTail: string | undefined;
  readonly program: string | undefined;

  constructor(init: BpfErrorInit) {
    const warnings = (init.libbpfLog ?? []).filter((m) => m.level !== 'debug').map((m) => m.text.replace(/^libbpf: /, ''));
    const tail = init.verifierLog ? verifierTail(init.verifierLog) : undefined;
    const parts = [`${init.what} failed: ${init.reason} (${errnoName(init.errno)})`];
    if (warnings.length > 0) parts.push(`libbpf: ${warnings.slice(-4).join('; ')}`);
    if (tail) parts.push(`verifier log of program "${init.program ?? '?'}" (tail):\n${tail}`);
    if (init.remedy) parts.push(`remedy: ${init.remedy}`);
    super(parts.join('\n'));
    this.name = 'BpfError';
    this.what = init.what;
    this.errno = init.errno;
    this.code = errnoName(init.errno);
    this.remedy = init.remedy;
    this.libbpfLog = warnings;
    this.verifierLog = init.verifierLog;
    this.verifierTail = tail;
    this.program = init.program;
  }
}

/**
 * The part of a verifier log that explains a rejection: its last lines, where the verifier states
 * the failing instruction and the reason, bounded in size. The head (every instruction it walked)
 * is noise for an operator.
 */
export function verifierTail(log: string, maxLines = 30, maxChars = 4000): string {
  const lines = log.replace(/\0[\s\S]*$/, '').trimEnd().split('\n');
  let tail = lines.slice(-maxLines);
  while (tail.join('\n').length > maxChars && tail.length > 1) tail = tail.slice(1);
  const omitted = lines.length - tail.length;
  return (omitted > 0 ? `… (${omitted} earlier lines omitted)\n` : '') + tail.join('\n');
}

/** Remedies for the errnos that operators meet in practice, by operation kind. */
export function remedyFor(errno: number, op: 'load' | 'attach' | 'pin' | 'map' | 'open'): string | undefined {
  const code = errnoName(errno);
  switch (code) {
    case 'EPERM':
      return 'run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (and raise RLIMIT_MEMLOCK on kernels before 5.11)';
    case 'ENOENT':
      return op === 'pin' || op === 'open' ? 'check that bpffs is mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf) and the path exists' : undefined;
    case 'EEXIST':
    case 'EBUSY':
      return op === 'attach' ? 'another program is already attached there; detach it first (for XDP: ip link set dev IF xdp off)' : undefined;
    case 'EINVAL':
      return op === 'pin' ? 'an existing pin does not match this object (map type, key/value size or max_entries changed): detach and unpin the old datapath, then retry' : undefined;
    case 'E2BIG':
    case 'ENOSPC':
      return op === 'map' ? 'the map is full; raise its max_entries in the agent config' : undefined;
    default:
      return undefined;
  }
}
