// The user-space path: copies bytes between the downstream and upstream sockets until both
// directions end. Backpressure: a source is paused while its destination's send buffer is full.
// Half-close: a FIN from one side becomes a FIN (shutdown of the write side) on the other, and
// the other direction keeps flowing. RST: a reset on one side resets the other. Idle timeout:
// no byte in either direction for that long closes both (TcpProxy idle_timeout).
import type { Socket } from 'node:net';

export type CopyDirection = 'downstream_to_upstream' | 'upstream_to_downstream';

export interface CopyOptions {
  /** Bytes already read from the downstream (the ClientHello): sent upstream first. */
  initial?: Buffer;
  /**
   * The downstream's FIN was already consumed (a client that sent its first bytes and FIN at
   * once, read during TLS inspection): the upstream gets the initial bytes, then FIN.
   */
  downstreamEnded?: boolean;
  /** Close both sides after this long without a byte in either direction; 0 or absent: never. */
  idleTimeoutMs?: number;
  /** Called for every chunk copied (metrics). */
  onBytes?: (direction: CopyDirection, bytes: number) => void;
  /** Where the idle-timeout line goes (a pino Logger will do). */
  logger?: { info(fields: object, msg: string): void };
}

export interface CopyResult {
  downstreamToUpstream: number;
  upstreamToDownstream: number;
  /** fin: both directions ended with FIN; reset: a side was reset; idle: the idle timeout closed it; error: a local socket error. */
  end: 'fin' | 'reset' | 'idle' | 'error';
  error?: string;
}

/**
 * Both sockets must be connected, created with allowHalfOpen, and not yet flowing (paused, or
 * never read); the copy resumes them. Resolves once both sockets are closed.
 */
export function copyStreams(downstream: Socket, upstream: Socket, opts: CopyOptions = {}): Promise<CopyResult> {
  return new Promise<CopyResult>((resolve) => {
    const counts = { downstreamToUpstream: 0, upstreamToDownstream: 0 };
    let end: CopyResult['end'] = 'fin';
    let error: string | undefined;
    let finished = false;
    const ended = new Set<Socket>(); // sockets whose peer sent FIN
    const closed = new Set<Socket>();
    let idleTimer: NodeJS.Timeout | undefined;
    let lastActivity = Date.now();

    const finish = () => {
      if (finished || closed.size < 2) return;
      finished = true;
      if (idleTimer) clearTimeout(idleTimer);
      resolve({ ...counts, end, ...(error ? { error } : {}) });
    };

    const abort = (why: 'reset' | 'error' | 'idle', detail?: string) => {
      if (end === 'fin') end = why;
      if (detail && !error) error = detail;
      for (const s of [downstream, upstream]) {
        if (s.destroyed) continue;
        // Idle: close as Envoy does (FIN unless data is unread); reset and errors: RST.
        if (why === 'idle') s.destroy();
        else s.resetAndDestroy();
      }
    };

    const armIdle = () => {
      const ms = opts.idleTimeoutMs ?? 0;
      if (ms <= 0) return;
      // One timer re-armed lazily: check the last activity when it fires.
      idleTimer = setTimeout(function check() {
        const quiet = Date.now() - lastActivity;
        if (quiet >= ms) {
          opts.logger?.info({ idleMs: quiet }, 'idle timeout: closing both sides');
          abort('idle');
        } else {
          idleTimer = setTimeout(check, ms - quiet);
        }
      }, ms);
    };

    const pipe = (src: Socket, dst: Socket, direction: CopyDirection, key: keyof typeof counts) => {
      src.on('data', (chunk: Buffer) => {
        lastActivity = Date.now();
        counts[key] += chunk.length;
        opts.onBytes?.(direction, chunk.length);
        if (dst.destroyed) return;
        if (!dst.write(chunk)) {
          src.pause();
          dst.once('drain', () => src.resume());
        }
      });
      src.on('end', () => {
        ended.add(src);
        // FIN after the bytes already queued on dst; the other direction keeps going.
        if (!dst.destroyed) dst.end();
      });
      src.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'ECONNRESET' || e.code === 'EPIPE') abort('reset');
        else abort('error', `${direction === 'downstream_to_upstream' ? 'downstream' : 'upstream'}: ${e.code ?? e.message}`);
      });
      src.on('close', () => {
        closed.add(src);
        // A socket closes cleanly after its peer's FIN and our FIN to it. Closed any other way
        // (reset, destroyed): do not leave the other side open.
        const clean = ended.has(src) && ended.has(dst);
        if (!clean && !finished && end === 'fin') abort('reset');
        finish();
      });
    };

    pipe(downstream, upstream, 'downstream_to_upstream', 'downstreamToUpstream');
    pipe(upstream, downstream, 'upstream_to_downstream', 'upstreamToDownstream');
    if (opts.initial && opts.initial.length > 0) {
      counts.downstreamToUpstream += opts.initial.length;
      opts.onBytes?.('downstream_to_upstream', opts.initial.length);
      upstream.write(opts.initial);
    }
    if (opts.downstreamEnded) {
      ended.add(downstream);
      upstream.end();
    }
    armIdle();
    downstream.resume();
    upstream.resume();
  });
}
