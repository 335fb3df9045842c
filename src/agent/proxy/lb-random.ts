// Pure weighted random: a host is picked with probability weight / total weight (binary search
// over the cumulative weights).
import type { LbPolicy } from '../desired-state.js';
import { pickAvoiding, type LbHost, type LoadBalancer, type PickContext, type Rng } from './lb.js';

export class RandomLoadBalancer implements LoadBalancer {
  readonly policy: LbPolicy = 'random';
  private readonly cumulative: number[] = [];
  private readonly total: number;

  constructor(
    readonly hosts: readonly LbHost[],
    private readonly rng: Rng,
  ) {
    let sum = 0;
    for (const h of hosts) {
      sum += h.weight;
      this.cumulative.push(sum);
    }
    this.total = sum;
  }

  pick(ctx?: PickContext): LbHost | undefined {
    if (this.hosts.length === 0) return undefined;
    return pickAvoiding(this.hosts, ctx, () => this.pickOnce());
  }

  private pickOnce(): LbHost {
    const x = this.rng() * this.total;
    let lo = 0;
    let hi = this.cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cumulative[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    return this.hosts[lo]!;
  }
}
