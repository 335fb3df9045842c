// Pure weighted round robin. Equal weights rotate through the hosts; unequal weights use the EDF
// scheduler, so a host of weight 3 is picked 3 times per round, spread through the round rather
// than in a burst. Each instance starts at a random point so that many agents with the same
// endpoint list do not all send their first connection to the same host.
import type { LbPolicy } from '../desired-state.js';
import { EdfScheduler } from './lb-edf.js';
import { pickAvoiding, type LbHost, type LoadBalancer, type PickContext, type Rng } from './lb.js';

export class RoundRobinLoadBalancer implements LoadBalancer {
  readonly policy: LbPolicy = 'round_robin';
  private next = 0;
  private readonly edf: EdfScheduler<LbHost> | undefined;

  constructor(
    readonly hosts: readonly LbHost[],
    rng: Rng,
  ) {
    const equal = hosts.every((h) => h.weight === hosts[0]!.weight);
    if (hosts.length > 0 && !equal) {
      this.edf = new EdfScheduler<LbHost>();
      for (const h of hosts) this.edf.add(h, h.weight);
      const skip = Math.floor(rng() * hosts.length);
      for (let i = 0; i < skip; i++) this.edf.pickAndReschedule((h) => h.weight);
    } else {
      this.next = hosts.length > 0 ? Math.floor(rng() * hosts.length) : 0;
    }
  }

  pick(ctx?: PickContext): LbHost | undefined {
    if (this.hosts.length === 0) return undefined;
    return pickAvoiding(this.hosts, ctx, () => this.pickOnce());
  }

  private pickOnce(): LbHost | undefined {
    if (this.edf) return this.edf.pickAndReschedule((h) => h.weight);
    const h = this.hosts[this.next % this.hosts.length];
    this.next = (this.next + 1) % this.hosts.length;
    return h;
  }
}
