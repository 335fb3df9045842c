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

  it('show the per-listener counts the proxy bumps as plain numbers, at every scrape', async () => {
    const r = new Registry();
    const m = agentMetrics(r);
    const c = m.listenerCounts('web');
    expect(m.listenerCounts('web')).toBe(c);
    // No connection yet: no samples, as before any inc.
    expect(await r.metrics()).not.toMatch(/^exds_proxy_(accepted_total|active_connections)\{listener="web"/m);
    c.accepted += 3;
    c.active += 2;
    c.connections.userspace += 1;
    c.userspaceBytes.upstream_to_downstream += 1024;
    let text = await r.metrics();
    expect(text).toMatch(/^exds_proxy_accepted_total\{listener="web"\} 3$/m);
    expect(text).toMatch(/^exds_proxy_active_connections\{listener="web"\} 2$/m);
    expect(text).toMatch(/^exds_proxy_connections_total\{listener="web",path="userspace"\} 1$/m);
    expect(text).not.toMatch(/^exds_proxy_connections_total\{listener="web",path="skb"\}/m);
    expect(text).toMatch(/^exds_proxy_userspace_bytes_total\{listener="web",direction="upstream_to_downstream"\} 1024$/m);
    // Counters keep growing by what was added since the last scrape; the gauge follows.
    c.accepted += 1;
    c.active -= 2;
    c.userspaceBytes.upstream_to_downstream += 1;
    text = await r.metrics();
    expect(text).toMatch(/^exds_proxy_accepted_total\{listener="web"\} 4$/m);
    expect(text).toMatch(/^exds_proxy_active_connections\{listener="web"\} 0$/m);
    expect(text).toMatch(/^exds_proxy_userspace_bytes_total\{listener="web",direction="upstream_to_downstream"\} 1025$/m);
    // metric.get() (no registry scrape) sees them too.
    expect((await m.proxy.accepted.get()).values).toEqual([{ labels: { listener: 'web' }, value: 4 }]);
  });

  it('show the load balancer picks counted per endpoint', async () => {
    const r = new Registry();
    const m = agentMetrics(r);
    const a = m.endpointCounts('db', '10.0.0.1:5432');
    expect(m.endpointCounts('db', '10.0.0.1:5432')).toBe(a);
    a.selected += 2;
    m.endpointCounts('db', '10.0.0.2:5432').selected += 1;
    const text = await r.metrics();
    expect(text).toMatch(/^exds_proxy_upstream_selected_total\{cluster="db",endpoint="10.0.0.1:5432"\} 2$/m);
    expect(text).toMatch(/^exds_proxy_upstream_selected_total\{cluster="db",endpoint="10.0.0.2:5432"\} 1$/m);
    a.selected += 1;
    expect(await r.metrics()).toMatch(/^exds_proxy_upstream_selected_total\{cluster="db",endpoint="10.0.0.1:5432"\} 3$/m);
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
