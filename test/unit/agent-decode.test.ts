// The agent's decoding of Envoy resources into its DesiredState: model configs translated by the
// control plane, encoded to wire bytes and decoded as the xDS client does, come back with every
// fact docs/config.md places in them; hand-written Envoy resources the agent cannot serve are
// problems that name the resource, the reason and the remedy, and leave the others alone.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeListener, decodeState, type ResourceView } from '../../src/agent/decode.js';
import { parseConfigText } from '../../src/model/config-text.js';
import { encodeResource, translate } from '../../src/model/translate.js';
import { messageName, ResourceType } from '../../src/model/type-urls.js';
import { validateConfig } from '../../src/model/validate.js';
import { decodeToJson, encodeJson } from '../../src/proto/json.js';

/** What an agent receives for a model document: resources by type, as the xDS client decodes them. */
function viewOf(doc: unknown): ResourceView {
  const v = validateConfig(doc);
  if (!v.ok) throw new Error(JSON.stringify(v.problems));
  const view = { listeners: new Map<string, unknown>(), clusters: new Map<string, unknown>(), assignments: new Map<string, unknown>() };
  for (const r of translate(v).resources) {
    const json = decodeToJson(messageName(r.typeUrl), encodeResource(r).bytes);
    if (r.typeUrl === ResourceType.Listener) view.listeners.set(r.name, json);
    else if (r.typeUrl === ResourceType.Cluster) view.clusters.set(r.name, json);
    else if (r.typeUrl === ResourceType.ClusterLoadAssignment) view.assignments.set(r.name, json);
  }
  return view;
}

/** A hand-written resource, strictly encoded and decoded (so it is valid Envoy proto). */
function wire(typeName: string, json: Record<string, unknown>): unknown {
  return decodeToJson(typeName, encodeJson(typeName, json));
}

const doc = {
  listeners: [
    {
      name: 'kafka',
      address: '0.0.0.0',
      ports: [4444, 6000, '5000-5010'],
      mode: 'xdp',
      interface: 'eth1',
      routes: [
        { serverNames: ['kafka1.server.test', '*.kafka.test'], cluster: 'kafka1', mode: 'skb' },
        { serverNames: ['kafka2.server.test'], cluster: 'kafka2' },
      ],
      cluster: 'fallback',
      idleTimeout: '90s',
    },
    { name: 'plain', address: '10.0.0.1', port: 7000, mode: 'userspace', cluster: 'fallback' },
    { name: 'v6', address: '::', port: 7001, mode: 'skb', cluster: 'kafka2', idleTimeout: '0s' },
  ],
  clusters: [
    {
      name: 'kafka1',
      lbPolicy: 'maglev',
      connectTimeout: '250ms',
      maxConnectAttempts: 3,
      healthCheck: { interval: '5s', timeout: '1s', unhealthyThreshold: 4, healthyThreshold: 2 },
      endpoints: [
        { address: '10.10.1.3', port: 9092, weight: 3 },
        { address: '10.10.1.4', port: 9092, healthStatus: 'draining' },
      ],
    },
    { name: 'kafka2', lbPolicy: 'least_request', endpoints: [{ address: 'fd00::5', port: 9093 }] },
    { name: 'fallback', endpoints: [] },
  ],
  dropRules: [
    { cidr: '192.168.3.0/24' },
    { name: 'ssh', cidr: '2001:db8::/32', ports: [22, '5000-5002'], listeners: ['kafka'] },
  ],
};

