// Type URLs of the Envoy resources the model generates. The model keeps its own copy (plain
// strings) so it does not depend on the xDS server's modules.
export const ResourceType = {
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
} as const;

/** Full message name of a type URL (the part after the last "/"). */
export function messageName(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

/** Short label for messages: "Listener", "ClusterLoadAssignment". */
export function shortType(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
}
