// Decodes the Envoy resources an agent receives over xDS (Listener, Cluster,
// ClusterLoadAssignment, as proto3 JSON with proto field names) into its DesiredState. Pure: no
// I/O. docs/config.md is the contract: where each fact lives in the resources. A resource the
// agent cannot serve as written is a problem naming the resource, the reason and the remedy,
// which the xDS client turns into a NACK; the other resources decode on.
import { formatCidr, parseCidr, parseIp } from '../model/ip.js';
import type {
  DesiredChain,
  DesiredCluster,
  DesiredDropRule,
  DesiredEndpoint,
  DesiredHealthCheck,
  DesiredListener,
  DesiredState,
  EndpointHealth,
  InterfaceRef,
  LbPolicy,
  PortRange,
  SpliceMode,
} from './desired-state.js';

type Json = Record<string, unknown>;

export const FILTER_TYPES = {
  xdp: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.EbpfTcpProxyXDP',
  skb: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.EbpfTcpProxySKB',
  userspace: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  rbac: 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC',
  tlsInspector: 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
} as const;
const TLS_INSPECTOR_NAME = 'envoy.filters.listener.tls_inspector';
const METADATA_NAMESPACE = 'ebpf_xds';
/** TcpProxy idle_timeout when absent (tcp_proxy.proto: "defaults to 1 hour"). */
export const DEFAULT_IDLE_TIMEOUT_MS = 3_600_000;
/** Cluster connect_timeout when absent (cluster.proto: "default 5s"). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

export type ResourceKind = 'listener' | 'cluster' | 'cluster_load_assignment';

/** A resource the agent cannot serve as written. `message` names it, the reason and the remedy. */
export interface DecodeProblem {
  kind: ResourceKind;
  name: string;
  message: string;
}

/** Proxy mode of the agent: what it does with listeners that are not ours. */
export type ProxyMode = 'embedded' | 'envoy';

export interface ResourceView {
  listeners: ReadonlyMap<string, unknown>;
  clusters: ReadonlyMap<string, unknown>;
  /** ClusterLoadAssignments by cluster_name (the EDS service name). */
  assignments: ReadonlyMap<string, unknown>;
}

export interface DecodeResult {
  state: DesiredState;
  problems: DecodeProblem[];
  /** Listeners that are not for this agent (API listeners for gRPC clients; Envoy's own in envoy mode). */
  skipped: Array<{ name: string; reason: string }>;
  /** EDS names the clusters refer to: what the client must subscribe to. */
  edsNames: string[];
}

class DecodeError extends Error {}

function fail(message: string): never {
  throw new DecodeError(message);
}

/** Decodes a whole view. Problems leave the resource out; everything else is decoded. */
export function decodeState(view: ResourceView, opts: { proxy: ProxyMode } = { proxy: 'embedded' }): DecodeResult {
  const problems: DecodeProblem[] = [];
  const skipped: DecodeResult['skipped'] = [];
  const clusters: DesiredCluster[] = [];
  const edsNames = new Set<string>();
  const assignments = new Map<string, DesiredEndpoint[]>();
  for (const [name, json] of view.assignments) {
    try {
      assignments.set(name, decodeAssignment(json).endpoints);
    } catch (e) {
      problems.push({ kind: 'cluster_load_assignment', name, message: messageOf(e, `ClusterLoadAssignment "${name}"`) });
    }
  }
  for (const [name, json] of view.clusters) {
    try {
      const c = decodeCluster(json);
      if (c.edsName !== undefined) edsNames.add(c.edsName);
      const endpoints = c.edsName !== undefined ? (assignments.get(c.edsName) ?? []) : c.endpoints;
      clusters.push({ ...c.cluster, endpoints });
    } catch (e) {
      problems.push({ kind: 'cluster', name, message: messageOf(e, `cluster "${name}"`) });
    }
  }
  const listeners: DesiredListener[] = [];
  for (const [name, json] of view.listeners) {
    try {
      const l = decodeListener(json, opts);
      if ('skip' in l) skipped.push({ name, reason: l.skip });
      else listeners.push(l);
    } catch (e) {
      problems.push({ kind: 'listener', name, message: messageOf(e, `listener "${name}"`) });
    }
  }
  listeners.sort((a, b) => a.name.localeCompare(b.name));
  clusters.sort((a, b) => a.name.localeCompare(b.name));
  return { state: { listeners, clusters }, problems, skipped, edsNames: [...edsNames].sort() };
}

