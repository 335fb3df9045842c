// Prometheus metrics of the XDP splice datapath, read from its per-CPU counters (xdp_stats) and
// its pairing map at scrape time. The owner of the datapath (the reconciler) registers a source;
// without one the metrics have no samples.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { XdpCounters } from './datapath-xdp.js';

export interface XdpMetricsSource {
  counters(): XdpCounters;
  /** Entries in xdp_conns (two per spliced connection, one per connection still learning). */
  entries(): number;
}

/** Counter fields that are drops, by the reason label they get. */
const DROPS: Partial<Record<keyof XdpCounters, string>> = {
  hold_dropped: 'hold',
  drop_fib: 'no_route',
  drop_no_neigh: 'no_neighbour',
  drop_frag_needed: 'too_big',
  drop_egress: 'egress_not_attached',
  guard_dropped: 'guard',
};
const CLOSES: Partial<Record<keyof XdpCounters, string>> = { closed_fin: 'fin', closed_rst: 'rst', closed_syn: 'syn_reuse' };
const PASSES: Partial<Record<keyof XdpCounters, string>> = {
  learned: 'learn',
  hold_passed: 'hold',
  pass_fragment: 'fragment',
  pass_malformed: 'malformed_options',
  pass_unparsed: 'unparsed',
  neigh_slowpath: 'neighbour_path',
};

/**
 * Registers the XDP splice metrics on registry. `source` is called at every scrape; when it
 * throws, the scrape still succeeds (no samples) and onError hears why.
 */
export function registerXdpMetrics(registry: Registry, source: () => XdpMetricsSource | undefined, onError?: (e: Error) => void): void {
  let snapshot: { c: XdpCounters; entries: number } | undefined;
  let taken = 0;
  // One read of the maps per scrape, shared by the metrics below.
  const read = (): typeof snapshot => {
    const now = Date.now();
    if (now - taken < 100) return snapshot;
    taken = now;
    try {
      const s = source();
      snapshot = s ? { c: s.counters(), entries: s.entries() } : undefined;
    } catch (e) {
      snapshot = undefined;
      onError?.(e as Error);
    }
    return snapshot;
  };
  const labelled = (name: string, help: string, label: string, fields: Partial<Record<keyof XdpCounters, string>>) =>
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        this.reset();
        const s = read();
        if (!s) return;
        for (const [field, value] of Object.entries(fields)) this.inc({ [label]: value! }, Number(s.c[field as keyof XdpCounters]));
      },
    });
  new Counter({
    name: 'exds_xdp_spliced_packets_total',
    help: 'Packets XDP splice rewrote and redirected',
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      if (s) this.inc(Number(s.c.spliced_packets));
    },
  });
  new Counter({
    name: 'exds_xdp_spliced_bytes_total',
    help: 'Bytes (frames) XDP splice rewrote and redirected',
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      if (s) this.inc(Number(s.c.spliced_bytes));
    },
  });
  labelled('exds_xdp_drops_total', 'Packets XDP splice dropped, by reason (hold: the peer retransmits; guard: TC egress)', 'reason', DROPS);
  labelled('exds_xdp_passed_total', 'Packets of tracked tuples XDP splice passed to the stack, by reason', 'reason', PASSES);
  labelled('exds_xdp_pairs_closed_total', 'Spliced pairs the datapath removed, by what ended them', 'by', CLOSES);
  new Counter({
    name: 'exds_xdp_ts_missing_total',
    help: 'Spliced segments without a timestamp option on a pair that uses timestamps',
    registers: [registry],
    collect() {
      this.reset();
      const s = read();
      if (s) this.inc(Number(s.c.ts_missing));
    },
  });
  new Gauge({
    name: 'exds_xdp_conn_entries',
    help: 'Entries in xdp_conns (two per spliced connection)',
    registers: [registry],
    collect() {
      const s = read();
      this.set(s ? s.entries : 0);
    },
  });
}
