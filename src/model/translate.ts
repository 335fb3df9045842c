// Translation of a validated config into Envoy v3 resources (DESIGN.md, "Translation contract").
// Everything an xDS client needs is in these resources: Envoy reads them as usual, and ebpf-xds
// agents read the same fields (typed configs, listener metadata, RBAC policies, CLAs). The mapping
// is documented field by field in docs/config.md.
import { encodeJson } from '../proto/json.js';
import { CLUSTER_DEFAULTS, clusterLbPolicy, dropRuleName, listenerPortRanges } from './config.js';
import { durationToProtoJson } from './duration.js';
import { formatIp, parseCidr } from './ip.js';
import { selectorKey } from './node-selector.js';
import { parsePortSpec, rangesOverlap, type PortRange } from './ports.js';
import type { Cluster, ConfigDocument, DropRule, LbPolicy, Listener, ListenerMode, NodeSelector } from './schema.js';
import { messageName, ResourceType } from './type-urls.js';
import type { ValidConfig } from './validate.js';

type Json = Record<string, unknown>;

/** Names of the network filters and typed configs by listener mode. */
export const FILTER = {
  xdp: { name: 'ebpf_tcp_proxy_xdp', type: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.EbpfTcpProxyXDP' },
  skb: { name: 'ebpf_tcp_proxy_skb', type: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.EbpfTcpProxySKB' },
  userspace: { name: 'envoy.filters.network.tcp_proxy', type: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy' },
  rbac: { name: 'envoy.filters.network.rbac', type: 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC' },
  tlsInspector: { name: 'envoy.filters.listener.tls_inspector', type: 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' },
} as const;

/** filter_metadata namespace of the listener facts that have no Envoy field (extra ports, mode). */
export const METADATA_NAMESPACE = 'ebpf_xds';

const LB_POLICY: Record<LbPolicy, string> = {
  round_robin: 'ROUND_ROBIN',
  least_request: 'LEAST_REQUEST',
  random: 'RANDOM',
  maglev: 'MAGLEV',
  ring_hash: 'RING_HASH',
};

export interface TranslatedResource {
  typeUrl: string;
  name: string;
  /** proto3 JSON of the message with proto field names, without "@type". */
  json: Json;
  /** Where it came from in the config document, e.g. `$.listeners[0]`. */
  origin: string;
  /** Nodes that receive it: those matching any of these selectors; undefined means every node. */
  audience?: NodeSelector[];
  /** Already-encoded bytes (raw resources were encoded while validating). */
  bytes?: Uint8Array;
}

export interface Translation {
  resources: TranslatedResource[];
}

export function translate(valid: ValidConfig): Translation {
  const { config } = valid;
  const clusters = new Map(config.clusters.map((c) => [c.name, c]));
  const out: TranslatedResource[] = [];

  // A cluster goes to the nodes that get a listener using it; unused clusters go everywhere, since
  // raw resources (routes, for example) may refer to them.
  const users = new Map<string, Listener[]>();
  for (const l of config.listeners) {
    for (const name of listenerClusters(l)) {
      const list = users.get(name) ?? [];
      if (!list.includes(l)) list.push(l);
      users.set(name, list);
    }
  }

  config.listeners.forEach((l, i) => {
    const r: TranslatedResource = { typeUrl: ResourceType.Listener, name: l.name, json: listenerJson(l, clusters, config), origin: `$.listeners[${i}]` };
    if (l.nodeSelector) r.audience = [l.nodeSelector];
    out.push(r);
  });
  config.clusters.forEach((c, i) => {
    const audience = clusterAudience(users.get(c.name));
    const origin = `$.clusters[${i}]`;
    const cluster: TranslatedResource = { typeUrl: ResourceType.Cluster, name: c.name, json: clusterJson(c), origin };
    const cla: TranslatedResource = { typeUrl: ResourceType.ClusterLoadAssignment, name: c.name, json: loadAssignmentJson(c), origin };
    if (audience) cluster.audience = cla.audience = audience;
    out.push(cluster, cla);
  });
  valid.raw.forEach((raw, i) => {
    const json: Json = { ...raw.json };
    delete json['@type'];
    const r: TranslatedResource = { typeUrl: raw.typeUrl, name: raw.name, json, origin: `$.resources[${i}]`, bytes: raw.bytes };
    if (raw.nodeSelector) r.audience = [raw.nodeSelector];
    out.push(r);
  });
  return { resources: out };
}

function listenerClusters(l: Listener): string[] {
  const names = (l.routes ?? []).map((r) => r.cluster);
  if (l.cluster !== undefined) names.push(l.cluster);
  return names;
}

function clusterAudience(listeners: Listener[] | undefined): NodeSelector[] | undefined {
  if (!listeners || listeners.some((l) => !l.nodeSelector)) return undefined;
  const byKey = new Map<string, NodeSelector>();
  for (const l of listeners) byKey.set(selectorKey(l.nodeSelector as NodeSelector), l.nodeSelector as NodeSelector);
  return [...byKey.values()];
}

function socketAddress(address: string, port: number): Json {
  return { socket_address: { address, port_value: port } };
}

function listenerJson(l: Listener, clusters: Map<string, Cluster>, config: ConfigDocument): Json {
  const ranges = listenerPortRanges(l);
  const first = ranges[0] as PortRange;
  const json: Json = {
    name: l.name,
    address: socketAddress(l.address, first.start),
  };
  // Envoy binds one socket per additional address, so only explicitly listed single ports become
  // additional_addresses; ranges (and the rest of a leading range) are steered by sk_lookup on
  // agents, from the metadata below. Envoy without an agent serves only the ports it binds.
  const extra = (l.ports ?? []).slice(1).flatMap((spec) => {
    const p = parsePortSpec(spec);
    return 'range' in p && p.range.start === p.range.end ? [p.range.start] : [];
  });
  if (extra.length > 0) json['additional_addresses'] = extra.map((port) => ({ address: socketAddress(l.address, port) }));

  const routes = l.routes ?? [];
  if (routes.length > 0) json['listener_filters'] = [{ name: FILTER.tlsInspector.name, typed_config: { '@type': FILTER.tlsInspector.type } }];

  const rbac = dropFilter(l, ranges, config.dropRules);
  const chains: Json[] = routes.map((r, k) => ({
    name: `route-${k}`,
    filter_chain_match: { server_names: r.serverNames },
    filters: [...rbac, proxyFilter(l, r.mode ?? l.mode, r.cluster, clusters)],
  }));
  // A chain without a match catches connections that match no server name, including non-TLS ones.
  if (l.cluster !== undefined) chains.push({ name: 'default', filters: [...rbac, proxyFilter(l, l.mode, l.cluster, clusters)] });
  json['filter_chains'] = chains;

  const meta: Json = { listener: l.name, mode: l.mode, ports: ranges.map((r) => ({ start: r.start, end: r.end })) };
  if (l.interface !== undefined) meta['interface'] = l.interface;
  json['metadata'] = { filter_metadata: { [METADATA_NAMESPACE]: meta } };
  return json;
}

function proxyFilter(l: Listener, mode: ListenerMode, clusterName: string, clusters: Map<string, Cluster>): Json {
  const cluster = clusters.get(clusterName);
  const tcpProxy: Json = { stat_prefix: `${l.name}_${clusterName}`, cluster: clusterName };
  if (l.idleTimeout !== undefined) tcpProxy['idle_timeout'] = durationToProtoJson(l.idleTimeout);
  if (cluster?.maxConnectAttempts !== undefined) tcpProxy['max_connect_attempts'] = cluster.maxConnectAttempts;
  // Envoy's hash-based balancers need a hash key; for TCP the client address is the only stable one.
  const lb = cluster ? clusterLbPolicy(cluster) : CLUSTER_DEFAULTS.lbPolicy;
  if (lb === 'maglev' || lb === 'ring_hash') tcpProxy['hash_policy'] = [{ source_ip: {} }];

  switch (mode) {
    case 'xdp': {
      const typed: Json = { '@type': FILTER.xdp.type, tcp_proxy: tcpProxy };
      if (typeof l.interface === 'number') typed['interface_index'] = l.interface;
      else if (l.interface !== undefined) typed['interface_name'] = l.interface;
      return { name: FILTER.xdp.name, typed_config: typed };
    }
    case 'skb':
      return { name: FILTER.skb.name, typed_config: { '@type': FILTER.skb.type, tcp_proxy: tcpProxy } };
    case 'userspace':
      return { name: FILTER.userspace.name, typed_config: { '@type': FILTER.userspace.type, ...tcpProxy } };
  }
}

/** The leading RBAC DENY filter of a listener's chains, or nothing when no drop rule applies. */
function dropFilter(l: Listener, listenerRanges: PortRange[], rules: DropRule[]): Json[] {
  const policies: Json = {};
  for (const rule of rules) {
    if (rule.listeners && !rule.listeners.includes(l.name)) continue;
    const c = parseCidr(rule.cidr);
    if (!('cidr' in c)) continue; // validation already refused it
    let permissions: Json[] = [{ any: true }];
    if (rule.ports) {
      const ranges = rule.ports.flatMap((s) => {
        const p = parsePortSpec(s);
        return 'range' in p ? [p.range] : [];
      });
      if (!ranges.some((r) => listenerRanges.some((lr) => rangesOverlap(r, lr)))) continue; // never matches here
      const rules = ranges.map((r) =>
        // Int32Range's end is exclusive (envoy/type/v3/range.proto).
        r.start === r.end ? { destination_port: r.start } : { destination_port_range: { start: r.start, end: r.end + 1 } },
      );
      permissions = rules.length === 1 ? rules : [{ or_rules: { rules } }];
    }
    policies[dropRuleName(rule)] = {
      permissions,
      // direct_remote_ip is the peer of the TCP connection, which is what XDP sees too; remote_ip
      // could be rewritten by PROXY protocol or original-src filters.
      principals: [{ direct_remote_ip: { address_prefix: formatIp(c.cidr.ip), prefix_len: c.cidr.prefixLen } }],
    };
  }
  if (Object.keys(policies).length === 0) return [];
  return [{ name: FILTER.rbac.name, typed_config: { '@type': FILTER.rbac.type, stat_prefix: `${l.name}_drop`, rules: { action: 'DENY', policies } } }];
}

function clusterJson(c: Cluster): Json {
  const json: Json = {
    name: c.name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
    connect_timeout: durationToProtoJson(c.connectTimeout ?? CLUSTER_DEFAULTS.connectTimeout),
    lb_policy: LB_POLICY[clusterLbPolicy(c)],
  };
  if (c.healthCheck) {
    json['health_checks'] = [
      {
        timeout: durationToProtoJson(c.healthCheck.timeout),
        interval: durationToProtoJson(c.healthCheck.interval),
        unhealthy_threshold: c.healthCheck.unhealthyThreshold ?? CLUSTER_DEFAULTS.unhealthyThreshold,
        healthy_threshold: c.healthCheck.healthyThreshold ?? CLUSTER_DEFAULTS.healthyThreshold,
        tcp_health_check: {},
      },
    ];
  }
  return json;
}

function loadAssignmentJson(c: Cluster): Json {
  const endpoints = c.endpoints ?? [];
  const json: Json = { cluster_name: c.name };
  if (endpoints.length === 0) return json;
  // One (empty) locality with weight 1: Envoy ignores locality weights unless locality-weighted
  // balancing is on, while gRPC xDS clients refuse a CLA without a locality and drop localities
  // without a weight (gRFC A27).
  json['endpoints'] = [
    {
      locality: {},
      load_balancing_weight: 1,
      lb_endpoints: endpoints.map((e) => {
        const lbe: Json = { endpoint: { address: socketAddress(e.address, e.port) }, load_balancing_weight: e.weight ?? CLUSTER_DEFAULTS.weight };
        if (e.healthStatus) lbe['health_status'] = e.healthStatus.toUpperCase();
        return lbe;
      }),
    },
  ];
  return json;
}

/** Encoded resource: the message bytes xDS wraps in an Any. Same shape as the xDS cache's input. */
export interface EncodedResource {
  typeUrl: string;
  name: string;
  bytes: Uint8Array;
}

/** Strictly encodes a translated resource; a failure here is a translation bug, not user error. */
export function encodeResource(r: TranslatedResource): EncodedResource {
  const bytes = r.bytes ?? encodeJson(messageName(r.typeUrl), r.json, r.origin);
  return { typeUrl: r.typeUrl, name: r.name, bytes };
}