function messageOf(e: unknown, what: string): string {
  if (e instanceof DecodeError) return e.message;
  // A bug or an unexpected shape: still name the resource.
  return `${what}: could not be decoded: ${(e as Error).message}`;
}

// ---------------------------------------------------------------------------------------------
// Listener

/**
 * One Listener. Returns { skip } for listeners that are not the agent's to serve: API listeners
 * (gRPC clients), and in envoy mode listeners without an eBPF filter (Envoy serves them alone).
 */
export function decodeListener(json: unknown, opts: { proxy: ProxyMode } = { proxy: 'embedded' }): DesiredListener | { skip: string } {
  const l = obj(json, 'Listener');
  const name = str(l['name']);
  const what = `listener "${name}"`;
  if (l['api_listener'] !== undefined) return { skip: 'an API listener (for gRPC xDS clients), not a socket listener' };

  const rawChains = arr(l['filter_chains']);
  if (l['default_filter_chain'] !== undefined) rawChains.push({ ...(l['default_filter_chain'] as Json), name: (l['default_filter_chain'] as Json)['name'] ?? 'default_filter_chain', filter_chain_match: undefined });
  if (opts.proxy === 'envoy' && !rawChains.some((c) => arr(obj(c, 'filter chain')['filters']).some(isEbpfFilter))) {
    return { skip: 'no ebpf_tcp_proxy_skb/xdp filter: Envoy serves it alone' };
  }

  const sock = socketAddress(l['address'], `${what}: address`);
  const meta = metadataOf(l);
  const ports = listenerPorts(l, sock.port, meta, what);
  const sniInspection = arr(l['listener_filters']).some((f) => {
    const fo = obj(f, 'listener filter');
    return fo['name'] === TLS_INSPECTOR_NAME || (fo['typed_config'] as Json | undefined)?.['@type'] === FILTER_TYPES.tlsInspector;
  });
  for (const f of arr(l['listener_filters'])) {
    const fo = obj(f, 'listener filter');
    const known = fo['name'] === TLS_INSPECTOR_NAME || (fo['typed_config'] as Json | undefined)?.['@type'] === FILTER_TYPES.tlsInspector;
    if (!known) fail(`${what}: listener filter "${str(fo['name'])}" is not supported by the ebpf-xds agent (it runs tls_inspector only); remove it or give this listener a nodeSelector that leaves out agents`);
  }
  if (rawChains.length === 0) fail(`${what}: no filter chains; give it routes or a fallback cluster`);

  const listenerInterface = interfaceFromMetadata(meta, what);
  const chains: DesiredChain[] = [];
  let dropRules: DesiredDropRule[] | undefined;
  rawChains.forEach((raw, k) => {
    const decoded = decodeChain(obj(raw, 'filter chain'), k, what, listenerInterface);
    if (dropRules === undefined) dropRules = decoded.dropRules;
    else if (!sameRules(dropRules, decoded.dropRules)) {
      fail(`${what}: filter chains "${chains[0]?.name ?? 'route-0'}" and "${decoded.chain.name}" have different RBAC drop rules; the agent applies one rule set per listener (as the ebpf-xds translation writes them)`);
    }
    chains.push(decoded.chain);
  });
  const names = new Set<string>();
  let defaults = 0;
  for (const c of chains) {
    if (c.serverNames.length === 0) defaults++;
    for (const sn of c.serverNames) {
      if (names.has(sn)) fail(`${what}: server name "${sn}" is matched by two filter chains; Envoy refuses overlapping matches, so does the agent`);
      names.add(sn);
    }
  }
  if (defaults > 1) fail(`${what}: ${defaults} filter chains match every connection (no server_names); keep one default chain`);
  if (!sniInspection && chains.some((c) => c.serverNames.length > 0)) {
    fail(`${what}: filter chains match server_names but the listener has no tls_inspector listener filter, so no connection would carry a server name; add envoy.filters.listener.tls_inspector`);
  }

  const metaMode = meta?.['mode'];
  let mode: SpliceMode;
  if (metaMode !== undefined) {
    if (metaMode !== 'xdp' && metaMode !== 'skb' && metaMode !== 'userspace') fail(`${what}: metadata ebpf_xds.mode "${String(metaMode)}" is not xdp, skb or userspace`);
    mode = metaMode;
  } else {
    mode = (chains.find((c) => c.serverNames.length === 0) ?? chains[0]!).mode;
  }
  const iface = listenerInterface ?? chains.find((c) => c.interface)?.interface;
  const out: DesiredListener = { name, address: sock.address, ports, mode, sniInspection, chains, dropRules: dropRules ?? [] };
  if (iface) out.interface = iface;
  return out;
}

