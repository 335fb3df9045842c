// Translation into Envoy resources: every generated resource decodes strictly against the Envoy
// protos, the Kafka SNI sample translates to the research filter's static config, and the fields
// agents read (typed configs, metadata, RBAC, CLAs) carry the model.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/model/config-text.js';
import { EVERY_NODE_GROUP, NodeAudience, nodeGroupName } from '../../src/model/node-groups.js';
import { encodeResource, translate, type Translation } from '../../src/model/translate.js';
import { messageName, ResourceType } from '../../src/model/type-urls.js';
import { validateConfig } from '../../src/model/validate.js';
import { decodeToJson, encodeJson } from '../../src/proto/json.js';
import { pgvProblemsInBytes } from '../../src/proto/pgv.js';

type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON traversal

function translateDoc(doc: unknown): Translation {
  const v = validateConfig(doc);
  if (!v.ok) throw new Error(JSON.stringify(v.problems));
  return translate(v);
}

/** Encodes strictly and decodes back: what an xDS client would see. */
function served(t: Translation): { typeUrl: string; name: string; json: J }[] {
  return t.resources.map((r) => {
    const e = encodeResource(r);
    return { typeUrl: r.typeUrl, name: r.name, json: decodeToJson(messageName(r.typeUrl), e.bytes) as J };
  });
}

function find(t: Translation, typeUrl: string, name: string): J {
  const r = served(t).find((x) => x.typeUrl === typeUrl && x.name === name);
  if (!r) throw new Error(`no ${typeUrl} ${name}`);
  return r.json;
}

const full = {
  listeners: [
    {
      name: 'edge',
      address: '0.0.0.0',
      ports: ['5000-5010', 6000, '7000-7001'],
      mode: 'xdp',
      interface: 'eth1',
      idleTimeout: '1m',
      routes: [
        { serverNames: ['a.test', '*.b.test'], cluster: 'a' },
        { serverNames: ['c.test'], cluster: 'c', mode: 'skb' },
      ],
      cluster: 'fallback',
    },
    { name: 'plain', address: '::', port: 8080, mode: 'userspace', cluster: 'a', nodeSelector: { clusters: ['edge'] } },
  ],
  clusters: [
    { name: 'a', lbPolicy: 'maglev', connectTimeout: '250ms', maxConnectAttempts: 3, healthCheck: { interval: '5s', timeout: '1s' }, endpoints: [{ address: '10.0.0.1', port: 9000, weight: 3, healthStatus: 'draining' }, { address: 'fd00::2', port: 9000 }] },
    { name: 'c', lbPolicy: 'least_request', endpoints: [] },
    { name: 'fallback', lbPolicy: 'ring_hash', endpoints: [{ address: '10.0.0.9', port: 1 }] },
  ],
  dropRules: [
    { cidr: '192.168.3.0/24', listeners: ['edge'] },
    { name: 'ssh', cidr: '2001:db8::/32', ports: [22, '5005-5006'] },
    { name: 'elsewhere', cidr: '10.9.0.0/16', ports: [1] },
  ],
  resources: [{ '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', name: 'r1', '@nodeSelector': { ids: ['n1'] } }],
};

