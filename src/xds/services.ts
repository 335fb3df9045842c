// Owns the gRPC service definitions of the xDS server, read from the Envoy protos (ADS and the
// per-type discovery services), with pass-through serializers: requests reach the streams as
// bytes (decoded there with protobufjs), responses are already-encoded Buffers.
import type * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { protoRegistry } from '../proto/registry.js';
import type { RawRequest } from './requests.js';
import { TypeUrl } from './resources.js';

export type MethodKind = 'sotw' | 'delta' | 'fetch';

export interface XdsMethod {
  /** Full gRPC path, e.g. /envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources. */
  path: string;
  serviceName: string;
  methodName: string;
  kind: MethodKind;
  /** ads, lds, cds, eds, rds, sds */
  label: string;
  /** The only type the method serves; null for ADS. */
  typeUrl: string | null;
}

interface ServiceSpec {
  name: string;
  label: string;
  typeUrl: string | null;
}

const SERVICES: readonly ServiceSpec[] = [
  { name: 'envoy.service.discovery.v3.AggregatedDiscoveryService', label: 'ads', typeUrl: null },
  { name: 'envoy.service.listener.v3.ListenerDiscoveryService', label: 'lds', typeUrl: TypeUrl.Listener },
  { name: 'envoy.service.cluster.v3.ClusterDiscoveryService', label: 'cds', typeUrl: TypeUrl.Cluster },
  { name: 'envoy.service.endpoint.v3.EndpointDiscoveryService', label: 'eds', typeUrl: TypeUrl.ClusterLoadAssignment },
  { name: 'envoy.service.route.v3.RouteDiscoveryService', label: 'rds', typeUrl: TypeUrl.RouteConfiguration },
  { name: 'envoy.service.secret.v3.SecretDiscoveryService', label: 'sds', typeUrl: TypeUrl.Secret },
];

function kindOf(method: protobuf.Method): MethodKind {
  const req = method.resolvedRequestType?.fullName.replace(/^\./, '') ?? method.requestType;
  if (!method.requestStream) return 'fetch';
  if (req.endsWith('DeltaDiscoveryRequest')) return 'delta';
  if (req.endsWith('DiscoveryRequest')) return 'sotw';
  throw new Error(`unexpected xDS method ${method.fullName} with request ${req}`);
}

/** Every xDS method we serve, read from the loaded protos. */
export function xdsMethods(): XdsMethod[] {
  const root = protoRegistry().root;
  const out: XdsMethod[] = [];
  for (const spec of SERVICES) {
    const svc = root.lookupService(spec.name);
    svc.resolveAll();
    for (const m of svc.methodsArray) {
      out.push({
        path: `/${spec.name}/${m.name}`,
        serviceName: spec.name,
        methodName: m.name,
        kind: kindOf(m),
        label: spec.label,
        typeUrl: spec.typeUrl,
      });
    }
  }
  return out;
}

const passThrough = (b: Buffer): Buffer => b;

/** grpc-js service definition for one service's methods. */
export function serviceDefinition(methods: readonly XdsMethod[]): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, Buffer>> = {};
  for (const m of methods) {
    def[m.methodName] = {
      path: m.path,
      requestStream: m.kind !== 'fetch',
      responseStream: m.kind !== 'fetch',
      // Decoding happens in the stream (a SotW stream reuses its last resource_names list), where
      // undecodable input becomes an INVALID_ARGUMENT status instead of a grpc-js INTERNAL.
      requestDeserialize: (b: Buffer): RawRequest => ({ kind: 'raw', bytes: b }),
      requestSerialize: passThrough as (v: unknown) => Buffer,
      responseSerialize: passThrough,
      responseDeserialize: passThrough,
      originalName: m.methodName,
    };
  }
  return def as grpc.ServiceDefinition;
}