function isEbpfFilter(f: unknown): boolean {
  const t = ((f as Json | undefined)?.['typed_config'] as Json | undefined)?.['@type'];
  return t === FILTER_TYPES.xdp || t === FILTER_TYPES.skb;
}

function metadataOf(l: Json): Json | undefined {
  const fm = ((l['metadata'] as Json | undefined)?.['filter_metadata'] as Json | undefined)?.[METADATA_NAMESPACE];
  return fm === undefined ? undefined : obj(fm, `metadata.filter_metadata.${METADATA_NAMESPACE}`);
}

function interfaceFromMetadata(meta: Json | undefined, what: string): InterfaceRef | undefined {
  const v = meta?.['interface'];
  if (v === undefined) return undefined;
  if (typeof v === 'string' && v !== '') return { name: v };
  if (typeof v === 'number' && Number.isInteger(v) && v > 0) return { index: v };
  fail(`${what}: metadata ebpf_xds.interface must be an interface name or a positive ifindex, got ${JSON.stringify(v)}`);
}

function listenerPorts(l: Json, bound: number, meta: Json | undefined, what: string): PortRange[] {
  const metaPorts = meta?.['ports'];
  let ranges: PortRange[];
  if (metaPorts !== undefined) {
    if (!Array.isArray(metaPorts) || metaPorts.length === 0) fail(`${what}: metadata ebpf_xds.ports must be a non-empty list of {start, end}`);
    ranges = metaPorts.map((p, i) => {
      const po = (p ?? {}) as Json;
      const start = po['start'];
      const end = po['end'] ?? start;
      if (!isPort(start) || !isPort(end) || end < start) fail(`${what}: metadata ebpf_xds.ports[${i}] ${JSON.stringify(p)} is not a port range {start, end} within 1-65535 with start <= end`);
      return { start, end };
    });
    if (ranges[0]!.start !== bound) fail(`${what}: metadata ebpf_xds.ports starts at ${ranges[0]!.start} but the listener binds port ${bound}; the first range must begin with the address's port`);
  } else {
    ranges = [{ start: bound, end: bound }];
    for (const [i, a] of arr(l['additional_addresses']).entries()) {
      const s = socketAddress((a as Json | undefined)?.['address'], `${what}: additional_addresses[${i}]`);
      ranges.push({ start: s.port, end: s.port });
    }
  }
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.start <= sorted[i - 1]!.end) fail(`${what}: ports ${fmtRange(sorted[i - 1]!)} and ${fmtRange(sorted[i]!)} overlap`);
  }
  return ranges;
}

function fmtRange(r: PortRange): string {
  return r.start === r.end ? String(r.start) : `${r.start}-${r.end}`;
}

function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