describe('translation', () => {
  it('every generated resource encodes strictly and decodes back to the same JSON', () => {
    const t = translateDoc(full);
    expect(t.resources.map((r) => `${messageName(r.typeUrl).split('.').pop()}/${r.name}`)).toEqual([
      'Listener/edge',
      'Listener/plain',
      'Cluster/a',
      'ClusterLoadAssignment/a',
      'Cluster/c',
      'ClusterLoadAssignment/c',
      'Cluster/fallback',
      'ClusterLoadAssignment/fallback',
      'RouteConfiguration/r1',
    ]);
    for (const r of t.resources) {
      const bytes = encodeJson(messageName(r.typeUrl), r.json, r.origin); // throws on any unknown field or bad value
      expect(decodeToJson(messageName(r.typeUrl), bytes)).toBeTruthy();
      // Envoy's protoc-gen-validate rules (min lengths, bounds, required fields and oneofs).
      expect(pgvProblemsInBytes(messageName(r.typeUrl), bytes, r.origin), `${r.typeUrl} ${r.name}`).toEqual([]);
    }
  });

  it('the PGV check itself catches what Envoy would refuse', () => {
    const bad = encodeJson('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', { stat_prefix: '', cluster: 'c', max_connect_attempts: 0, hash_policy: [{ source_ip: {} }, { source_ip: {} }] });
    expect(pgvProblemsInBytes('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', bad).map((v) => `${v.path} ${v.message}`)).toEqual([
      '$.stat_prefix at least 1 characters required',
      '$.max_connect_attempts must be at least 1',
      '$.hash_policy at most 1 items allowed',
    ]);
    const cluster = encodeJson('envoy.config.cluster.v3.Cluster', { name: 'x', connect_timeout: '0s', health_checks: [{ tcp_health_check: {} }] });
    expect(pgvProblemsInBytes('envoy.config.cluster.v3.Cluster', cluster).map((v) => `${v.path} ${v.message}`)).toEqual(
      expect.arrayContaining(['$.connect_timeout must be greater than 0s', '$.health_checks[0].timeout value is required', '$.health_checks[0].unhealthy_threshold value is required']),
    );
  });

  it('listener: first port is the address, single extra ports are additional addresses, all ports in metadata', () => {
    const l = find(translateDoc(full), ResourceType.Listener, 'edge');
    expect(l['address']).toEqual({ socket_address: { address: '0.0.0.0', port_value: 5000 } });
    expect(l['additional_addresses']).toEqual([{ address: { socket_address: { address: '0.0.0.0', port_value: 6000 } } }]);
    expect(l['metadata'].filter_metadata.ebpf_xds).toEqual({
      listener: 'edge',
      mode: 'xdp',
      interface: 'eth1',
      ports: [
        { start: 5000, end: 5010 },
        { start: 6000, end: 6000 },
        { start: 7000, end: 7001 },
      ],
    });
    expect(l['listener_filters']).toEqual([{ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' } }]);
  });

  it('one chain per SNI route, a default chain, filters by mode, drop rules as a leading RBAC DENY', () => {
    const l = find(translateDoc(full), ResourceType.Listener, 'edge');
    const chains = l['filter_chains'] as J[];
    expect(chains.map((c) => c['filter_chain_match']?.server_names ?? null)).toEqual([['a.test', '*.b.test'], ['c.test'], null]);
    for (const c of chains) expect(c['filters'][0].name).toBe('envoy.filters.network.rbac');
    const rbac = chains[0]!['filters'][0].typed_config;
    expect(rbac.rules.action).toBe('DENY');
    expect(rbac.rules.policies['192.168.3.0/24']).toEqual({ permissions: [{ any: true }], principals: [{ direct_remote_ip: { address_prefix: '192.168.3.0', prefix_len: 24 } }] });
    expect(rbac.rules.policies['ssh']).toEqual({
      permissions: [{ or_rules: { rules: [{ destination_port: 22 }, { destination_port_range: { start: 5005, end: 5007 } }] } }],
      principals: [{ direct_remote_ip: { address_prefix: '2001:db8::', prefix_len: 32 } }],
    });
    expect(rbac.rules.policies['elsewhere']).toBeUndefined(); // port 1 is not one of this listener's

    const xdp = chains[0]!['filters'][1];
    expect(xdp.name).toBe('ebpf_tcp_proxy_xdp');
    expect(xdp.typed_config).toEqual({
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.EbpfTcpProxyXDP',
      interface_name: 'eth1',
      tcp_proxy: { stat_prefix: 'edge_a', cluster: 'a', idle_timeout: '60s', max_connect_attempts: 3, hash_policy: [{ source_ip: {} }] },
    });
    const skb = chains[1]!['filters'][1];
    expect(skb.name).toBe('ebpf_tcp_proxy_skb');
    expect(skb.typed_config.tcp_proxy).toEqual({ stat_prefix: 'edge_c', cluster: 'c', idle_timeout: '60s' });
    expect(chains[2]!['filters'][1].typed_config.tcp_proxy.cluster).toBe('fallback');

    const plain = find(translateDoc(full), ResourceType.Listener, 'plain');
    expect(plain['listener_filters']).toBeUndefined();
    const f = plain['filter_chains'][0].filters;
    // The only rules that could apply are scoped to "edge" or to ports this listener does not have.
    expect(f.map((x: J) => x['name'])).toEqual(['envoy.filters.network.tcp_proxy']);
    expect(f[0].typed_config).toMatchObject({ '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', cluster: 'a', stat_prefix: 'plain_a' });
  });

  it('clusters are EDS over ADS with lb policy, timeout and TCP health check; CLAs carry weights and health', () => {
    const t = translateDoc(full);
    expect(find(t, ResourceType.Cluster, 'a')).toEqual({
      name: 'a',
      type: 'EDS',
      eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
      connect_timeout: '0.25s',
      lb_policy: 'MAGLEV',
      health_checks: [{ timeout: '1s', interval: '5s', unhealthy_threshold: 3, healthy_threshold: 2, tcp_health_check: {} }],
    });
    expect(find(t, ResourceType.Cluster, 'c')['lb_policy']).toBe('LEAST_REQUEST');
    expect(find(t, ResourceType.Cluster, 'c')['connect_timeout']).toBe('5s');
    expect(find(t, ResourceType.Cluster, 'fallback')['lb_policy']).toBe('RING_HASH');
    expect(find(t, ResourceType.ClusterLoadAssignment, 'a')).toEqual({
      cluster_name: 'a',
      endpoints: [
        {
          locality: {},
          load_balancing_weight: 1,
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 9000 } } }, load_balancing_weight: 3, health_status: 'DRAINING' },
            { endpoint: { address: { socket_address: { address: 'fd00::2', port_value: 9000 } } }, load_balancing_weight: 1 },
          ],
        },
      ],
    });
    expect(find(t, ResourceType.ClusterLoadAssignment, 'c')).toEqual({ cluster_name: 'c' });
  });

  it('node selectors narrow listeners, the clusters only they use, and raw resources', () => {
    const doc = {
      listeners: [
        { name: 'everyone', address: '0.0.0.0', port: 1, mode: 'skb', cluster: 'shared' },
        { name: 'edge-only', address: '0.0.0.0', port: 2, mode: 'skb', cluster: 'edge-backend', nodeSelector: { clusters: ['edge'] } },
        { name: 'labelled', address: '0.0.0.0', port: 3, mode: 'skb', cluster: 'shared', nodeSelector: { labels: { rack: 'r1' } } },
      ],
      clusters: [
        { name: 'shared', endpoints: [] },
        { name: 'edge-backend', endpoints: [] },
        { name: 'unused', endpoints: [] },
      ],
      resources: [{ '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', name: 'only-n1', '@nodeSelector': { ids: ['n1'] } }],
    };
    const aud = new NodeAudience(translateDoc(doc));
    const names = (node: { id: string; cluster: string; metadata: Record<string, unknown> }) => aud.resourcesForNode(node).map((r) => `${r.typeUrl.split('.').pop()}/${r.name}`);
    const plain = { id: 'n0', cluster: 'core', metadata: {} };
    expect(names(plain)).toEqual(['Listener/everyone', 'Cluster/shared', 'ClusterLoadAssignment/shared', 'Cluster/unused', 'ClusterLoadAssignment/unused']);
    const edge = { id: 'n1', cluster: 'edge', metadata: { rack: 'r1' } };
    expect(names(edge)).toEqual([
      'Listener/everyone',
      'Listener/edge-only',
      'Listener/labelled',
      'Cluster/shared',
      'ClusterLoadAssignment/shared',
      'Cluster/edge-backend',
      'ClusterLoadAssignment/edge-backend',
      'Cluster/unused',
      'ClusterLoadAssignment/unused',
      'RouteConfiguration/only-n1',
    ]);
    // The group is the set of matched selectors: distinct nodes matching none share "all", and
    // nodes matching the same selectors share a group whatever their ids.
    const group = (node: { id: string; cluster: string; metadata: Record<string, unknown> }) => nodeGroupName(aud.matchedSelectors(node));
    expect(group(plain)).toBe(EVERY_NODE_GROUP);
    expect(group({ id: 'n7', cluster: 'other', metadata: { rack: 'r2' } })).toBe(EVERY_NODE_GROUP);
    expect(group({ id: 'n8', cluster: 'edge', metadata: {} })).toBe(group({ id: 'n9', cluster: 'edge', metadata: { zone: 'z' } }));
    expect(group(edge)).not.toBe(group({ id: 'n8', cluster: 'edge', metadata: {} }));
    expect(aud.matchedSelectors(edge)).toHaveLength(3);
    expect(aud.resourcesFor(new Set(aud.matchedSelectors(edge)))).toEqual(aud.resourcesForNode(edge));
  });

  it('group names depend on selector content only: stable across revisions and selector spelling', () => {
    const doc = (sel: Record<string, unknown>, extra: Record<string, unknown>[] = []) => ({
      listeners: [{ name: 'l', address: '0.0.0.0', port: 1, mode: 'skb', cluster: 'c', nodeSelector: sel }, ...extra],
      clusters: [{ name: 'c', endpoints: [] }],
    });
    const node = { id: 'n1', cluster: 'edge', metadata: { rack: 'r1', zone: 'z1' } };
    const a = new NodeAudience(translateDoc(doc({ labels: { rack: 'r1', zone: 'z1' }, clusters: ['edge', 'core'] })));
    const b = new NodeAudience(translateDoc(doc({ clusters: ['core', 'edge'], labels: { zone: 'z1', rack: 'r1' } })));
    expect(nodeGroupName(a.matchedSelectors(node))).toBe(nodeGroupName(b.matchedSelectors(node)));
    expect(nodeGroupName(a.matchedSelectors(node))).toMatch(/^sel-[\w-]{16}$/);
    expect(a.selectorsKey()).toBe(b.selectorsKey());
    // A selector elsewhere in the config that this node does not match leaves its group alone,
    // though the config's selectors (and so selectorsKey) changed.
    const c = new NodeAudience(
      translateDoc(doc({ labels: { rack: 'r1', zone: 'z1' }, clusters: ['edge', 'core'] }, [{ name: 'm', address: '0.0.0.0', port: 2, mode: 'skb', cluster: 'c', nodeSelector: { ids: ['other'] } }])),
    );
    expect(c.selectorsKey()).not.toBe(a.selectorsKey());
    expect(nodeGroupName(c.matchedSelectors(node))).toBe(nodeGroupName(a.matchedSelectors(node)));
  });
});

