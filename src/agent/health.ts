// Active TCP health checks of a cluster's endpoints, like Envoy's tcp_health_check without send
// or receive payloads: a check passes when a TCP connection is established within the timeout.
// HealthState is the pure per-endpoint state machine; TcpHealthChecker runs one check loop per
// endpoint and reports transitions. The embedded proxy owns one checker per cluster.
import net from 'node:net';
import type { Logger } from 'pino';
import type { DesiredHealthCheck } from './desired-state.js';
import type { HealthMetrics } from './metrics.js';

/** pending: not checked yet (not picked, as in Envoy, unless the cluster is in panic). */
export type CheckedHealth = 'pending' | 'healthy' | 'unhealthy';

export interface HealthThresholds {
  /** Consecutive failures that take a healthy endpoint out (unhealthy_threshold). */
  unhealthyThreshold: number;
  /** Consecutive successes that bring an unhealthy endpoint back (healthy_threshold). */
  healthyThreshold: number;
}

/**
 * Envoy's semantics (health_check.proto; HealthCheckEvent "a host will be considered healthy
 * either if it is the first ever health check, or if the healthy threshold is reached"): the
 * first result decides at once; after that, thresholds of consecutive results.
 */
export class HealthState {
  status: CheckedHealth = 'pending';
  private okStreak = 0;
  private failStreak = 0;

  constructor(public thresholds: HealthThresholds) {}

  /** Records one check result; returns the new status when it changed. */
  record(ok: boolean): CheckedHealth | undefined {
    if (ok) {
      this.failStreak = 0;
      this.okStreak++;
    } else {
      this.okStreak = 0;
      this.failStreak++;
    }
    const before = this.status;
    if (before === 'pending') this.status = ok ? 'healthy' : 'unhealthy';
    else if (before === 'healthy' && this.failStreak >= Math.max(1, this.thresholds.unhealthyThreshold)) this.status = 'unhealthy';
    else if (before === 'unhealthy' && this.okStreak >= Math.max(1, this.thresholds.healthyThreshold)) this.status = 'healthy';
    return this.status !== before ? this.status : undefined;
  }
}

export interface HealthTarget {
  key: string;
  address: string;
  port: number;
}

export interface CheckOutcome {
  ok: boolean;
  /** success, timeout, refused, unreachable, error */
  result: 'success' | 'timeout' | 'refused' | 'unreachable' | 'error';
  detail?: string;
  ms: number;
}

export interface HealthTransition {
  cluster: string;
  key: string;
  from: CheckedHealth;
  to: CheckedHealth;
  /** The check result that caused it. */
  outcome: CheckOutcome;
}

export interface TcpHealthCheckerOptions {
  cluster: string;
  config: DesiredHealthCheck;
  logger: Logger;
  onTransition: (t: HealthTransition) => void;
  metrics?: HealthMetrics;
  /** First check of an endpoint after a random delay in [0, min(interval, this)) so checks spread out (default 1000 ms). */
  initialJitterMs?: number;
  rng?: () => number;
}

interface Session {
  target: HealthTarget;
  state: HealthState;
  timer: NodeJS.Timeout | undefined;
  socket: net.Socket | undefined;
  stopped: boolean;
}

/** One TCP connect check loop per endpoint of a cluster. */
export class TcpHealthChecker {
  private readonly sessions = new Map<string, Session>();
  private config: DesiredHealthCheck;
  private readonly log: Logger;
  private stopped = false;

  constructor(private readonly opts: TcpHealthCheckerOptions) {
    this.config = opts.config;
    this.log = opts.logger.child({ cluster: opts.cluster });
  }