function socketAddress(addr: unknown, what: string): { address: string; port: number } {
  const sa = (addr as Json | undefined)?.['socket_address'] as Json | undefined;
  if (!sa) fail(`${what}: needs a socket_address (pipes and internal addresses are not supported by the agent)`);
  const protocol = sa['protocol'];
  if (protocol !== undefined && protocol !== 'TCP') fail(`${what}: protocol ${String(protocol)} is not supported; the agent proxies TCP`);
  const address = str(sa['address']);
  if (!parseIp(address)) fail(`${what}: "${address}" is not an IP address (the agent does not resolve names)`);
  if (sa['named_port'] !== undefined) fail(`${what}: named_port is not supported; give port_value`);
  const port = sa['port_value'];
  if (!isPort(port)) fail(`${what}: port_value ${JSON.stringify(port ?? 0)} is not a TCP port (1-65535)`);
  return { address, port };
}

function decodeChain(c: Json, k: number, listenerWhat: string, listenerInterface: InterfaceRef | undefined): { chain: DesiredChain; dropRules: DesiredDropRule[] } {
  const name = typeof c['name'] === 'string' && c['name'] !== '' ? c['name'] : `chain-${k}`;
  const what = `${listenerWhat}: filter chain "${name}"`;
  const match = (c['filter_chain_match'] as Json | undefined) ?? {};
  for (const key of Object.keys(match)) {
    if (key === 'server_names') continue;
    if (key === 'transport_protocol' && match[key] === 'tls') continue; // implied by a server name
    fail(`${what}: filter_chain_match.${key} is not supported by the ebpf-xds agent (it matches server_names only); remove it or give this listener a nodeSelector that leaves out agents`);
  }
  const serverNames = arr(match['server_names']).map((s) => str(s).toLowerCase());
  if (c['transport_socket'] !== undefined) fail(`${what}: transport_socket (TLS termination) is not supported; the agent splices TCP without terminating TLS`);
  const filters = arr(c['filters']).map((f) => obj(f, 'filter'));
  if (filters.length === 0) fail(`${what}: no network filters; it needs a tcp_proxy, ebpf_tcp_proxy_skb or ebpf_tcp_proxy_xdp filter`);
  let dropRules: DesiredDropRule[] = [];
  filters.slice(0, -1).forEach((f, i) => {
    const t = (f['typed_config'] as Json | undefined)?.['@type'];
    if (t !== FILTER_TYPES.rbac) fail(`${what}: filters[${i}] "${str(f['name'])}" is not supported before the proxy filter (only RBAC DENY drop rules are)`);
    dropRules = [...dropRules, ...decodeRbac(f['typed_config'] as Json, `${what}: filters[${i}] (RBAC)`)];
  });
  const last = filters[filters.length - 1]!;
  const typed = (last['typed_config'] as Json | undefined) ?? {};
  const t = typed['@type'];
  let mode: SpliceMode;
  let tcpProxy: Json;
  let iface: InterfaceRef | undefined;
  switch (t) {
    case FILTER_TYPES.xdp: {
      mode = 'xdp';
      tcpProxy = obj(typed['tcp_proxy'] ?? {}, 'tcp_proxy');
      const ifName = typed['interface_name'];
      const ifIndex = typed['interface_index'];
      if (typeof ifName === 'string' && ifName !== '') iface = { name: ifName };
      else if (typeof ifIndex === 'number' && ifIndex > 0) iface = { index: ifIndex };
      else iface = listenerInterface;
      if (!iface) fail(`${what}: EbpfTcpProxyXDP names no interface (interface_name or interface_index); XDP splice attaches to one`);
      break;
    }
    case FILTER_TYPES.skb:
      mode = 'skb';
      tcpProxy = obj(typed['tcp_proxy'] ?? {}, 'tcp_proxy');
      break;
    case FILTER_TYPES.userspace:
      mode = 'userspace';
      tcpProxy = typed;
      break;
    default:
      fail(
        `${what}: network filter "${str(last['name'])}"${typeof t === 'string' ? ` (${t})` : ''} is not supported by the ebpf-xds agent (it serves tcp_proxy, ebpf_tcp_proxy_skb and ebpf_tcp_proxy_xdp, after RBAC DENY drop rules); give this listener a nodeSelector that leaves out agents`,
      );
  }
  if (tcpProxy['weighted_clusters'] !== undefined) fail(`${what}: TcpProxy weighted_clusters is not supported; route to one cluster`);
  if (tcpProxy['tunneling_config'] !== undefined) fail(`${what}: TcpProxy tunneling_config is not supported`);
  const cluster = tcpProxy['cluster'];
  if (typeof cluster !== 'string' || cluster === '') fail(`${what}: TcpProxy names no cluster`);
  const idle = tcpProxy['idle_timeout'];
  const attempts = tcpProxy['max_connect_attempts'];
  if (attempts !== undefined && (typeof attempts !== 'number' || !Number.isInteger(attempts) || attempts < 1)) fail(`${what}: TcpProxy max_connect_attempts must be at least 1`);
  const chain: DesiredChain = {
    name,
    serverNames,
    cluster,
    mode,
    statPrefix: typeof tcpProxy['stat_prefix'] === 'string' ? tcpProxy['stat_prefix'] : cluster,
    idleTimeoutMs: idle === undefined ? DEFAULT_IDLE_TIMEOUT_MS : durationMs(idle, `${what}: TcpProxy idle_timeout`),
    maxConnectAttempts: typeof attempts === 'number' ? attempts : 1,
  };
  if (iface) chain.interface = iface;
  return { chain, dropRules };
}

