// Envoy resources for xDS tests (built from proto3 JSON with the strict codec) and a helper that
// starts an XdsServer on an ephemeral port with a fresh cache and metrics registry.
import { Registry } from 'prom-client';
import { encodeJson } from '../../src/proto/json.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { TypeUrl, type XdsResource } from '../../src/xds/resources.js';
import { XdsServer, type XdsServerOptions } from '../../src/xds/server.js';

const ADS_SOURCE = { ads: {}, resource_api_version: 'V3' };

function resource(typeUrl: string, name: string, json: Record<string, unknown>): XdsResource {
  return { typeUrl, name, bytes: encodeJson(typeUrl.slice(typeUrl.lastIndexOf('/') + 1), json) };
}

/** An EDS cluster whose endpoints come over ADS. */
export function edsCluster(name: string, opts: { serviceName?: string; connectTimeout?: string; lbPolicy?: string } = {}): XdsResource {
  return resource(TypeUrl.Cluster, name, {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS_SOURCE, ...(opts.serviceName ? { service_name: opts.serviceName } : {}) },
    connect_timeout: opts.connectTimeout ?? '1s',
    lb_policy: opts.lbPolicy ?? 'ROUND_ROBIN',
  });
}

/** A ClusterLoadAssignment with healthy endpoints in one locality. */
export function cla(clusterName: string, endpoints: Array<{ address: string; port: number; weight?: number }>): XdsResource {
  return resource(TypeUrl.ClusterLoadAssignment, clusterName, {
    cluster_name: clusterName,
    endpoints: [
      {
        locality: { region: 'test' },
        load_balancing_weight: 1,
        lb_endpoints: endpoints.map((e) => ({
          endpoint: { address: { socket_address: { address: e.address, port_value: e.port } } },
          health_status: 'HEALTHY',
          ...(e.weight !== undefined ? { load_balancing_weight: e.weight } : {}),
        })),
      },
    ],
  });
}

/** A gRPC-style ApiListener: HttpConnectionManager with RDS over ADS and the router filter. */
export function apiListener(name: string, routeConfigName: string): XdsResource {
  return resource(TypeUrl.Listener, name, {
    name,
    api_listener: {
      api_listener: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        stat_prefix: name,
        rds: { config_source: ADS_SOURCE, route_config_name: routeConfigName },
        http_filters: [{ name: 'router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
      },
    },
  });
}

/** A plain TCP listener (for tests that only need some Listener). */
export function tcpListener(name: string, port: number, cluster: string): XdsResource {
  return resource(TypeUrl.Listener, name, {
    name,
    address: { socket_address: { address: '0.0.0.0', port_value: port } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.tcp_proxy',
            typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: name, cluster },
          },
        ],
      },
    ],
  });
}

/** A RouteConfiguration sending everything for `domains` to one cluster. */
export function routeConfig(name: string, cluster: string, domains: string[] = ['*']): XdsResource {
  return resource(TypeUrl.RouteConfiguration, name, {
    name,
    virtual_hosts: [{ name: `${name}-vh`, domains, routes: [{ match: { prefix: '' }, route: { cluster } }] }],
  });
}

export interface RunningServer {
  server: XdsServer;
  cache: SnapshotCache;
  registry: Registry;
  port: number;
  address: string;
  close(): Promise<void>;
}

/** Starts an xDS server on 127.0.0.1 with an ephemeral port. */
export async function startXdsServer(opts: Partial<XdsServerOptions> = {}): Promise<RunningServer> {
  const registry = opts.registry ?? new Registry();
  const cache = opts.cache ?? new SnapshotCache();
  const server = new XdsServer({ ...opts, cache, registry });
  const port = await server.listen(0, '127.0.0.1');
  return { server, cache, registry, port, address: `127.0.0.1:${port}`, close: () => server.close() };
}