describe('the Kafka SNI sample', () => {
  it('translates envoy/examples/kafka-sni/config.yaml into the equivalent of the original static config', () => {
    const model = parseConfigText(readFileSync('envoy/examples/kafka-sni/config.yaml', 'utf8'));
    const original = parseConfigText(readFileSync('envoy/examples/kafka-sni/static-envoy.yaml', 'utf8'));
    if (!model.ok || !original.ok) throw new Error('example files do not parse');
    // The original is itself checked strictly against the Envoy Bootstrap proto.
    const boot = decodeToJson('envoy.config.bootstrap.v3.Bootstrap', encodeJson('envoy.config.bootstrap.v3.Bootstrap', original.value)) as J;
    const t = translateDoc(model.value);
    for (const r of t.resources) expect(pgvProblemsInBytes(messageName(r.typeUrl), encodeResource(r).bytes, r.origin)).toEqual([]);
    const listeners = served(t).filter((r) => r.typeUrl === ResourceType.Listener);
    expect(listeners).toHaveLength(1);
    const ours = listeners[0]!.json;
    const theirs = boot['static_resources'].listeners[0] as J;

    // Behaviour-relevant parts: where it listens, the listener filters, and per chain the match and
    // the filter with its typed config. Stat prefixes and chain names are naming, not behaviour.
    const chainView = (c: J) => ({
      match: c['filter_chain_match'],
      filters: (c['filters'] as J[]).map((f) => {
        const tc = { ...f['typed_config'] };
        delete tc.stat_prefix;
        if (tc.tcp_proxy) tc.tcp_proxy = { ...tc.tcp_proxy, stat_prefix: undefined };
        return { name: f['name'], typed_config: JSON.parse(JSON.stringify(tc)) };
      }),
    });
    expect(ours['address']).toEqual(theirs['address']);
    expect(ours['listener_filters']).toEqual(theirs['listener_filters']);
    expect((ours['filter_chains'] as J[]).map(chainView)).toEqual((theirs['filter_chains'] as J[]).map(chainView));

    const theirClusters = boot['static_resources'].clusters as J[];
    const ourClusters = served(t).filter((r) => r.typeUrl === ResourceType.Cluster);
    expect(ourClusters.map((c) => c.name)).toEqual(theirClusters.map((c) => c['name']));
    for (const theirs of theirClusters) {
      const mine = find(t, ResourceType.Cluster, theirs['name']);
      expect(mine['lb_policy'] ?? 'ROUND_ROBIN').toBe(theirs['lb_policy'] ?? 'ROUND_ROBIN');
      expect(Number.parseFloat(mine['connect_timeout'])).toBe(Number.parseFloat(theirs['connect_timeout']));
      const cla = find(t, ResourceType.ClusterLoadAssignment, theirs['name']);
      const endpoints = (e: J[]) => e.flatMap((x) => (x['lb_endpoints'] as J[]).map((l) => l['endpoint'].address.socket_address));
      expect(endpoints(cla['endpoints'])).toEqual(endpoints(theirs['load_assignment'].endpoints));
    }
  });
});
