// Owns the vocabulary the xDS server shares with its callers: resource type URLs, the raw
// resource shape handed to the cache, and the per-type rules of xds_protocol.rst that depend only
// on the type (which types are "full state" in SotW, which accept the legacy wildcard, ADS order).
import { readStringField, scanFields } from './wire.js';

export const TYPE_URL_PREFIX = 'type.googleapis.com/';

export const TypeUrl = {
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  ScopedRouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration',
  VirtualHost: 'type.googleapis.com/envoy.config.route.v3.VirtualHost',
  Secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
  Runtime: 'type.googleapis.com/envoy.service.runtime.v3.Runtime',
} as const;

/** One resource as the caller hands it to the cache: the encoded message itself, not an Any. */
export interface XdsResource {
  typeUrl: string;
  name: string;
  bytes: Uint8Array;
}

/** Names a resource without its content. */
export interface ResourceKey {
  typeUrl: string;
  name: string;
}

/**
 * xds_protocol.rst, "Grouping Resources into Responses": in SotW, Listener and Cluster responses
 * carry the complete set; every other type may carry only what changed.
 */
export function isFullStateType(typeUrl: string): boolean {
  return typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.Cluster;
}

/**
 * xds_protocol.rst, "How the client specifies what resources to return": a stream that never named
 * a resource is a wildcard subscriber. We keep that legacy meaning for Listener and Cluster only,
 * the two types the spec defines a wildcard for; other types need an explicit "*".
 */
export function allowsLegacyWildcard(typeUrl: string): boolean {
  return isFullStateType(typeUrl);
}

/**
 * xds_protocol.rst, "Eventual consistency considerations": make before break. On ADS we push
 * clusters, then endpoints, then listeners, then routes (then scoped routes and virtual hosts).
 * Types not listed here are independent and are never held back by this order.
 */
export const ADS_ORDER: readonly string[] = [
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
  TypeUrl.ScopedRouteConfiguration,
  TypeUrl.VirtualHost,
];

const ADS_RANK = new Map(ADS_ORDER.map((t, i) => [t, i]));

/** Position in the ADS push order; types outside it come after, in first-subscribed order. */
export function adsRank(typeUrl: string): number {
  return ADS_RANK.get(typeUrl) ?? ADS_ORDER.length;
}

const SHORT_NAMES: Record<string, string> = {
  [TypeUrl.Listener]: 'lds',
  [TypeUrl.Cluster]: 'cds',
  [TypeUrl.ClusterLoadAssignment]: 'eds',
  [TypeUrl.RouteConfiguration]: 'rds',
  [TypeUrl.ScopedRouteConfiguration]: 'srds',
  [TypeUrl.VirtualHost]: 'vhds',
  [TypeUrl.Secret]: 'sds',
  [TypeUrl.Runtime]: 'rtds',
};

/** A short label for logs ("cds"), or the message name for types without a conventional one. */
export function typeLabel(typeUrl: string): string {
  return SHORT_NAMES[typeUrl] ?? typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

/**
 * The ClusterLoadAssignment name an EDS cluster asks for: eds_cluster_config.service_name, or the
 * cluster's own name. Undefined for clusters that do not use EDS. Reads the wire format directly
 * (Cluster.name = 1, type = 2 with EDS = 3, eds_cluster_config = 3 { service_name = 2 }), so the
 * cache needs no schema for it.
 */
export function clusterEdsServiceName(clusterBytes: Uint8Array): string | undefined {
  let name = '';
  let type: number | undefined;
  let eds: Uint8Array | undefined;
  for (const f of scanFields(clusterBytes)) {
    if (f.field === 1 && f.bytes) name = utf8.decode(f.bytes);
    else if (f.field === 2 && f.varint !== undefined) type = f.varint;
    else if (f.field === 3 && f.bytes) eds = f.bytes;
  }
  if (eds) return readStringField(eds, 2) || name;
  return type === 3 ? name : undefined;
}

const utf8 = new TextDecoder('utf-8');
