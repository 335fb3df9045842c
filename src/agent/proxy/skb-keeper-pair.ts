// The post-handover phase of one SKB-spliced pair, run in the splice keeper process on the two
// sockets the agent passed it: the kernel redirects every byte; this watches each socket for its
// peer's FIN, waits until the other socket's send queue took everything (what the agent queued
// plus what the kernel redirected), then shuts that socket's write side; an RST on one side
// resets the other; a byte reaching user space means a redirect failed, and both are reset
// rather than risk reordering; the idle timeout closes both. At the end it removes the pair's
// entries, then closes its fds (the last ones: the socket's release follows). Same rules as
// splice-skb.ts after its handover (docs/bpf.md, the pairing contract).
import { closeSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { SkbMaps } from '../bpf/datapath-skb.js';
import { dupFd, socketFd } from '../bpf/socket-syscalls.js';
import { watchKernelIdle } from './idle-watch.js';
import { afterHandoverError, redirectedBytes, waitSendQueueTook } from './skb-drain.js';
import type { KeeperDirection, KeeperEnd, KeeperEndReport, KeeperPairMeta } from './skb-keeper-protocol.js';

interface End {
  sock: Socket;
  cookie: bigint;
  /** Our own fd: tcpInfo() keeps working after Node's handle is gone. */
  fd: number | undefined;
}

class Direction {
  srcEnded = false;
  done = false;
  kernelBytes = 0n;
  constructor(
    readonly name: 'downstreamToUpstream' | 'upstreamToDownstream',
    readonly src: End,
    readonly dst: End,
    readonly before: KeeperDirection,
  ) {}
}

export interface KeptPair {
  done: Promise<KeeperEndReport>;
  /** Resets both sockets (the agent gave up on the pair). */
  reset(reason: string): void;
  /** Lets go of the pair without touching it (the agent keeps it): our fds close, `done` never settles. */
  abandon(): void;
}

/** Takes over a handed-over pair. Both sockets: allowHalfOpen, not read by anyone else. */
export function keepPair(downstream: Socket, upstream: Socket, meta: KeeperPairMeta, maps: SkbMaps | undefined, log: Logger): KeptPair {
  const ends: End[] = [
    { sock: downstream, cookie: BigInt(meta.downCookie), fd: undefined },
    { sock: upstream, cookie: BigInt(meta.upCookie), fd: undefined },
  ];
  try {
    for (const e of ends) e.fd = dupFd(socketFd(e.sock));
  } catch (err) {
    for (const e of ends) if (e.fd !== undefined) closeSync(e.fd);
    for (const e of ends) e.sock.resetAndDestroy();
    const report: KeeperEndReport = { mode: 'kernel', end: 'error', error: `cannot inspect the sockets the agent passed: ${(err as Error).message}`, kernelBytes: { downstreamToUpstream: '0', upstreamToDownstream: '0' } };
    return { done: Promise.resolve(report), reset: () => undefined, abandon: () => undefined };
  }
  const [down, up] = ends as [End, End];
  const dirs = [new Direction('downstreamToUpstream', down, up, meta.downstreamToUpstream), new Direction('upstreamToDownstream', up, down, meta.upstreamToDownstream)] as const;
  const from = (e: End) => (e === down ? dirs[0] : dirs[1]);
  let mode: KeeperEndReport['mode'] = 'kernel';
  let end: KeeperEnd = 'fin';
  let error: string | undefined;
  let finished = false;
  const closed = new Set<Socket>();
  let resolveDone!: (r: KeeperEndReport) => void;
  const done = new Promise<KeeperEndReport>((r) => (resolveDone = r));

  const releaseFds = () => {
    for (const e of ends) {
      if (e.fd !== undefined) closeSync(e.fd);
      e.fd = undefined;
    }
  };

  const finish = () => {
    if (finished || closed.size < 2 || !dirs.every((d) => d.done)) return;
    finished = true;
    stopIdle();
    // Entries first, then our fds (as in splice-skb.ts): the release program counts what it
    // still finds as left behind by its owner.
    if (maps) {
      for (const e of ends) {
        try {
          maps.forget(e.cookie);
        } catch (err) {
          log.warn({ err }, 'could not remove the SKB splice entries of a closed socket');
        }
      }
    }
    releaseFds();
    resolveDone({
      mode,
      end,
      ...(error ? { error } : {}),
      kernelBytes: { downstreamToUpstream: dirs[0].kernelBytes.toString(), upstreamToDownstream: dirs[1].kernelBytes.toString() },
    });
  };

  const resetBoth = (why: 'reset' | 'error', detail?: string) => {
    if (end === 'fin') end = why;
    if (detail && !error) error = detail;
    for (const d of dirs) d.done = true;
    releaseFds(); // our fds would keep the sockets open and swallow the RST
    for (const e of ends) if (!e.sock.destroyed) e.sock.resetAndDestroy();
    finish();
  };


  // FIN must not overtake redirected bytes: wait until dst's send queue took what the agent
  // queued and everything the kernel redirected from src (bytes_received counts the FIN as one).
  const waitDrained = (d: Direction): Promise<void> => {
    if (d.src.fd === undefined || d.dst.fd === undefined) return Promise.resolve();
    try {
      d.kernelBytes = redirectedBytes(d.src.fd, d.before.consumed + d.src.sock.bytesRead);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return waitSendQueueTook(d.dst.fd, BigInt(d.before.queued) + d.kernelBytes, meta.drainTimeoutMs, d.name);
  };

  const stopIdle = watchKernelIdle([downstream, upstream], meta.idleTimeoutMs, (quietMs) => {
    if (finished) return;
    end = 'idle';
    log.info({ idleMs: quietMs }, 'idle timeout: closing both sides');
    for (const d of dirs) d.done = true;
    for (const e of ends) e.sock.destroy();
  });

  for (const d of dirs) {
    d.src.sock.on('data', () => {
      if (finished) return;
      mode = 'broken';
      const state = maps?.pair(d.src.cookie)?.state;
      resetBoth('error', afterHandoverError(d.name, state));
    });
    d.src.sock.on('end', () => {
      if (finished) return;
      d.srcEnded = true;
      waitDrained(d)
        .then(() => {
          if (finished) return;
          d.done = true;
          if (!d.dst.sock.destroyed) d.dst.sock.end();
          finish();
        })
        .catch((e: Error) => !finished && resetBoth('error', e.message));
    });
    d.src.sock.on('error', (e: NodeJS.ErrnoException) => {
      if (finished) return;
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') resetBoth('reset');
      else resetBoth('error', `${d.name}: ${e.message}`);
    });
    d.src.sock.on('close', () => {
      closed.add(d.src.sock);
      // Closed other than by its peer's FIN and our shutdown: do not leave the other open.
      if (end !== 'idle' && !(d.srcEnded && from(d.dst).done) && !finished) resetBoth('reset');
      finish();
    });
  }

  // Reading only ever sees the end of each stream (or a byte of a failed redirect).
  for (const e of ends) e.sock.resume();

  return {
    done,
    reset(reason: string) {
      if (!finished) resetBoth('reset', reason);
    },
    abandon() {
      if (finished) return;
      finished = true; // every handler above stops here
      stopIdle();
      releaseFds();
      for (const e of ends) e.sock.destroy();
    },
  };
}
