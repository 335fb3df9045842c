// The demo's pure parts: its example config is valid and covers every path, Prometheus text is
// read as the agent writes it, and the view and its renderings say what the samples say.
import { describe, expect, it } from 'vitest';
import type { NodeView } from '../../src/api/nodes.js';
import { validateConfig } from '../../src/model/validate.js';
import { DEMO_LISTENERS, demoConfig } from '../../src/demo/config.js';
import { parsePrometheus, sumOf } from '../../src/demo/prom-text.js';
import { renderLine, renderTable } from '../../src/demo/table.js';
import { demoAddresses } from '../../src/demo/topology.js';
import type { TargetStats } from '../../src/demo/traffic.js';
import { buildView, formatUptime, type ViewInput } from '../../src/demo/view.js';

describe('demo config', () => {
  it('is a valid config with an SKB, an XDP and an SNI listener, and a drop rule for the blocked network', () => {
    const a = demoAddresses();
    const v = validateConfig(demoConfig(a));
    if (!v.ok) throw new Error(JSON.stringify(v.problems));
    const ls = v.config.listeners;
    expect(ls.map((l) => [l.name, l.mode])).toEqual([
      ['bulk-skb', 'skb'],
      ['bulk-xdp', 'xdp'],
      ['tls-sni', 'userspace'],
    ]);
    expect(ls.find((l) => l.mode === 'xdp')!.interface).toBe('eth0');
    expect(ls.find((l) => l.name === 'tls-sni')!.routes!.map((r) => [r.serverNames, r.cluster])).toEqual([
      [['a.demo.test'], 'tls-s1'],
      [['b.demo.test'], 'tls-s2'],
    ]);
    expect(v.config.dropRules).toEqual([expect.objectContaining({ name: 'blocked', cidr: '10.99.3.0/24' })]);
    expect(a.blocked.startsWith('10.99.3.')).toBe(true);
    expect(DEMO_LISTENERS.map((l) => l.path).sort()).toEqual(['skb', 'userspace', 'xdp']);
  });
});

describe('prom-text', () => {
  const text = [
    '# HELP exds_proxy_connections_total connections handed off',
    '# TYPE exds_proxy_connections_total counter',
    'exds_proxy_connections_total{listener="bulk-skb",path="skb"} 12',
    'exds_proxy_connections_total{listener="tls-sni",path="userspace"} 40',
    'exds_spliced_bytes_total{path="xdp"} 1.5e+06',
    'exds_odd{msg="a \\"quoted\\", value",x="1"} 3 1700000000000',
    'exds_xds_connected 1',
    'not a sample line {',
  ].join('\n');

  it('reads names, labels (escaped quotes, commas) and values, and skips comments and junk', () => {
    const s = parsePrometheus(text);
    expect(s).toHaveLength(5);
    expect(s[2]).toEqual({ name: 'exds_spliced_bytes_total', labels: { path: 'xdp' }, value: 1.5e6 });
    expect(s[3]).toEqual({ name: 'exds_odd', labels: { msg: 'a "quoted", value', x: '1' }, value: 3 });
    expect(s[4]).toEqual({ name: 'exds_xds_connected', labels: {}, value: 1 });
  });

  it('sums by name and label subset', () => {
    const s = parsePrometheus(text);
    expect(sumOf(s, 'exds_proxy_connections_total')).toBe(52);
    expect(sumOf(s, 'exds_proxy_connections_total', { path: 'skb' })).toBe(12);
    expect(sumOf(s, 'exds_proxy_connections_total', { path: 'xdp' })).toBe(0);
  });
});

const target = (listener: string, over: Partial<TargetStats>): TargetStats => ({ listener, started: 0, ok: 0, failed: 0, active: 0, sent: 0, verified: 0, servers: {}, ...over });

