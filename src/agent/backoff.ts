// Jittered exponential backoff for reconnecting to the control plane. Pure: the caller owns the
// timer. Like Envoy's JitteredExponentialBackOffStrategy (base 500 ms, cap 30 s) the ceiling
// doubles per failed attempt; the delay is drawn from the upper half below the ceiling, so a
// fleet of agents that lost the control plane at once does not reconnect in lockstep, and no
// agent retries much sooner than planned.

export interface BackoffOptions {
  /** First ceiling (default 500 ms). */
  initialMs?: number;
  /** Largest ceiling (default 30 s). */
  maxMs?: number;
  /** Random source in [0, 1) (tests pass a fixed one). */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = opts.initialMs ?? 500;
    this.maxMs = opts.maxMs ?? 30_000;
    this.random = opts.random ?? Math.random;
    if (!(this.initialMs > 0) || !(this.maxMs >= this.initialMs)) {
      throw new Error(`backoff needs 0 < initialMs <= maxMs (got ${this.initialMs} and ${this.maxMs})`);
    }
  }

  /** The delay before the next attempt; each call counts one more failure. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(ceiling * (0.5 + 0.5 * this.random()));
  }

  /** Failed attempts since the last reset. */
  get failures(): number {
    return this.attempt;
  }

  /** After a success (a stream that delivered a response): start from the first ceiling again. */
  reset(): void {
    this.attempt = 0;
  }
}
