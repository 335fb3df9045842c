// The agent's view of its configuration: what it decoded from the xDS resources (Listener,
// Cluster, ClusterLoadAssignment; see docs/config.md for where each fact lives in them). The
// xDS client produces it, the reconciler and the embedded proxy consume it. Plain data only.

export type SpliceMode = 'xdp' | 'skb' | 'userspace';

export type LbPolicy = 'round_robin' | 'least_request' | 'random' | 'maglev' | 'ring_hash';

/** Inclusive port range; a single port has start === end. */
export interface PortRange {
  start: number;
  end: number;
}

export interface InterfaceRef {
  /** Interface name, resolved on this node (EbpfTcpProxyXDP.interface_name). */
  name?: string;
  /** Interface index (EbpfTcpProxyXDP.interface_index), used when no name is given. */
  index?: number;
}

/** One filter chain: its SNI match (empty: the default chain) and where it sends traffic. */
export interface DesiredChain {
  /** Envoy filter chain name (route-<k> or default). */
  name: string;
  /** filter_chain_match.server_names; empty for the default chain. Wildcards like "*.a.test". */
  serverNames: string[];
  cluster: string;
  mode: SpliceMode;
  /** TcpProxy stat_prefix, used as a metrics label. */
  statPrefix: string;
  /** TcpProxy idle_timeout in ms; 0 disables it. Envoy's default is 1h. */
  idleTimeoutMs: number;
  /** TcpProxy max_connect_attempts (>= 1). */
  maxConnectAttempts: number;
  /** Interface for xdp mode. */
  interface?: InterfaceRef;
}

export interface DesiredListener {
  name: string;
  address: string;
  /** Every port and range the listener serves (metadata ebpf_xds.ports); ports[0].start binds. */
  ports: PortRange[];
  /** Listener-level mode (metadata ebpf_xds.mode); chains may override it. */
  mode: SpliceMode;
  interface?: InterfaceRef;
  /** True when the listener has tls_inspector, i.e. chains match on SNI. */
  sniInspection: boolean;
  chains: DesiredChain[];
  /** Drop rules that apply to this listener (from its RBAC DENY filter). */
  dropRules: DesiredDropRule[];
}

export interface DesiredDropRule {
  /** RBAC policy name. */
  name: string;
  /** CIDR, e.g. 192.168.3.0/24 or 2001:db8::/32. */
  cidr: string;
  /** Destination ports the rule applies to; empty: every port of the listener. */
  ports: PortRange[];
}

export type EndpointHealth = 'unknown' | 'healthy' | 'unhealthy' | 'draining' | 'timeout' | 'degraded';

export interface DesiredEndpoint {
  address: string;
  port: number;
  weight: number;
  /** Health status the control plane assigned (CLA health_status). */
  health: EndpointHealth;
}

export interface DesiredHealthCheck {
  intervalMs: number;
  timeoutMs: number;
  unhealthyThreshold: number;
  healthyThreshold: number;
}

export interface DesiredCluster {
  name: string;
  lbPolicy: LbPolicy;
  connectTimeoutMs: number;
  healthCheck?: DesiredHealthCheck;
  /** From the cluster's ClusterLoadAssignment; empty until it arrives. */
  endpoints: DesiredEndpoint[];
}

export interface DesiredState {
  listeners: DesiredListener[];
  clusters: DesiredCluster[];
}
