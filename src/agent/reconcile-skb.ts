// The SKB splice part of the reconciler: which listeners need it (pure), and the SkbDatapath's
// life: attached (adopting pins) while a listener has an skb chain, kept while spliced pairs
// still drain after the last such listener went, detached after that.
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { SkbDatapath, SkbMaps, type SkbCounters } from './bpf/datapath-skb.js';
import type { PinLayout } from './bpf/pins.js';
import type { DesiredListener, PortRange } from './desired-state.js';

export function needsSkb(l: DesiredListener): boolean {
  return l.chains.some((c) => c.mode === 'skb');
}

/** Every port of the ranges, ascending. */
export function expandRanges(ranges: readonly PortRange[]): number[] {
  const out = new Set<number>();
  for (const r of ranges) for (let p = r.start; p <= r.end; p++) out.add(p);
  return [...out].sort((a, b) => a - b);
}

export interface SkbEnsureResult {
  /** The datapath could not be attached: every skb listener fails with this. */
  error?: string;
  /** Not wanted any more, kept while spliced pairs remain. */
  draining?: number;
}

export class SkbReconciler {
  private dp: SkbDatapath | undefined;

  constructor(private readonly o: { pins: PinLayout; cgroup: string; logger: Logger }) {}

  get maps(): SkbMaps | undefined {
    return this.dp?.maps;
  }

  get attached(): boolean {
    return this.dp !== undefined;
  }

  /** wanted: a listener has an skb chain. */
  ensure(wanted: boolean): SkbEnsureResult {
    const log = this.o.logger;
    if (!wanted) {
      if (!this.dp && !existsSync(this.o.pins.skb)) return {};
      if (!this.dp) {
        // An earlier agent left it: adopt it to see whether pairs still drain through it.
        const e = this.attach();
        if (e) return { error: e };
      }
      const pairs = this.dp!.maps.occupancy().pairs;
      if (pairs > 0) return { draining: pairs / 2 };
      this.dp!.detach();
      this.dp = undefined;
      log.info({ datapath: 'skb' }, 'SKB splice detached: no listener uses it and no pair is left');
      return {};
    }
    if (!this.dp) {
      const e = this.attach();
      if (e) return { error: e };
    }
    return {};
  }

  private attach(): string | undefined {
    try {
      this.dp = SkbDatapath.attach({ pins: this.o.pins, cgroup: this.o.cgroup });
      const adopted = this.dp.links.release.adopted && this.dp.links.verdict.adopted;
      this.o.logger.info({ datapath: 'skb', cgroup: this.o.cgroup, pins: this.o.pins.skb, adopted }, adopted ? 'SKB splice datapath adopted from its pins' : 'SKB splice datapath attached');
      return undefined;
    } catch (e) {
      const msg = `the SKB splice datapath could not be attached: ${(e as Error).message}`;
      this.o.logger.error({ datapath: 'skb', err: (e as Error).message }, 'SKB splice datapath could not be attached');
      return msg;
    }
  }

  counters(): SkbCounters | undefined {
    return this.dp?.counters();
  }

  /** Agent exit: everything stays attached and pinned. */
  release(): void {
    this.dp?.release();
    this.dp = undefined;
  }

  detach(): void {
    if (this.dp) this.dp.detach();
    else SkbDatapath.detachPinned(this.o.pins.skb);
    this.dp = undefined;
  }
}