function input(): ViewInput {
  const metrics = (skb: number, xdp: number, user: number) =>
    parsePrometheus(
      [
        `exds_proxy_connections_total{listener="bulk-skb",path="skb"} 5`,
        `exds_proxy_connections_total{listener="bulk-xdp",path="xdp"} 4`,
        `exds_proxy_connections_total{listener="tls-sni",path="userspace"} 20`,
        `exds_proxy_fallbacks_total{listener="bulk-xdp",requested="xdp",reason="declined"} 1`,
        `exds_spliced_bytes_total{path="skb"} ${skb}`,
        `exds_spliced_bytes_total{path="xdp"} ${xdp}`,
        `exds_proxy_userspace_bytes_total{listener="tls-sni",direction="downstream_to_upstream"} ${user}`,
        `exds_proxy_userspace_bytes_total{listener="tls-sni",direction="upstream_to_downstream"} 0`,
        `exds_drop_packets_total{interface="eth3",rule="blocked"} 7`,
      ].join('\n'),
    );
  const nodes: NodeView[] = [
    {
      streamId: '1',
      protocol: 'delta',
      service: 'ads',
      peer: 'ipv4:127.0.0.1:5000',
      connectedAt: '2026-01-01T00:00:00Z',
      node: { id: 'demo-mb', cluster: 'demo', metadata: {} },
      group: 'g',
      types: [
        { typeUrl: 'type.googleapis.com/envoy.config.listener.v3.Listener', wildcard: true, subscribedNames: 0, sent: { version: '2', nonce: 'n', at: 'x', resources: 4 }, acked: { version: '1', at: 'x' }, lastNack: { version: '2', message: 'listener "bad": interface "eth9" not found', at: 'x' }, awaitingAck: false },
        { typeUrl: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', wildcard: true, subscribedNames: 0, sent: { version: '2', nonce: 'n', at: 'x', resources: 3 }, acked: { version: '2', at: 'x' }, lastNack: null, awaitingAck: false },
      ],
    },
  ];
  return {
    uptimeMs: 83_000,
    listeners: DEMO_LISTENERS,
    drivePrev: {
      at: 1000,
      targets: { 'bulk-skb': target('bulk-skb', { sent: 0 }), 'tls-sni/a.demo.test': target('tls-sni', { sent: 0 }), 'tls-sni/b.demo.test': target('tls-sni', { sent: 0 }) },
      probes: {},
    },
    drive: {
      at: 3000,
      targets: {
        'bulk-skb': target('bulk-skb', { ok: 6, failed: 1, active: 2, sent: 8e6, servers: { s2: 3, s1: 3 }, lastError: 'x' }),
        'tls-sni/a.demo.test': target('tls-sni', { ok: 10, active: 1, sent: 2e6, servers: { s1: 10 } }),
        'tls-sni/b.demo.test': target('tls-sni', { ok: 9, active: 1, sent: 2e6, servers: { s2: 9 } }),
      },
      probes: { 'bulk-skb': { attempts: 5, connected: 0, timeouts: 5, refused: 0, errors: 0 }, 'tls-sni': { attempts: 5, connected: 1, timeouts: 4, refused: 0, errors: 0 } },
    },
    metricsPrev: { at: 0, samples: metrics(0, 0, 0) },
    metrics: { at: 2000, samples: metrics(4e6, 2e6, 1e6) },
    nodes,
    dropRule: { name: 'blocked', cidr: '10.99.3.0/24' },
    recentErrors: [{ listener: 'bulk-skb', message: 'bulk-skb (10.99.0.1:7001): ECONNRESET' }],
    problems: [],
  };
}

describe('demo view', () => {
  it('combines client counters, agent metrics and node status into rows and rates', () => {
    const v = buildView(input());
    expect(v.uptime).toBe('1:23');
    const [skb, xdp, tls] = v.listeners;
    expect(skb).toMatchObject({ name: 'bulk-skb', ok: 6, failed: 1, open: 2, clientMBps: 4, byPath: { xdp: 0, skb: 5, userspace: 0 }, fallbacks: 0, answeredBy: 's1 3 · s2 3' });
    expect(xdp).toMatchObject({ ok: 0, clientMBps: 0, byPath: { xdp: 4, skb: 0, userspace: 0 }, fallbacks: 1, answeredBy: '' });
    expect(tls).toMatchObject({ ok: 19, clientMBps: 2, answeredBy: 'a.demo.test→s1 10 · b.demo.test→s2 9' });
    expect(v.pathMBps).toEqual({ xdp: 1, skb: 2, userspace: 0.5 });
    expect(v.drops).toEqual({ rule: 'blocked', cidr: '10.99.3.0/24', attempts: 10, gotThrough: 1, droppedPackets: 7 });
    expect(v.nodes).toEqual([{ id: 'demo-mb', stream: 'ads/delta', types: [{ type: 'Listener', acked: '1', sent: '2' }, { type: 'Cluster', acked: '2', sent: '2' }] }]);
    expect(v.nacks).toEqual([{ node: 'demo-mb', type: 'Listener', version: '2', message: 'listener "bad": interface "eth9" not found' }]);
  });

  it('has no path rates before a second metrics sample', () => {
    const i = input();
    delete i.metricsPrev;
    expect(buildView(i).pathMBps).toBeUndefined();
    expect(renderTable(buildView(i)).join('\n')).toContain("waiting for a second sample of the agent's /metrics");
  });

  it('renders a table with every listener, the paths, drops, xDS versions and NACKs, clipped to the width', () => {
    const lines = renderTable(buildView(input()), 100);
    const text = lines.join('\n');
    expect(text).toMatch(/bulk-skb\s+7001\s+skb\s+6\s+1\s+2\s+4\.0\s+0\s+5\s+0\s+0\s+s1 3 · s2 3/);
    expect(text).toContain('xdp 1.0 MB/s   skb 2.0 MB/s   userspace 0.5 MB/s');
    expect(text).toContain('drop rule "blocked" (10.99.3.0/24): 10 connection attempts from the blocked client, 1 got through; XDP dropped 7 packets');
    expect(text).toContain('xDS node demo-mb (ads/delta): Listener 1 (sent 2) · Cluster 2');
    expect(text).toContain('demo-mb Listener version 2: listener "bad": interface "eth9" not found');
    expect(text).toContain('! bulk-skb: bulk-skb (10.99.0.1:7001): ECONNRESET');
    // Headers line up with their columns.
    const header = lines.find((l) => l.includes('listener  port'))!;
    const group = lines[lines.indexOf(header) - 1]!;
    expect(group.indexOf('clients')).toBe(header.indexOf('mode') + 'userspace'.length + 2);
    expect(group.indexOf('agent')).toBe(header.indexOf('xdp'));
  });

  it('renders one line of key=value fields for pipes', () => {
    const line = renderLine(buildView(input()));
    const first = line.split('\n')[0]!;
    expect(first).toMatch(/^\[1:23\] bulk-skb ok=6 failed=1 xdp=0 skb=5 userspace=0 fallbacks=0 MB\/s=4\.0 \| /);
    expect(first).toContain('| path MB/s xdp=1.0 skb=2.0 userspace=0.5 |');
    expect(first).toContain('| drop blocked attempts=10 through=1 dropped=7 |');
    expect(first).toContain('| xds demo-mb Listener=1 Cluster=2 | nacks=1');
    expect(line).toContain('\n  NACK demo-mb Listener 2: listener "bad"');
    expect(line).toContain('\n  failure bulk-skb: bulk-skb (10.99.0.1:7001): ECONNRESET');
  });

  it('formats uptime with hours when it has them', () => {
    expect(formatUptime(0)).toBe('0:00');
    expect(formatUptime(3_723_000)).toBe('1:02:03');
  });
});