/** RBAC DENY policies → drop rules (docs/config.md, "Drop rules → RBAC DENY"). */
export function decodeRbac(rbac: Json, what: string): DesiredDropRule[] {
  if (rbac['shadow_rules'] !== undefined || rbac['matcher'] !== undefined || rbac['shadow_matcher'] !== undefined) {
    fail(`${what}: only rules.policies are supported (no matcher or shadow rules)`);
  }
  const rules = (rbac['rules'] as Json | undefined) ?? {};
  const action = rules['action'] ?? 'ALLOW';
  if (action !== 'DENY') fail(`${what}: action ${String(action)} is not supported; the agent compiles DENY policies into drop rules`);
  const out: DesiredDropRule[] = [];
  for (const [policy, p] of Object.entries((rules['policies'] as Json | undefined) ?? {})) {
    const pw = `${what}: policy "${policy}"`;
    const po = obj(p, pw);
    if (po['condition'] !== undefined || po['checked_condition'] !== undefined) fail(`${pw}: conditions are not supported`);
    const ports = decodePermissions(arr(po['permissions']), pw);
    for (const pr of arr(po['principals'])) {
      const pro = obj(pr, pw);
      const ip = (pro['direct_remote_ip'] ?? pro['source_ip']) as Json | undefined;
      if (!ip || Object.keys(pro).length !== 1) fail(`${pw}: principals other than direct_remote_ip (a CIDR) are not supported`);
      const address = str(ip['address_prefix']);
      const parsedIp = parseIp(address);
      if (!parsedIp) fail(`${pw}: "${address}" is not an IP address`);
      const len = ip['prefix_len'] ?? (parsedIp.family === 4 ? 32 : 128);
      const cidr = parseCidr(`${address}/${String(len)}`);
      if ('error' in cidr) fail(`${pw}: ${cidr.error}`);
      out.push({ name: policy, cidr: formatCidr(cidr.cidr), ports });
    }
  }
  return out;
}

/** RBAC permissions → destination ports ([] = every port). */
function decodePermissions(perms: unknown[], what: string): PortRange[] {
  const ports: PortRange[] = [];
  const one = (p: Json): boolean => {
    if (p['any'] === true) return true;
    if (p['destination_port'] !== undefined) {
      const n = p['destination_port'];
      if (!isPort(n)) fail(`${what}: destination_port ${JSON.stringify(n)} is not a port`);
      ports.push({ start: n, end: n });
      return false;
    }
    if (p['destination_port_range'] !== undefined) {
      const r = obj(p['destination_port_range'], what);
      const start = r['start'] ?? 0;
      const end = r['end'] ?? 0;
      // Int32Range: end is exclusive.
      if (!isPort(start) || typeof end !== 'number' || end - 1 < start || end - 1 > 65535) fail(`${what}: destination_port_range ${JSON.stringify(r)} is not a port range (end is exclusive)`);
      ports.push({ start, end: end - 1 });
      return false;
    }
    if (p['or_rules'] !== undefined) {
      let any = false;
      for (const r of arr(obj(p['or_rules'], what)['rules'])) any = one(obj(r, what)) || any;
      return any;
    }
    fail(`${what}: permission ${JSON.stringify(Object.keys(p))} is not supported (any, destination_port, destination_port_range, or_rules of them)`);
  };
  let any = perms.length === 0;
  for (const p of perms) any = one(obj(p, what)) || any;
  return any ? [] : ports.sort((a, b) => a.start - b.start);
}