describe('decoding translated model configs', () => {
  const result = decodeState(viewOf(doc));

  it('decodes every listener and cluster without problems', () => {
    expect(result.problems).toEqual([]);
    expect(result.skipped).toEqual([]);
    expect(result.state.listeners.map((l) => l.name)).toEqual(['kafka', 'plain', 'v6']);
    expect(result.state.clusters.map((c) => c.name)).toEqual(['fallback', 'kafka1', 'kafka2']);
    expect(result.edsNames).toEqual(['fallback', 'kafka1', 'kafka2']);
  });

  it('carries ports, mode, interface, SNI chains and per-route modes of a listener', () => {
    const kafka = result.state.listeners.find((l) => l.name === 'kafka')!;
    expect(kafka).toMatchObject({
      address: '0.0.0.0',
      ports: [
        { start: 4444, end: 4444 },
        { start: 6000, end: 6000 },
        { start: 5000, end: 5010 },
      ],
      mode: 'xdp',
      interface: { name: 'eth1' },
      sniInspection: true,
    });
    expect(kafka.chains).toEqual([
      { name: 'route-0', serverNames: ['kafka1.server.test', '*.kafka.test'], cluster: 'kafka1', mode: 'skb', statPrefix: 'kafka_kafka1', idleTimeoutMs: 90_000, maxConnectAttempts: 3 },
      { name: 'route-1', serverNames: ['kafka2.server.test'], cluster: 'kafka2', mode: 'xdp', statPrefix: 'kafka_kafka2', idleTimeoutMs: 90_000, maxConnectAttempts: 1, interface: { name: 'eth1' } },
      { name: 'default', serverNames: [], cluster: 'fallback', mode: 'xdp', statPrefix: 'kafka_fallback', idleTimeoutMs: 90_000, maxConnectAttempts: 1, interface: { name: 'eth1' } },
    ]);
    const plain = result.state.listeners.find((l) => l.name === 'plain')!;
    expect(plain).toMatchObject({ address: '10.0.0.1', ports: [{ start: 7000, end: 7000 }], mode: 'userspace', sniInspection: false });
    expect(plain.chains[0]!.idleTimeoutMs).toBe(3_600_000); // TcpProxy's default
    expect(result.state.listeners.find((l) => l.name === 'v6')!.chains[0]).toMatchObject({ mode: 'skb', idleTimeoutMs: 0 });
  });

  it('compiles RBAC DENY policies back into the drop rules that apply to each listener', () => {
    const kafka = result.state.listeners.find((l) => l.name === 'kafka')!;
    expect(kafka.dropRules).toEqual([
      { name: '192.168.3.0/24', cidr: '192.168.3.0/24', ports: [] },
      {
        name: 'ssh',
        cidr: '2001:db8::/32',
        ports: [
          { start: 22, end: 22 },
          { start: 5000, end: 5002 },
        ],
      },
    ]);
    expect(result.state.listeners.find((l) => l.name === 'plain')!.dropRules).toEqual([{ name: '192.168.3.0/24', cidr: '192.168.3.0/24', ports: [] }]);
  });

  it('carries load balancing, timeouts, health checks and endpoints with weights and health', () => {
    const k1 = result.state.clusters.find((c) => c.name === 'kafka1')!;
    expect(k1).toEqual({
      name: 'kafka1',
      lbPolicy: 'maglev',
      connectTimeoutMs: 250,
      healthCheck: { intervalMs: 5000, timeoutMs: 1000, unhealthyThreshold: 4, healthyThreshold: 2 },
      endpoints: [
        { address: '10.10.1.3', port: 9092, weight: 3, health: 'unknown' },
        { address: '10.10.1.4', port: 9092, weight: 1, health: 'draining' },
      ],
    });
    expect(result.state.clusters.find((c) => c.name === 'kafka2')).toEqual({
      name: 'kafka2',
      lbPolicy: 'least_request',
      connectTimeoutMs: 5000,
      endpoints: [{ address: 'fd00::5', port: 9093, weight: 1, health: 'unknown' }],
    });
    expect(result.state.clusters.find((c) => c.name === 'fallback')!.endpoints).toEqual([]);
  });

  it('gives an EDS cluster no endpoints until its ClusterLoadAssignment arrives', () => {
    const view = viewOf(doc);
    (view.assignments as Map<string, unknown>).delete('kafka1');
    const r = decodeState(view);
    expect(r.problems).toEqual([]);
    expect(r.state.clusters.find((c) => c.name === 'kafka1')!.endpoints).toEqual([]);
  });

  it('decodes the Kafka SNI sample', () => {
    const text = readFileSync(new URL('../../envoy/examples/kafka-sni/config.yaml', import.meta.url), 'utf8');
    const parsed = parseConfigText(text);
    if (!parsed.ok) throw new Error('sample does not parse');
    const r = decodeState(viewOf(parsed.value));
    expect(r.problems).toEqual([]);
    expect(r.state.listeners.length).toBeGreaterThan(0);
    expect(r.state.listeners.every((l) => l.chains.length > 0)).toBe(true);
  });
});

const tcpProxy = { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: 's', cluster: 'c' };
const L = 'envoy.config.listener.v3.Listener';

function listener(extra: Record<string, unknown>, chainExtra: Record<string, unknown> = {}, filters: unknown[] = [{ name: 'tcp', typed_config: tcpProxy }]): unknown {
  return wire(L, { name: 'l', address: { socket_address: { address: '0.0.0.0', port_value: 80 } }, filter_chains: [{ filters, ...chainExtra }], ...extra });
}

