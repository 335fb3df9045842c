// The agent's metric set: created once per registry and shared, and the spliced-bytes source the
// reconciler plugs in (read at scrape time; a failing source does not fail the scrape).
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { agentMetrics } from '../../src/agent/metrics.js';

describe('agent metrics', () => {
  it('are created once per registry', () => {
    const r = new Registry();
    expect(agentMetrics(r)).toBe(agentMetrics(r));
    expect(agentMetrics(new Registry())).not.toBe(agentMetrics(r));
  });

  it('read spliced bytes from the source at each scrape', async () => {
    const r = new Registry();
    const m = agentMetrics(r);
    expect(await r.metrics()).not.toMatch(/^exds_spliced_bytes_total\{/m);
    let skb = 100n;
    m.setSplicedBytesSource(() => [
      { path: 'skb', bytes: skb },
      { path: 'xdp', bytes: 7 },
    ]);
    expect(await r.metrics()).toMatch(/^exds_spliced_bytes_total\{path="skb"\} 100$/m);
    skb = 250n;
    const text = await r.metrics();
    expect(text).toMatch(/^exds_spliced_bytes_total\{path="skb"\} 250$/m);
    expect(text).toMatch(/^exds_spliced_bytes_total\{path="xdp"\} 7$/m);
  });

  it('count a failing source and hand its error to the owner, and the scrape still succeeds', async () => {
    const r = new Registry();
    const errors: string[] = [];
    agentMetrics(r).setSplicedBytesSource(
      () => {
        throw new Error('skb_stats is gone');
      },
      (e) => errors.push(e.message),
    );
    const text = await r.metrics();
    expect(text).toMatch(/^exds_metrics_collect_errors_total\{metric="exds_spliced_bytes_total"\} 1$/m);
    expect(errors).toEqual(['skb_stats is gone']);
  });
});