function sameRules(a: DesiredDropRule[], b: DesiredDropRule[]): boolean {
  const key = (r: DesiredDropRule) => `${r.name}|${r.cidr}|${r.ports.map(fmtRange).join(',')}`;
  const ka = a.map(key).sort();
  const kb = b.map(key).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i]);
}

// ---------------------------------------------------------------------------------------------
// Cluster

const LB: Record<string, LbPolicy> = { ROUND_ROBIN: 'round_robin', LEAST_REQUEST: 'least_request', RANDOM: 'random', MAGLEV: 'maglev', RING_HASH: 'ring_hash' };

/** One Cluster: EDS (endpoints from a ClusterLoadAssignment) or STATIC (inline load_assignment). */
export function decodeCluster(json: unknown): { cluster: Omit<DesiredCluster, 'endpoints'>; edsName?: string; endpoints: DesiredEndpoint[] } {
  const c = obj(json, 'Cluster');
  const name = str(c['name']);
  const what = `cluster "${name}"`;
  if (c['cluster_type'] !== undefined) fail(`${what}: custom cluster types are not supported (use EDS or STATIC)`);
  const type = c['type'] ?? 'STATIC';
  const lbName = c['lb_policy'] ?? 'ROUND_ROBIN';
  const lbPolicy = LB[String(lbName)];
  if (!lbPolicy) fail(`${what}: lb_policy ${String(lbName)} is not supported (${Object.keys(LB).join(', ')})`);
  const cluster: Omit<DesiredCluster, 'endpoints'> = {
    name,
    lbPolicy,
    connectTimeoutMs: c['connect_timeout'] === undefined ? DEFAULT_CONNECT_TIMEOUT_MS : durationMs(c['connect_timeout'], `${what}: connect_timeout`),
  };
  const checks = arr(c['health_checks']);
  if (checks.length > 1) fail(`${what}: ${checks.length} health checks; the agent runs one TCP health check per cluster`);
  if (checks.length === 1) cluster.healthCheck = decodeHealthCheck(obj(checks[0], what), what);
  if (type === 'EDS') {
    const eds = (c['eds_cluster_config'] as Json | undefined) ?? {};
    const source = (eds['eds_config'] as Json | undefined) ?? {};
    if (source['ads'] === undefined && Object.keys(source).length > 0 && source['self'] === undefined) {
      fail(`${what}: eds_config must be ADS (the agent keeps one ADS stream to the control plane)`);
    }
    const service = eds['service_name'];
    return { cluster, edsName: typeof service === 'string' && service !== '' ? service : name, endpoints: [] };
  }
  if (type === 'STATIC') {
    const endpoints = c['load_assignment'] === undefined ? [] : decodeAssignment(c['load_assignment'], what).endpoints;
    return { cluster, endpoints };
  }
  fail(`${what}: discovery type ${String(type)} is not supported (EDS or STATIC; the agent does not resolve names)`);
}

