// Pure least request over active connections, as Envoy's LEAST_REQUEST: with equal weights,
// sample `choiceCount` hosts at random and take the one with the fewest active connections
// ("power of two choices"); with unequal weights, an EDF schedule where a host's weight is
// weight / (active + 1)^bias, recomputed each time the host comes due.
import type { LbPolicy } from '../desired-state.js';
import { EdfScheduler } from './lb-edf.js';
import { pickAvoiding, type LbHost, type LoadBalancer, type PickContext, type Rng } from './lb.js';

export interface LeastRequestOptions {
  rng: Rng;
  activeRequests: (key: string) => number;
  choiceCount: number;
  bias: number;
}

export class LeastRequestLoadBalancer implements LoadBalancer {
  readonly policy: LbPolicy = 'least_request';
  private readonly edf: EdfScheduler<LbHost> | undefined;

  constructor(
    readonly hosts: readonly LbHost[],
    private readonly opts: LeastRequestOptions,
  ) {
    if (!(opts.choiceCount >= 2)) throw new Error(`least_request choice count must be at least 2, got ${opts.choiceCount}`);
    const equal = hosts.every((h) => h.weight === hosts[0]!.weight);
    if (hosts.length > 0 && !equal) {
      this.edf = new EdfScheduler<LbHost>();
      for (const h of hosts) this.edf.add(h, this.effectiveWeight(h));
    }
  }

  pick(ctx?: PickContext): LbHost | undefined {
    if (this.hosts.length === 0) return undefined;
    if (this.edf) return pickAvoiding(this.hosts, ctx, () => this.edf!.pickAndReschedule((h) => this.effectiveWeight(h)));
    const exclude = ctx?.exclude;
    const candidates = exclude && exclude.size > 0 ? this.hosts.filter((h) => !exclude.has(h.key)) : this.hosts;
    const pool = candidates.length > 0 ? candidates : this.hosts;
    let best: LbHost | undefined;
    let bestActive = Infinity;
    for (let i = 0; i < this.opts.choiceCount; i++) {
      const h = pool[Math.floor(this.opts.rng() * pool.length)]!;
      const active = this.opts.activeRequests(h.key);
      if (active < bestActive) {
        best = h;
        bestActive = active;
      }
    }
    return best;
  }

  private effectiveWeight(h: LbHost): number {
    const active = this.opts.activeRequests(h.key);
    const w = this.opts.bias === 0 ? h.weight : h.weight / Math.pow(active + 1, this.opts.bias);
    return Math.max(w, 1e-9);
  }
}