  /** Checks exactly these endpoints: new ones start pending, kept ones keep their state. */
  setTargets(targets: readonly HealthTarget[]): void {
    if (this.stopped) return;
    const want = new Map(targets.map((t) => [t.key, t]));
    for (const [key, s] of this.sessions) {
      if (!want.has(key)) {
        this.stopSession(s);
        this.sessions.delete(key);
      }
    }
    for (const [key, target] of want) {
      if (this.sessions.has(key)) continue;
      const s: Session = { target, state: new HealthState(this.thresholds()), timer: undefined, socket: undefined, stopped: false };
      this.sessions.set(key, s);
      const jitter = Math.min(this.config.intervalMs, this.opts.initialJitterMs ?? 1000);
      this.schedule(s, Math.floor((this.opts.rng ?? Math.random)() * jitter));
    }
  }

  /** New interval, timeout or thresholds; endpoint states are kept. */
  setConfig(config: DesiredHealthCheck): void {
    const intervalChanged = config.intervalMs !== this.config.intervalMs;
    this.config = config;
    for (const s of this.sessions.values()) {
      s.state.thresholds = this.thresholds();
      if (intervalChanged && s.timer && !s.socket) {
        clearTimeout(s.timer);
        this.schedule(s, Math.floor((this.opts.rng ?? Math.random)() * Math.min(config.intervalMs, this.opts.initialJitterMs ?? 1000)));
      }
    }
  }

  status(key: string): CheckedHealth | undefined {
    return this.sessions.get(key)?.state.status;
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.sessions.values()) this.stopSession(s);
    this.sessions.clear();
  }

  private thresholds(): HealthThresholds {
    return { unhealthyThreshold: this.config.unhealthyThreshold, healthyThreshold: this.config.healthyThreshold };
  }

  private stopSession(s: Session): void {
    s.stopped = true;
    if (s.timer) clearTimeout(s.timer);
    s.timer = undefined;
    s.socket?.destroy();
    s.socket = undefined;
  }

  private schedule(s: Session, delayMs: number): void {
    if (s.stopped) return;
    s.timer = setTimeout(() => {
      s.timer = undefined;
      void this.runCheck(s);
    }, delayMs);
  }

  private async runCheck(s: Session): Promise<void> {
    const outcome = await this.check(s);
    if (s.stopped) return;
    this.opts.metrics?.checks.inc({ cluster: this.opts.cluster, result: outcome.result });
    const from = s.state.status;
    const to = s.state.record(outcome.ok);
    if (to) {
      const log = this.log.child({ endpoint: s.target.key });
      const fields = { from, to, result: outcome.result, detail: outcome.detail, ms: Math.round(outcome.ms) };
      if (to === 'unhealthy') log.warn(fields, 'endpoint failed its health check; no new connections go to it');
      else log.info(fields, 'endpoint passed its health check; it takes new connections');
      this.opts.metrics?.transitions.inc({ cluster: this.opts.cluster, endpoint: s.target.key, to });
      this.opts.onTransition({ cluster: this.opts.cluster, key: s.target.key, from, to, outcome });
    }
    this.schedule(s, this.config.intervalMs);
  }

  private check(s: Session): Promise<CheckOutcome> {
    const started = performance.now();
    return new Promise<CheckOutcome>((resolve) => {
      let done = false;
      const sock = net.connect({ host: s.target.address, port: s.target.port });
      s.socket = sock;
      const finish = (o: Omit<CheckOutcome, 'ms'>) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.socket = undefined;
        sock.destroy();
        resolve({ ...o, ms: performance.now() - started });
      };
      const timer = setTimeout(() => finish({ ok: false, result: 'timeout', detail: `no connection within ${this.config.timeoutMs} ms` }), this.config.timeoutMs);
      sock.once('connect', () => finish({ ok: true, result: 'success' }));
      sock.once('error', (e: NodeJS.ErrnoException) => {
        const result = e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' ? 'unreachable' : 'error';
        finish({ ok: false, result, detail: e.code ?? e.message });
      });
      // Destroyed by stop(): resolve so the loop ends (runCheck sees s.stopped).
      sock.once('close', () => finish({ ok: false, result: 'error', detail: 'check stopped' }));
    });
  }
}
