// Runs synchronous kernel work inside another network namespace: setns(2) on the calling thread
// only, and back before returning. Interface indexes, XDP and tc attachments, devmap entries,
// bpf_fib_lookup in BPF_PROG_TEST_RUN and netlink all resolve against the caller thread's
// namespace, so tests and benchmarks (which run in the root namespace) use this to act inside
// a topology host. The callback must be synchronous: nothing else of this process runs on the
// thread while it is switched, so no socket is created in the wrong namespace by accident.
import { closeSync, openSync } from 'node:fs';
import koffi from 'koffi';
import { BpfError } from './errors.js';
import { lastErrno, strerror } from './libbpf.js';

const CLONE_NEWNET = 0x40000000;

let setnsFn: ((fd: number, nstype: number) => number) | undefined;
let ifNameToIndexFn: ((name: string) => number) | undefined;

function libc(): { setns: (fd: number, nstype: number) => number; ifNameToIndex: (name: string) => number } {
  if (!setnsFn || !ifNameToIndexFn) {
    const lib = koffi.load('libc.so.6');
    setnsFn = lib.func('int setns(int fd, int nstype)') as (fd: number, nstype: number) => number;
    ifNameToIndexFn = lib.func('unsigned int if_nametoindex(const char *ifname)') as (name: string) => number;
  }
  return { setns: setnsFn, ifNameToIndex: ifNameToIndexFn };
}

function enter(fd: number, what: string): void {
  if (libc().setns(fd, CLONE_NEWNET) !== 0) {
    const errno = lastErrno();
    throw new BpfError({ what: `enter network namespace ${what} (setns)`, errno, reason: strerror(errno), remedy: 'run as root (CAP_SYS_ADMIN) and check that the namespace exists' });
  }
}

/** Runs fn with this thread in the network namespace at nsPath (e.g. /var/run/netns/NAME). */
export function withNetns<T>(nsPath: string | undefined, fn: () => T): T {
  if (!nsPath) return fn();
  const home = openSync('/proc/thread-self/ns/net', 'r');
  try {
    const target = openSync(nsPath, 'r');
    try {
      enter(target, nsPath);
    } finally {
      closeSync(target);
    }
    try {
      const r = fn();
      if (r instanceof Promise) throw new Error('withNetns: the callback must be synchronous');
      return r;
    } finally {
      enter(home, 'of this process (returning)');
    }
  } finally {
    closeSync(home);
  }
}

/** if_nametoindex in the current (thread's) namespace; throws naming the interface when absent. */
export function ifIndex(name: string): number {
  const i = libc().ifNameToIndex(name);
  if (!i) throw new Error(`interface "${name}" not found in this network namespace (if_nametoindex: ${strerror(lastErrno())})`);
  return i;
}