function decodeHealthCheck(h: Json, what: string): DesiredHealthCheck {
  const kinds = ['tcp_health_check', 'http_health_check', 'grpc_health_check', 'custom_health_check'].filter((k) => h[k] !== undefined);
  if (kinds.length !== 1 || kinds[0] !== 'tcp_health_check') fail(`${what}: health check ${kinds.join(', ') || 'without a kind'} is not supported (tcp_health_check only)`);
  const tcp = (h['tcp_health_check'] as Json | undefined) ?? {};
  if (tcp['send'] !== undefined || arr(tcp['receive']).length > 0) fail(`${what}: tcp_health_check send/receive payloads are not supported (connect-only checks)`);
  const need = (k: string) => {
    if (h[k] === undefined) fail(`${what}: health check needs ${k}`);
    return durationMs(h[k], `${what}: health check ${k}`);
  };
  const th = (k: string) => {
    const v = h[k];
    if (v === undefined) fail(`${what}: health check needs ${k}`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) fail(`${what}: health check ${k} must be at least 1, got ${JSON.stringify(v)}`);
    return v;
  };
  const intervalMs = need('interval');
  const timeoutMs = need('timeout');
  if (intervalMs <= 0 || timeoutMs <= 0) fail(`${what}: health check interval and timeout must be longer than 0`);
  return { intervalMs, timeoutMs, unhealthyThreshold: th('unhealthy_threshold'), healthyThreshold: th('healthy_threshold') };
}

// ---------------------------------------------------------------------------------------------
// ClusterLoadAssignment

const HEALTH: Record<string, EndpointHealth> = { UNKNOWN: 'unknown', HEALTHY: 'healthy', UNHEALTHY: 'unhealthy', DRAINING: 'draining', TIMEOUT: 'timeout', DEGRADED: 'degraded' };

export function decodeAssignment(json: unknown, owner?: string): { clusterName: string; endpoints: DesiredEndpoint[] } {
  const a = obj(json, 'ClusterLoadAssignment');
  const clusterName = typeof a['cluster_name'] === 'string' ? a['cluster_name'] : '';
  const what = owner ? `${owner}: load_assignment` : `ClusterLoadAssignment "${clusterName}"`;
  const endpoints: DesiredEndpoint[] = [];
  const seen = new Set<string>();
  for (const [li, loc] of arr(a['endpoints']).entries()) {
    const lo = obj(loc, what);
    if ((lo['priority'] ?? 0) !== 0) fail(`${what}: endpoints[${li}] has priority ${String(lo['priority'])}; the agent balances over priority 0 only (failover priorities are not supported)`);
    for (const [ei, e] of arr(lo['lb_endpoints']).entries()) {
      const ew = `${what}: endpoints[${li}].lb_endpoints[${ei}]`;
      const eo = obj(e, ew);
      if (eo['endpoint_name'] !== undefined && eo['endpoint'] === undefined) fail(`${ew}: named endpoints are not supported; give the endpoint's address`);
      const ep = obj(eo['endpoint'] ?? {}, ew);
      const sa = socketAddress(ep['address'], `${ew}: address`);
      const key = `${sa.address}|${sa.port}`;
      if (seen.has(key)) fail(`${ew}: ${sa.address}:${sa.port} is listed twice`);
      seen.add(key);
      const w = eo['load_balancing_weight'] ?? 1;
      if (typeof w !== 'number' || !Number.isInteger(w) || w < 1) fail(`${ew}: load_balancing_weight must be at least 1, got ${JSON.stringify(w)}`);
      const hs = String(eo['health_status'] ?? 'UNKNOWN');
      const health = HEALTH[hs];
      if (!health) fail(`${ew}: health_status ${hs} is unknown`);
      endpoints.push({ address: sa.address, port: sa.port, weight: w, health });
    }
  }
  return { clusterName, endpoints };
}

// ---------------------------------------------------------------------------------------------
// JSON helpers

function obj(v: unknown, what: string): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(`${what} is not an object`);
  return v as Json;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? [...(v as unknown[])] : [];
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** A proto3 JSON Duration ("1.5s", "3600s") in milliseconds. */
export function durationMs(v: unknown, what: string): number {
  const m = typeof v === 'string' ? /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(v) : null;
  if (!m) fail(`${what}: ${JSON.stringify(v)} is not a duration`);
  if (m[1] === '-') fail(`${what}: ${String(v)} is negative`);
  const frac = (m[3] ?? '').padEnd(9, '0');
  return Number(m[2]) * 1000 + Math.round(Number(frac) / 1e6);
}
