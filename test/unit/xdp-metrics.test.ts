import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { XdpStats } from '../../src/agent/bpf/layout-xdp.js';
import { registerXdpMetrics } from '../../src/agent/bpf/metrics-xdp.js';

// The XDP splice metrics come from the datapath's counters at scrape time.
describe('XDP splice metrics', () => {
  const counters = () => ({ ...XdpStats.decode(Buffer.alloc(XdpStats.size)), spliced_packets: 10n, spliced_bytes: 15_000n, hold_dropped: 3n, drop_fib: 2n, guard_dropped: 1n, closed_fin: 4n, neigh_slowpath: 5n });

  it('exposes spliced traffic, drops by reason, closes and the pairing map size', async () => {
    const registry = new Registry();
    registerXdpMetrics(registry, () => ({ counters, entries: () => 6 }));
    const text = await registry.metrics();
    expect(text).toContain('exds_xdp_spliced_packets_total 10');
    expect(text).toContain('exds_xdp_spliced_bytes_total 15000');
    expect(text).toContain('exds_xdp_drops_total{reason="hold"} 3');
    expect(text).toContain('exds_xdp_drops_total{reason="no_route"} 2');
    expect(text).toContain('exds_xdp_drops_total{reason="guard"} 1');
    expect(text).toContain('exds_xdp_passed_total{reason="neighbour_path"} 5');
    expect(text).toContain('exds_xdp_pairs_closed_total{by="fin"} 4');
    expect(text).toContain('exds_xdp_conn_entries 6');
  });

  it('keeps the scrape working when the datapath is gone or its maps fail', async () => {
    const registry = new Registry();
    const errors: string[] = [];
    let mode: 'none' | 'throw' = 'none';
    registerXdpMetrics(
      registry,
      () => {
        if (mode === 'throw') throw new Error('map xdp_stats is closed');
        return undefined;
      },
      (e) => errors.push(e.message),
    );
    expect(await registry.metrics()).toContain('exds_xdp_conn_entries 0');
    mode = 'throw';
    await new Promise((r) => setTimeout(r, 120)); // past the per-scrape cache
    const text = await registry.metrics();
    expect(text).not.toContain('exds_xdp_spliced_packets_total 1');
    expect(errors).toEqual(['map xdp_stats is closed']);
  });
});
