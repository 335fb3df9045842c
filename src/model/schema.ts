// The config model operators write (YAML or JSON): TypeBox schemas that are at once the TypeScript
// types (Static<>), the structural validation and the OpenAPI documentation. Semantic rules that a
// schema cannot express (references, port clashes, CIDRs) live in validate.ts.
import Type, { type Static } from 'typebox';
import { DURATION_PATTERN } from './duration.js';

const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';

export const Name = Type.String({
  pattern: NAME_PATTERN,
  description: 'a name of 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit',
  examples: ['kafka1'],
});

export const Duration = Type.String({
  pattern: DURATION_PATTERN,
  description: 'a duration such as "250ms", "5s", "1m" or "1m30s"',
  examples: ['250ms'],
});

export const PortNumber = Type.Integer({ minimum: 1, maximum: 65535, description: 'a TCP port (1-65535)' });

export const PortSpec = Type.Union([PortNumber, Type.String({ pattern: '^[0-9]{1,5}-[0-9]{1,5}$' })], {
  description: 'a TCP port (1-65535) or an inclusive range such as "5000-5010"',
  examples: [4444, '5000-5010'],
});

export const NodeSelector = Type.Object(
  {
    ids: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'node ids (Node.id); any of them matches' })),
    clusters: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'node clusters (Node.cluster); any of them matches' })),
    labels: Type.Optional(
      Type.Record(Type.String({ minLength: 1 }), Type.String(), {
        description: 'every label must equal the string value of the same key in Node.metadata',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'narrows which nodes receive a resource; every given field must match (no selector: every node)',
  },
);

export const ListenerMode = Type.Enum(['xdp', 'skb', 'userspace'], {
  description: 'xdp: XDP splice on an interface; skb: sockmap splice; userspace: plain Envoy tcp_proxy',
});

export const InterfaceRef = Type.Union(
  [Type.String({ pattern: '^[^\\s/:]{1,15}$' }), Type.Integer({ minimum: 1, maximum: 2147483647 })],
  { description: 'a network interface by name (resolved on each node, e.g. "eth1") or by ifindex', examples: ['eth1'] },
);

export const ServerName = Type.String({
  pattern: '^(\\*\\.)?[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\\.?$',
  maxLength: 253,
  description: 'a TLS server name (SNI), optionally with a leading "*." wildcard',
  examples: ['kafka1.server.test'],
});

export const Route = Type.Object(
  {
    serverNames: Type.Array(ServerName, { minItems: 1, description: 'SNI names that select this route' }),
    cluster: Name,
    mode: Type.Optional(ListenerMode),
  },
  { additionalProperties: false, description: 'an SNI route: connections whose TLS ClientHello names one of serverNames go to cluster' },
);

export const Listener = Type.Object(
  {
    name: Name,
    address: Type.String({ description: 'IPv4 or IPv6 address to listen on; 0.0.0.0 or :: for every address', examples: ['0.0.0.0'] }),
    port: Type.Optional(PortNumber),
    ports: Type.Optional(Type.Array(PortSpec, { minItems: 1, description: 'ports and ranges; the first port is the listening socket, the rest are steered to it' })),
    mode: ListenerMode,
    interface: Type.Optional(InterfaceRef),
    routes: Type.Optional(Type.Array(Route, { description: 'SNI routes, tried by server name' })),
    cluster: Type.Optional(Name),
    idleTimeout: Type.Optional(Duration),
    nodeSelector: Type.Optional(NodeSelector),
  },
  { additionalProperties: false, description: 'a TCP listener; give either port or ports' },
);

export const HealthStatus = Type.Enum(['unknown', 'healthy', 'unhealthy', 'draining', 'timeout', 'degraded'], {
  description: 'health status reported to Envoy; default unknown (treated as healthy until health checks say otherwise)',
});

export const Endpoint = Type.Object(
  {
    address: Type.String({ description: 'IPv4 or IPv6 address of the backend', examples: ['10.10.1.3'] }),
    port: PortNumber,
    weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 4294967295, description: 'load balancing weight (default 1)' })),
    healthStatus: Type.Optional(HealthStatus),
  },
  { additionalProperties: false },
);

export const HealthCheck = Type.Object(
  {
    interval: Duration,
    timeout: Duration,
    unhealthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'failed checks before unhealthy (default 3)' })),
    healthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'passed checks before healthy (default 2)' })),
  },
  { additionalProperties: false, description: 'active TCP connect health check' },
);

export const LbPolicy = Type.Enum(['round_robin', 'least_request', 'random', 'maglev', 'ring_hash'], {
  description: 'how a backend is picked; maglev and ring_hash hash the client address',
});

export const Cluster = Type.Object(
  {
    name: Name,
    lbPolicy: Type.Optional(LbPolicy),
    connectTimeout: Type.Optional(Duration),
    maxConnectAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'upstream connect attempts per connection (default 1)' })),
    healthCheck: Type.Optional(HealthCheck),
    endpoints: Type.Optional(Type.Array(Endpoint)),
  },
  { additionalProperties: false },
);

export const DropRule = Type.Object(
  {
    name: Type.Optional(Name),
    cidr: Type.String({ description: 'source prefix to drop, IPv4 or IPv6, e.g. 192.168.3.0/24', examples: ['192.168.3.0/24'] }),
    ports: Type.Optional(Type.Array(PortSpec, { minItems: 1, description: 'only these destination ports (default: all)' })),
    listeners: Type.Optional(Type.Array(Name, { minItems: 1, description: 'only these listeners (default: all)' })),
  },
  { additionalProperties: false, description: 'drops connections from a source prefix; without a name it is named by its cidr' },
);

export const RawResource = Type.Object(
  {
    '@type': Type.String({ minLength: 1, description: 'type URL, e.g. type.googleapis.com/envoy.config.listener.v3.Listener' }),
    '@nodeSelector': Type.Optional(NodeSelector),
  },
  {
    additionalProperties: true,
    description: 'an Envoy v3 resource in proto3 JSON with "@type"; "@nodeSelector" (ours) narrows which nodes get it',
  },
);

export const ConfigDocument = Type.Object(
  {
    listeners: Type.Optional(Type.Array(Listener)),
    clusters: Type.Optional(Type.Array(Cluster)),
    dropRules: Type.Optional(Type.Array(DropRule)),
    resources: Type.Optional(Type.Array(RawResource)),
  },
  { additionalProperties: false, description: 'the whole desired configuration' },
);

export type NodeSelector = Static<typeof NodeSelector>;
export type ListenerMode = Static<typeof ListenerMode>;
export type Route = Static<typeof Route>;
export type Listener = Static<typeof Listener>;
export type HealthStatus = Static<typeof HealthStatus>;
export type Endpoint = Static<typeof Endpoint>;
export type HealthCheck = Static<typeof HealthCheck>;
export type LbPolicy = Static<typeof LbPolicy>;
export type Cluster = Static<typeof Cluster>;
export type DropRule = Static<typeof DropRule>;
export type RawResource = Static<typeof RawResource> & Record<string, unknown>;
export type ConfigDocumentInput = Static<typeof ConfigDocument>;

/** A config document with every collection present: the form the store keeps. */
export interface ConfigDocument {
  listeners: Listener[];
  clusters: Cluster[];
  dropRules: DropRule[];
  resources: RawResource[];
}

export function emptyConfig(): ConfigDocument {
  return { listeners: [], clusters: [], dropRules: [], resources: [] };
}
