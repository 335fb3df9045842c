// Splices two connected TCP sockets through the SKB splice datapath: user space copies the first
// bytes, hands the connection to the kernel as soon as it holds nothing in flight (the pairing
// contract of docs/bpf.md), copies on where that moment does not come, keeps FIN ordered behind
// redirected bytes on half-close, and turns an RST on one side into an RST on the other. The
// embedded proxy puts accept, SNI and load balancing in front of it.
//
// Caller contract: both sockets are connected and were created with allowHalfOpen; every byte
// already read from either socket has been forwarded (pass it as `initial`) or deliberately
// consumed; unread bytes stay in the socket (socket.unshift).
//
// The handover, and the kernel behaviours behind its shape (Linux 6.x, measured; docs/bpf.md):
//  1. Stop reading both sockets, and read each until it holds nothing. The verdict takes whole
//     skbs from the head of the receive queue; an skb user space had read only part of would be
//     redirected whole, its first part sent twice. An empty receive queue has no such skb.
//  2. Wait until everything read is in the other socket's kernel send queue (Node's write
//     queues flushed). Bytes that arrive meanwhile wait, untouched, in the receive queues.
//  3. In one synchronous step, pair the sockets and put both into the SOCKHASH. The verdict then
//     redirects the waiting skbs and all later ones, after our bytes: nothing is reordered.
// Sockets enter the SOCKHASH only paired and ready, never earlier, because bytes a verdict
// passes to user space wait in a psock queue that the kernel discards when the socket reaches
// TCP_CLOSE or leaves the map, and that stalls behind bytes redirected into the same socket.
//
// With a splice keeper (skb-keeper.ts), the post-handover phase moves there: once a handed-over
// pair has lived keeper.afterMs (short connections stay here: passing costs two IPC round
// trips), with neither stream ended, its fds go to the keeper; once it holds them the agent
// closes its own, so the connection outlives the agent's process. Until then, and when the
// keeper is unavailable or refuses, the pair stays here.
import { closeSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { SkbMaps } from '../bpf/datapath-skb.js';
import { dupFd, inq, recvNonBlocking, sendNonBlocking, socketCookie, socketFd, tcpInfo } from '../bpf/socket-syscalls.js';
import { afterHandoverError, redirectedBytes, waitSendQueueTook } from './skb-drain.js';
import type { SkbKeeper } from './skb-keeper.js';

/** kernel: handed over; fallback: maps were there but the connection was copied to its end;
 * userspace: no maps, plain copy; broken: a redirect failed after the handover. */
export type SpliceMode = 'userspace' | 'kernel' | 'fallback' | 'broken';

/** Why a handover did not happen (when mode is fallback). */
export type FallbackReason = 'half-closed' | 'not-established' | 'queued-in-user-space' | 'kernel-refused';

export interface DirectionReport {
  /** Bytes user space copied. */
  userBytes: number;
  /** Bytes the kernel redirected (counted when the direction ends). */
  kernelBytes: bigint;
}

export interface SpliceReport {
  mode: SpliceMode;
  fallbackReason?: FallbackReason;
  /** Milliseconds from the start of the splice to the handover. */
  handoverMs?: number;
  /** Handover attempts that ran out of time before the one that worked, or before giving up. */
  handoverRetries?: number;
  downstreamToUpstream: DirectionReport;
  upstreamToDownstream: DirectionReport;
  /** fin: both directions ended in order; reset: an RST ended it; error: a local failure; idle: the keeper's idle timeout closed it. */
  end: 'fin' | 'reset' | 'error' | 'idle';
  error?: string;
}

export interface SkbSpliceOptions {
  /** The pinned SKB maps; without them the sockets are piped in user space. */
  maps?: SkbMaps;
  /**
   * How long one handover attempt may keep both sockets unread while our bytes drain into the
   * peers' send queues (default 2 s). After that user space copies again and tries later,
   * HANDOVER_ATTEMPTS times in all, then copies the connection to its end. 0 gives up at the
   * first look when user space holds bytes in flight, without retrying (tests use it).
   */
  handoverTimeoutMs?: number;
  /** How long ending a direction may wait for the kernel's bytes (default 30 s). */
  drainTimeoutMs?: number;
  /** Bytes already read from the downstream socket, to send upstream first. */
  initial?: Buffer;
  logger?: Logger;
  /** Passes the pair to the splice keeper after the handover (absent: the pair stays here). */
  keeper?: SkbKeeper;
  /** For the keeper: the connection id and listener its log lines name. */
  connId?: string;
  listener?: string;
  /** For the keeper: TcpProxy idle_timeout in ms (0: none); here the proxy watches it. */
  idleTimeoutMs?: number;
}

interface End {
  sock: Socket;
  cookie: bigint | undefined;
  /** Our own fd for the socket: it outlives Node's handle until we are done with the socket. */
  fd: number | undefined;
}

class Direction {
  queued = 0;
  flushed = 0;
  userBytes = 0;
  kernelBytes = 0n;
  /** Bytes we read with recv() on our own fd (the read up to the skb boundary). */
  rawRead = 0;
  /** src.bytesRead when we last read src up to an skb boundary. */
  alignedAt = -1;
  srcEnded = false;
  /** dst's Node write queue is over its high-water mark: src waits. */
  blocked = false;
  /** dst has been half-closed (or given up on). */
  done = false;

  constructor(
    readonly name: 'downstreamToUpstream' | 'upstreamToDownstream',
    readonly src: End,
    readonly dst: End,
  ) {}

  /** Bytes of src's stream that reached user space. */
  consumed(): number {
    return this.src.sock.bytesRead + this.rawRead;
  }

  report(): DirectionReport {
    return { userBytes: this.userBytes, kernelBytes: this.kernelBytes };
  }
}

/** Node's stream handle: readStop/readStart are what net.Socket itself uses for flow control. */
interface StreamHandle {
  reading?: boolean;
  readStop?: () => number;
  readStart?: () => number;
}

const TCP_ESTABLISHED = 1;

// How much more than was queued when it began one pass of step 1 reads before it waits (below).
const ALIGN_SLACK = 1 << 20;
// What one recv() of step 1 may take beyond the queue's size: bytes that arrive between FIONREAD
// and recv() (a GRO skb is at most 64 KB).
const RECV_SLACK = 64 * 1024;
// A handover attempt that runs out of time (a starved proxy, a slow peer) is retried after a
// backoff, so that a moment's load does not leave a long connection in user space for good.
const HANDOVER_ATTEMPTS = 4;
const RETRY_BACKOFF_MS = 250;

export function spliceSkb(downstream: Socket, upstream: Socket, opts: SkbSpliceOptions = {}): Promise<SpliceReport> {
  const maps = opts.maps;
  const handoverTimeoutMs = opts.handoverTimeoutMs ?? 2_000;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 30_000;
  const log = opts.logger;
  const started = Date.now();

  const ends: End[] = [downstream, upstream].map((sock) => ({ sock, cookie: undefined, fd: undefined }));
  let mode: SpliceMode = 'userspace';
  if (maps) {
    try {
      for (const e of ends) {
        e.cookie = socketCookie(socketFd(e.sock));
        e.fd = dupFd(socketFd(e.sock));
      }
      mode = 'fallback'; // until handed over
    } catch (err) {
      log?.warn({ err }, 'cannot inspect the sockets; splicing in user space');
      for (const e of ends) if (e.fd !== undefined) closeSync(e.fd);
      for (const e of ends) e.fd = undefined;
    }
  }
  const [down, up] = ends as [End, End];
  const dirs = [new Direction('downstreamToUpstream', down, up), new Direction('upstreamToDownstream', up, down)] as const;
  const from = (e: End) => (e === down ? dirs[0] : dirs[1]);

  /** copy: user space copies; draining: step 2 of the handover; final: no handover any more. */
  let phase: 'copy' | 'draining' | 'final' = maps && mode === 'fallback' ? 'copy' : 'final';
  let drainingSince = 0;
  let fallbackReason: FallbackReason | undefined;
  let handoverMs: number | undefined;
  let retries = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let end: SpliceReport['end'] = 'fin';
  let error: string | undefined;
  let finished = false;
  /** pending: sent to the keeper, not yet adopted (nothing reads the sockets); kept: the keeper has them. */
  let keeperState: 'pending' | 'kept' | undefined;
  const closed = new Set<Socket>();

  return new Promise<SpliceReport>((resolve) => {
    const releaseFds = () => {
      for (const e of ends) {
        if (e.fd !== undefined) closeSync(e.fd);
        e.fd = undefined;
      }
    };

    const finish = () => {
      if (finished || closed.size < 2 || !dirs.every((d) => d.done)) return;
      finished = true;
      // Entries first, then our fds: the last fd's release runs the kernel's own cleanup, which
      // counts what it still finds (socks_cleaned) as left behind by its owner.
      if (maps && mode !== 'userspace') {
        for (const e of ends) {
          try {
            maps.forget(e.cookie!);
          } catch (err) {
            log?.warn({ err }, 'could not remove the SKB splice entries of a closed socket');
          }
        }
      }
      releaseFds();
      resolve(report());
    };

    const report = (): SpliceReport => ({
      mode,
      ...(fallbackReason && mode === 'fallback' ? { fallbackReason } : {}),
      ...(handoverMs !== undefined ? { handoverMs } : {}),
      ...(retries > 0 ? { handoverRetries: retries } : {}),
      downstreamToUpstream: dirs[0].report(),
      upstreamToDownstream: dirs[1].report(),
      end,
      ...(error ? { error } : {}),
    });

    const resetBoth = (why: 'reset' | 'error', detail?: string) => {
      if (end === 'fin') end = why;
      if (detail && !error) error = detail;
      if (detail) log?.warn({ detail }, 'splice reset');
      for (const d of dirs) d.done = true;
      releaseFds(); // our fds would keep the sockets open and swallow the RST
      for (const e of ends) if (!e.sock.destroyed) e.sock.resetAndDestroy();
      finish();
    };

    const forward = (d: Direction, chunk: Buffer): boolean => {
      const len = chunk.length;
      d.userBytes += len;
      d.queued += len;
      return d.dst.sock.write(chunk, (err) => {
        if (err) return;
        d.flushed += len;
        maybeHandover();
      });
    };

    // Node reads a socket while it flows; during the handover's draining neither socket may be
    // read, not even into Node's buffer (pause() alone lets Node read up to its high-water mark).
    // So the handle's reading is stopped, and its `reading` flag left set so that Node does not
    // start it again behind our back (a pending resume would); both are restored afterwards.
    const stopped = new Set<StreamHandle>();
    const handleOf = (sock: Socket) => (sock as unknown as { _handle?: StreamHandle | null })._handle ?? undefined;
    const flow = () => {
      if (keeperState) return; // the keeper reads them, or will
      for (const d of dirs) {
        if (d.srcEnded || d.src.sock.destroyed) continue;
        const h = handleOf(d.src.sock);
        if (phase === 'draining' || d.blocked) d.src.sock.pause();
        if (phase === 'draining') {
          if (h?.readStop && h.readStart && !stopped.has(h)) {
            h.readStop();
            h.reading = true;
            stopped.add(h);
          }
        } else {
          if (h && stopped.delete(h)) h.readStart!();
          if (!d.blocked) d.src.sock.resume();
        }
      }
    };

    const giveUp = (why: FallbackReason) => {
      if (phase === 'final') return;
      if (retryTimer) clearTimeout(retryTimer);
      fallbackReason = why;
      phase = 'final';
      flow(); // copy at full speed from now on
    };

    // Out of time while draining: copy on for a while, and try again.
    const retryLater = () => {
      if (phase !== 'draining') return;
      if (drainTimer) clearTimeout(drainTimer);
      drainTimer = undefined;
      if (handoverTimeoutMs <= 0 || retries + 1 >= HANDOVER_ATTEMPTS) return giveUp('queued-in-user-space');
      const delay = RETRY_BACKOFF_MS * 2 ** retries;
      retries++;
      log?.debug({ retries, delayMs: delay }, 'handover: bytes still in flight in user space; copying, retrying later');
      phase = 'copy';
      flow(); // Node reads again
      retryTimer = setTimeout(() => {
        retryTimer = undefined;
        maybeHandover();
      }, delay);
    };

    // A failed send (the peer reset) leaves the bytes to Node's write, which reports it as usual.
    const sendDirect = (fd: number, c: Buffer): number => {
      try {
        return sendNonBlocking(fd, c);
      } catch {
        return 0;
      }
    };

    // Step 1: stop reading; hand Node's buffered bytes on; read each socket until its receive
    // queue is empty. Repeated whenever Node managed to read meanwhile (alignedAt tells), since
    // Node's last read may have ended inside an skb. (Reading exactly FIONREAD bytes is not
    // enough: TCP coalesces a newly arrived skb into the tail of the receive queue, so the old
    // end of the queue can end up inside an skb; an empty queue has no tail to grow.)
    // A recv() that returns less than its buffer ran out of queue: TCP holds the socket while
    // it copies (arrivals wait in the backlog) and frees each skb it has copied whole, so that
    // recv() left the queue empty, whatever arrives next. Waiting for EAGAIN instead can take
    // forever when the sender is faster than this loop (measured: a starved proxy read a whole
    // 100 MB stream here). One recv() a little larger than the queue usually settles it; a pass
    // reads at most what was queued when it began plus ALIGN_SLACK, and if that ends it, the
    // next pass comes after our writes are flushed (maybeHandover).
    const align = () => {
      flow();
      for (const d of dirs) {
        // read() hands Node's buffered bytes to the 'data' handler, which forwards them
        while (d.src.sock.readableLength > 0 && d.src.sock.read() !== null);
        const chunks: Buffer[] = [];
        let budget: number | undefined; // set from the first FIONREAD of the pass
        let empty = false;
        while (!empty && (budget === undefined || budget > 0)) {
          // Sized to the queue, so that a connection with nothing queued (most short ones)
          // allocates nothing.
          const queued = inq(d.src.fd!);
          budget ??= queued + ALIGN_SLACK;
          if (queued === 0) {
            empty = true;
            break;
          }
          const buf = Buffer.allocUnsafe(queued + RECV_SLACK);
          const n = recvNonBlocking(d.src.fd!, buf) ?? 0;
          if (n > 0) chunks.push(buf.subarray(0, n));
          budget -= n;
          empty = n < buf.length; // 0: end of stream, which Node sees too
        }
        // Forwarded after reading: a write can take long enough for more bytes to arrive. When
        // nothing of ours is in flight, straight into dst's kernel send queue: if it takes them
        // all, the handover follows at once, while the receive queues are still (nearly) empty.
        for (const c of chunks) {
          d.rawRead += c.length;
          const sent = d.flushed === d.queued && d.dst.sock.writableLength === 0 ? sendDirect(d.dst.fd!, c) : 0;
          d.userBytes += sent;
          d.queued += sent;
          d.flushed += sent;
          if (sent < c.length) forward(d, sent > 0 ? c.subarray(sent) : c);
        }
        d.alignedAt = empty ? d.src.sock.bytesRead : -1;
      }
    };

    // Steps 2 and 3. Called at start, and after every flush while draining.
    const maybeHandover = () => {
      if (phase === 'final' || finished || !maps) return;
      if (ends.some((e) => e.sock.destroyed || e.fd === undefined)) return;
      // The kernel takes only ESTABLISHED sockets into a SOCKHASH: once either side has
      // half-closed, the connection is copied to its end.
      if (dirs.some((d) => d.srcEnded || d.done)) return giveUp('half-closed');
      if (retryTimer) return; // copying until the next attempt
      try {
        if (phase === 'copy') {
          phase = 'draining';
          drainingSince = Date.now();
          flow(); // reading stops here
        }
        // Step 2 before (re)reading: while our writes drain, the receive queues fill and the
        // senders stop at the window, so a pass can find an end.
        const waitFlush = () => {
          if (!dirs.some((d) => d.flushed !== d.queued)) return false;
          if (Date.now() - drainingSince >= handoverTimeoutMs) retryLater();
          else if (handoverTimeoutMs > 0) drainTimer ??= setTimeout(onDrainTimeout, handoverTimeoutMs);
          return true; // each flush calls us again
        };
        if (waitFlush()) return;
        if (dirs.some((d) => d.src.sock.bytesRead !== d.alignedAt || d.src.sock.readableLength > 0)) {
          align();
          if (waitFlush()) return;
        }
        const states = ends.map((e) => tcpInfo(e.fd!).state);
        if (states.some((st) => st !== TCP_ESTABLISHED)) {
          log?.debug({ states }, 'handover: a socket is past ESTABLISHED');
          return giveUp('not-established');
        }
      } catch (err) {
        return resetBoth('error', `handover: ${(err as Error).message}`);
      }
      let result: 'done' | 'refused';
      try {
        result = maps.handover({ cookie: down.cookie!, fd: down.fd! }, { cookie: up.cookie!, fd: up.fd! });
      } catch (err) {
        // One socket may already redirect into the other: copying on could reorder bytes.
        return resetBoth('error', `handover failed half-way: ${(err as Error).message}`);
      }
      if (drainTimer) clearTimeout(drainTimer);
      if (result === 'refused') return giveUp('kernel-refused');
      mode = 'kernel';
      handoverMs = Date.now() - started;
      phase = 'final';
      const keeper = opts.keeper;
      if (keeper && keeper.afterMs <= 0 && passToKeeper()) return; // nothing reads the sockets until the keeper answers
      flow(); // Node keeps reading: from now on it can only see the end of each stream
      if (keeper && keeper.afterMs > 0) {
        setTimeout(() => {
          if (!finished && !passToKeeper()) flow();
        }, keeper.afterMs).unref();
      }
    };

    // The pair goes to the keeper only once nothing but the kernel moves its bytes: after the
    // handover, and before either stream ended here (once Node has read a FIN, the agent is
    // already ending that direction, and two processes must not both do it). Reading stops in
    // the same synchronous step, so no end of stream can slip in between.
    const passToKeeper = (): boolean => {
      if (!opts.keeper || finished || mode !== 'kernel' || keeperState) return false;
      if (ends.some((e) => e.sock.destroyed || e.fd === undefined)) return false;
      // _readableState.ended: Node has read the end of the stream, though it may not have emitted 'end' yet.
      if (dirs.some((d) => d.srcEnded || d.done || (d.src.sock as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended)) return false;
      const meta = {
        connId: opts.connId ?? `${down.cookie}`,
        listener: opts.listener ?? '',
        downCookie: `${down.cookie}`,
        upCookie: `${up.cookie}`,
        downstreamToUpstream: { consumed: dirs[0].consumed(), queued: dirs[0].queued, userBytes: dirs[0].userBytes },
        upstreamToDownstream: { consumed: dirs[1].consumed(), queued: dirs[1].queued, userBytes: dirs[1].userBytes },
        drainTimeoutMs,
        idleTimeoutMs: opts.idleTimeoutMs ?? 0,
      };
      const t = opts.keeper.transfer(meta, down.fd!, up.fd!);
      if (!t) return false;
      keeperState = 'pending';
      for (const d of dirs) {
        const h = handleOf(d.src.sock);
        if (h?.readStop && h.readStart && !stopped.has(h)) {
          h.readStop();
          h.reading = true; // as during the draining: Node must not start it again behind our back
          stopped.add(h);
        }
      }
      void t.adopted.then((ok) => {
        if (finished) {
          // We reset the connection meanwhile: the keeper's copies must go too.
          if (ok) t.reset('the agent reset the pair before the keeper took it');
          return;
        }
        if (!ok) {
          keeperState = undefined;
          flow();
          return;
        }
        keeperState = 'kept';
        // Our copies go: from now on the keeper's fds are what keeps the connection open.
        for (const e of ends) e.sock.destroy();
        releaseFds();
        void t.ended.then((r) => {
          if (finished) return;
          finished = true;
          mode = r.mode;
          end = r.end;
          if (r.error) error = r.error;
          dirs[0].kernelBytes = BigInt(r.kernelBytes.downstreamToUpstream);
          dirs[1].kernelBytes = BigInt(r.kernelBytes.upstreamToDownstream);
          resolve(report());
        });
      });
      return true;
    };

    let drainTimer: NodeJS.Timeout | undefined;
    const onDrainTimeout = () => {
      drainTimer = undefined;
      if (!finished) retryLater();
    };

    // After the handover no byte should reach user space: the verdict passes one only when a
    // redirect failed (the peer left the SOCKHASH). Reset rather than risk reordering.
    const onDataAfterHandover = (d: Direction) => {
      const state = maps!.pair(d.src.cookie!)?.state;
      mode = 'broken';
      resetBoth('error', afterHandoverError(d.name, state));
    };

    // FIN must not overtake redirected bytes: the kernel queues them to dst asynchronously. The
    // bytes src received that we did not consume were redirected; wait until dst's send queue
    // has taken them all, and ours.
    const waitDrained = (d: Direction): Promise<void> => {
      if (mode !== 'kernel' || d.src.fd === undefined || d.dst.fd === undefined) return Promise.resolve();
      try {
        d.kernelBytes = redirectedBytes(d.src.fd, d.consumed());
      } catch (e) {
        return Promise.reject(e as Error);
      }
      return waitSendQueueTook(d.dst.fd, BigInt(d.queued) + d.kernelBytes, drainTimeoutMs, d.name);
    };

    for (const d of dirs) {
      d.src.sock.on('data', (chunk: Buffer) => {
        if (keeperState === 'kept') return;
        if (mode === 'kernel' || mode === 'broken') return onDataAfterHandover(d);
        if (!forward(d, chunk) && !d.blocked) {
          d.blocked = true;
          flow();
          d.dst.sock.once('drain', () => {
            d.blocked = false;
            flow();
          });
        }
      });
      d.src.sock.on('end', () => {
        if (keeperState === 'kept') return;
        d.srcEnded = true;
        giveUp('half-closed'); // no-op once handed over (phase final)
        waitDrained(d)
          .then(() => {
            d.done = true;
            if (!d.dst.sock.destroyed) d.dst.sock.end();
            finish();
          })
          .catch((e: Error) => resetBoth('error', e.message));
      });
      d.src.sock.on('error', (e: NodeJS.ErrnoException) => {
        if (keeperState === 'kept') return;
        if (e.code === 'ECONNRESET' || e.code === 'EPIPE') resetBoth('reset');
        else resetBoth('error', `${d.name}: ${e.message}`);
      });
      d.src.sock.on('close', () => {
        if (keeperState === 'kept') return;
        closed.add(d.src.sock);
        if (drainTimer) clearTimeout(drainTimer);
        if (retryTimer) clearTimeout(retryTimer);
        // A socket closes normally once it has read its peer's FIN and we have shut its write
        // side. Closed any other way (destroyed locally, reset): do not leave the other open.
        if (!(d.srcEnded && from(d.dst).done) && !finished) resetBoth('reset');
        finish();
      });
    }

    if (opts.initial && opts.initial.length > 0) forward(dirs[0], opts.initial);
    maybeHandover();
    flow();
  });
}
