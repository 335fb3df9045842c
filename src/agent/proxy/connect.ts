// Upstream connection establishment with TcpProxy semantics: each attempt picks an endpoint
// from the cluster's load balancer and connects within the cluster's connect_timeout; a failed
// attempt (refused, unreachable, timeout) moves on to another endpoint until
// max_connect_attempts are used up (Envoy tcp_proxy.proto, max_connect_attempts).
import net from 'node:net';

/**
 * Cancels what is in flight when the downstream goes away. A plain object, not an
 * AbortController: one is made per connection, and an AbortSignal (an EventTarget) cost more
 * than the rest of the connect bookkeeping together in a profile of short connections.
 */
export class Cancellation {
  private listener: (() => void) | undefined;
  private done = false;

  get cancelled(): boolean {
    return this.done;
  }

  /** Runs the current listener (at most once); later calls do nothing. */
  cancel(): void {
    if (this.done) return;
    this.done = true;
    const l = this.listener;
    this.listener = undefined;
    l?.();
  }

  /** One listener at a time (one connect attempt runs at a time); undefined removes it. */
  onCancel(l: (() => void) | undefined): void {
    this.listener = l;
  }
}

export type ConnectFailure = 'timeout' | 'refused' | 'unreachable' | 'error' | 'aborted';

export class ConnectError extends Error {
  constructor(
    readonly reason: ConnectFailure,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One TCP connect within `timeoutMs`. The socket is allowHalfOpen and paused (nothing is read
 * until the caller resumes it). Rejects with ConnectError; an abort destroys the attempt.
 */
export function connectOnce(address: string, port: number, timeoutMs: number, cancel?: Cancellation): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    if (cancel?.cancelled) return reject(new ConnectError('aborted', 'the downstream connection closed before the upstream connected'));
    const sock = net.connect({ host: address, port, allowHalfOpen: true });
    sock.pause();
    let settled = false;
    const settle = (err?: ConnectError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cancel?.onCancel(undefined);
      sock.removeListener('error', onError);
      if (err) {
        sock.destroy();
        reject(err);
      } else {
        resolve(sock);
      }
    };
    const onAbort = () => settle(new ConnectError('aborted', 'the downstream connection closed before the upstream connected'));
    const onError = (e: NodeJS.ErrnoException) => {
      const reason: ConnectFailure = e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' || e.code === 'EADDRNOTAVAIL' ? 'unreachable' : 'error';
      settle(new ConnectError(reason, `${e.code ?? 'error'}: ${e.message}`));
    };
    const timer = setTimeout(() => settle(new ConnectError('timeout', `no connection within the connect timeout of ${timeoutMs} ms`)), timeoutMs);
    cancel?.onCancel(onAbort);
    sock.once('error', onError);
    sock.once('connect', () => settle());
  });
}

export interface UpstreamTarget {
  key: string;
  address: string;
  port: number;
}

export interface AttemptRecord {
  endpoint: string;
  ok: boolean;
  reason?: ConnectFailure;
  detail?: string;
  ms: number;
}

export interface ConnectPlan {
  attempts: number;
  timeoutMs: number;
  /** Next endpoint, avoiding those already tried while others exist; undefined: none to try. */
  pick: (tried: ReadonlySet<string>) => UpstreamTarget | undefined;
  cancel?: Cancellation;
  /** Around each attempt (active-connection accounting, metrics, logs). */
  onAttemptStart?: (target: UpstreamTarget, attempt: number) => void;
  onAttemptEnd?: (target: UpstreamTarget, record: AttemptRecord) => void;
}

export type ConnectResult = { ok: true; socket: net.Socket; target: UpstreamTarget; attempts: AttemptRecord[] } | { ok: false; reason: 'no_endpoint' | 'connect_failed' | 'aborted'; attempts: AttemptRecord[] };

export async function connectUpstream(plan: ConnectPlan): Promise<ConnectResult> {
  const tried = new Set<string>();
  const attempts: AttemptRecord[] = [];
  for (let i = 1; i <= Math.max(1, plan.attempts); i++) {
    if (plan.cancel?.cancelled) return { ok: false, reason: 'aborted', attempts };
    const target = plan.pick(tried);
    if (!target) return { ok: false, reason: attempts.length === 0 ? 'no_endpoint' : 'connect_failed', attempts };
    tried.add(target.key);
    plan.onAttemptStart?.(target, i);
    const started = performance.now();
    try {
      const socket = await connectOnce(target.address, target.port, plan.timeoutMs, plan.cancel);
      const rec: AttemptRecord = { endpoint: target.key, ok: true, ms: performance.now() - started };
      attempts.push(rec);
      plan.onAttemptEnd?.(target, rec);
      return { ok: true, socket, target, attempts };
    } catch (e) {
      const err = e instanceof ConnectError ? e : new ConnectError('error', (e as Error).message);
      const rec: AttemptRecord = { endpoint: target.key, ok: false, reason: err.reason, detail: err.message, ms: performance.now() - started };
      attempts.push(rec);
      plan.onAttemptEnd?.(target, rec);
      if (err.reason === 'aborted') return { ok: false, reason: 'aborted', attempts };
    }
  }
  return { ok: false, reason: 'connect_failed', attempts };
}