describe('Envoy resources written by hand', () => {
  it('decodes a plain tcp_proxy listener without our metadata (ports from additional_addresses)', () => {
    const l = decodeListener(listener({ additional_addresses: [{ address: { socket_address: { address: '0.0.0.0', port_value: 81 } } }] }));
    expect(l).toMatchObject({ name: 'l', ports: [{ start: 80, end: 80 }, { start: 81, end: 81 }], mode: 'userspace', dropRules: [] });
  });

  it('skips API listeners (gRPC clients) and, in envoy mode, listeners without an eBPF filter', () => {
    const api = wire(L, { name: 'api', api_listener: { api_listener: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', stat_prefix: 'x', rds: { config_source: { ads: {} }, route_config_name: 'r' }, http_filters: [{ name: 'router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }] } } });
    expect(decodeListener(api)).toEqual({ skip: expect.stringContaining('API listener') });
    expect(decodeListener(listener({}), { proxy: 'envoy' })).toEqual({ skip: expect.stringContaining('Envoy serves it alone') });
  });

  const cases: Array<[string, unknown, RegExp]> = [
    [
      'an HTTP connection manager',
      listener({}, {}, [{ name: 'envoy.filters.network.http_connection_manager', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', stat_prefix: 'h', route_config: {}, http_filters: [{ name: 'router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }] } }]),
      /listener "l": filter chain "chain-0": network filter "envoy.filters.network.http_connection_manager" .* is not supported by the ebpf-xds agent .* nodeSelector/,
    ],
    ['a destination_port match', listener({}, { filter_chain_match: { destination_port: 80 } }), /filter_chain_match.destination_port is not supported/],
    ['TLS termination', listener({}, { transport_socket: { name: 'tls' } }), /transport_socket \(TLS termination\) is not supported/],
    ['server names without tls_inspector', listener({}, { filter_chain_match: { server_names: ['a.test'] } }), /no tls_inspector/],
    ['weighted clusters', listener({}, {}, [{ name: 'tcp', typed_config: { ...tcpProxy, cluster: undefined, weighted_clusters: { clusters: [{ name: 'a', weight: 1 }] } } }]), /weighted_clusters is not supported/],
    [
      'an RBAC ALLOW policy',
      listener({}, {}, [{ name: 'rbac', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC', stat_prefix: 'r', rules: { action: 'ALLOW', policies: {} } } }, { name: 'tcp', typed_config: tcpProxy }]),
      /action ALLOW is not supported/,
    ],
    [
      'an XDP filter without an interface',
      listener({}, {}, [{ name: 'ebpf_tcp_proxy_xdp', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.EbpfTcpProxyXDP', tcp_proxy: { stat_prefix: 's', cluster: 'c' } } }]),
      /EbpfTcpProxyXDP names no interface/,
    ],
    ['a host name address', wire(L, { name: 'l', address: { socket_address: { address: 'example.com', port_value: 80 } }, filter_chains: [{ filters: [{ name: 'tcp', typed_config: tcpProxy }] }] }), /"example.com" is not an IP address/],
    [
      'metadata ports that do not start at the bound port',
      listener({ metadata: { filter_metadata: { ebpf_xds: { ports: [{ start: 81, end: 90 }] } } } }),
      /metadata ebpf_xds.ports starts at 81 but the listener binds port 80/,
    ],
  ];
  for (const [what, json, message] of cases) {
    it(`refuses ${what}, naming the listener and the reason`, () => {
      const r = decodeState({ listeners: new Map([['l', json]]), clusters: new Map(), assignments: new Map() });
      expect(r.state.listeners).toEqual([]);
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0]!.kind).toBe('listener');
      expect(r.problems[0]!.message).toMatch(/^listener "l": /);
      expect(r.problems[0]!.message).toMatch(message);
    });
  }

  it('decodes a STATIC cluster with an inline load assignment and refuses DNS clusters and priorities', () => {
    const C = 'envoy.config.cluster.v3.Cluster';
    const ep = (priority?: number) => ({ cluster_name: 's', endpoints: [{ ...(priority ? { priority } : {}), lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.9', port_value: 9 } } }, health_status: 'HEALTHY' }] }] });
    const view: ResourceView = {
      listeners: new Map(),
      clusters: new Map<string, unknown>([
        ['s', wire(C, { name: 's', type: 'STATIC', connect_timeout: '0.5s', load_assignment: ep() })],
        ['dns', wire(C, { name: 'dns', type: 'STRICT_DNS', connect_timeout: '1s' })],
        ['prio', wire(C, { name: 'prio', type: 'STATIC', connect_timeout: '1s', load_assignment: ep(1) })],
        ['http', wire(C, { name: 'http', type: 'EDS', connect_timeout: '1s', health_checks: [{ timeout: '1s', interval: '2s', unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: { path: '/' } }] })],
      ]),
      assignments: new Map(),
    };
    const r = decodeState(view);
    expect(r.state.clusters).toEqual([{ name: 's', lbPolicy: 'round_robin', connectTimeoutMs: 500, endpoints: [{ address: '10.0.0.9', port: 9, weight: 1, health: 'healthy' }] }]);
    expect(r.problems.map((p) => [p.name, p.message])).toEqual([
      ['dns', expect.stringMatching(/^cluster "dns": discovery type STRICT_DNS is not supported/)],
      ['prio', expect.stringMatching(/^cluster "prio": load_assignment: endpoints\[0\] has priority 1/)],
      ['http', expect.stringMatching(/^cluster "http": health check http_health_check is not supported/)],
    ]);
  });
});
