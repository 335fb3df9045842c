// Owns decoding of DiscoveryRequest / DeltaDiscoveryRequest bytes (protobufjs, Envoy protos) into
// plain typed objects, and the checks every request gets before it touches stream state: type URL,
// resource name shape and count. Pure: no I/O, no stream state.
import type protobuf from 'protobufjs';
import { protoRegistry } from '../proto/registry.js';
import { outlineMessage, wellFormedProblem } from './wire.js';

export interface Locality {
  region: string;
  zone: string;
  subZone: string;
}

/** The client's identity from envoy.config.core.v3.Node, as node groupers and the status API see it. */
export interface NodeInfo {
  id: string;
  cluster: string;
  metadata: Record<string, unknown>;
  locality?: Locality;
  userAgentName?: string;
  userAgentVersion?: string;
  clientFeatures?: string[];
}

export interface ErrorDetail {
  code: number;
  message: string;
}

export interface SotwRequest {
  kind: 'sotw';
  versionInfo: string;
  node: NodeInfo | null;
  /** The same array as the remembered list when the bytes were identical (see NamesMemo). */
  resourceNames: string[];
  /** True when resourceNames is the remembered list, not freshly decoded (already validated). */
  namesReused: boolean;
  /** The encoded resource_names fields (a view into the request), when they are contiguous. */
  namesBytes: Uint8Array | null;
  typeUrl: string;
  responseNonce: string;
  errorDetail: ErrorDetail | null;
}

export interface DeltaRequest {
  kind: 'delta';
  node: NodeInfo | null;
  typeUrl: string;
  subscribe: string[];
  unsubscribe: string[];
  initialResourceVersions: Map<string, string>;
  responseNonce: string;
  errorDetail: ErrorDetail | null;
}

/** A request as it comes off the wire; the stream decodes it (SotW streams with their NamesMemo). */
export interface RawRequest {
  kind: 'raw';
  bytes: Buffer;
}

/** A request that could not be decoded; the stream answers it with INVALID_ARGUMENT. */
export interface UndecodableRequest {
  kind: 'undecodable';
  message: string;
}

type Plain = Record<string, unknown>;

let sotwType: protobuf.Type | undefined;
let deltaType: protobuf.Type | undefined;

function types(): { sotw: protobuf.Type; delta: protobuf.Type } {
  const reg = protoRegistry();
  sotwType ??= reg.type('envoy.service.discovery.v3.DiscoveryRequest');
  deltaType ??= reg.type('envoy.service.discovery.v3.DeltaDiscoveryRequest');
  return { sotw: sotwType, delta: deltaType };
}

/** Loads the request types now (the registry takes about a second to parse the protos). */
export function preloadRequestTypes(): void {
  types();
}

/** A stream's last accepted resource_names per type, as bytes and as the decoded list. */
export type NamesMemo = ReadonlyMap<string, { bytes: Buffer; names: string[] }>;

const RESOURCE_NAMES_FIELD = 3;
const SOTW_TYPE_URL_FIELD = 4;
const utf8 = new TextDecoder('utf-8');

/**
 * Decodes a DiscoveryRequest. SotW clients repeat the full resource_names list in every ACK
 * (thousands of names for EDS); when its bytes equal the list remembered for the type, the
 * remembered array is reused instead of decoding and validating every name again.
 */
export function decodeSotwRequest(buf: Uint8Array, memo?: NamesMemo): SotwRequest | UndecodableRequest {
  // An ACK usually repeats a remembered list byte for byte: find it with one comparison instead
  // of walking its fields.
  let candidate: { key: string; bytes: Buffer; names: string[] } | undefined;
  const knownSpan =
    memo && memo.size > 0
      ? (at: number): number => {
          for (const [key, entry] of memo) {
            const len = entry.bytes.length;
            if (at + len <= buf.length && entry.bytes.equals(buf.subarray(at, at + len))) {
              candidate = { key, ...entry };
              return len;
            }
          }
          return 0;
        }
      : undefined;
  const outline = outlineMessage(buf, RESOURCE_NAMES_FIELD, SOTW_TYPE_URL_FIELD, knownSpan);
  if (outline.problem) return { kind: 'undecodable', message: `malformed DiscoveryRequest: ${outline.problem}` };
  const span = outline.span;
  const namesBytes = span && span.contiguous ? buf.subarray(span.start, span.end) : null;
  let reused: string[] | undefined;
  if (memo && namesBytes && outline.text) {
    const typeUrl = utf8.decode(outline.text);
    const prev = candidate?.key === typeUrl && candidate.bytes.length === namesBytes.length ? candidate : memo.get(typeUrl);
    if (prev && prev.bytes.equals(namesBytes)) reused = prev.names;
  }
  let m: Plain;
  try {
    const rest = reused && span ? Buffer.concat([buf.subarray(0, span.start), buf.subarray(span.end)]) : buf;
    m = types().sotw.decode(rest) as unknown as Plain;
  } catch (err) {
    return { kind: 'undecodable', message: `malformed DiscoveryRequest: ${(err as Error).message}` };
  }
  return {
    kind: 'sotw',
    versionInfo: str(m['version_info']),
    node: nodeInfo(m['node']),
    resourceNames: reused ?? (m['resource_names'] as string[] | undefined) ?? [],
    namesReused: reused !== undefined,
    namesBytes,
    typeUrl: str(m['type_url']),
    responseNonce: str(m['response_nonce']),
    errorDetail: errorDetail(m['error_detail']),
  };
}

export function decodeDeltaRequest(buf: Uint8Array): DeltaRequest | UndecodableRequest {
  const problem = wellFormedProblem(buf);
  if (problem) return { kind: 'undecodable', message: `malformed DeltaDiscoveryRequest: ${problem}` };
  let m: Plain;
  try {
    m = types().delta.decode(buf) as unknown as Plain;
  } catch (err) {
    return { kind: 'undecodable', message: `malformed DeltaDiscoveryRequest: ${(err as Error).message}` };
  }
  const irv = (m['initial_resource_versions'] as Record<string, string> | undefined) ?? {};
  return {
    kind: 'delta',
    node: nodeInfo(m['node']),
    typeUrl: str(m['type_url']),
    subscribe: (m['resource_names_subscribe'] as string[] | undefined) ?? [],
    unsubscribe: (m['resource_names_unsubscribe'] as string[] | undefined) ?? [],
    initialResourceVersions: new Map(Object.entries(irv)),
    responseNonce: str(m['response_nonce']),
    errorDetail: errorDetail(m['error_detail']),
  };
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function errorDetail(v: unknown): ErrorDetail | null {
  // xds_protocol.rst, "ACK/NACK and resource type instance version": the presence of
  // error_detail is what makes a request a NACK, whatever its contents.
  if (v === null || v === undefined) return null;
  const s = v as Plain;
  return { code: Number(s['code'] ?? 0), message: str(s['message']) };
}

function nodeInfo(v: unknown): NodeInfo | null {
  if (v === null || v === undefined) return null;
  const n = v as Plain;
  const info: NodeInfo = {
    id: str(n['id']),
    cluster: str(n['cluster']),
    metadata: n['metadata'] ? structToJson(n['metadata'] as Plain) : {},
  };
  const loc = n['locality'] as Plain | null | undefined;
  if (loc) info.locality = { region: str(loc['region']), zone: str(loc['zone']), subZone: str(loc['sub_zone']) };
  const ua = str(n['user_agent_name']);
  if (ua) info.userAgentName = ua;
  const uav = str(n['user_agent_version']);
  if (uav) info.userAgentVersion = uav;
  const features = n['client_features'] as string[] | undefined;
  if (features && features.length > 0) info.clientFeatures = features;
  return info;
}

// protobufjs bundles google/protobuf/struct.proto with camelCase field names. Decoded messages
// carry defaults on their prototype, so only own properties tell which oneof member was sent.
function valueToJson(v: Plain): unknown {
  const has = (k: string): boolean => Object.prototype.hasOwnProperty.call(v, k) && v[k] !== null && v[k] !== undefined;
  if (has('structValue')) return structToJson(v['structValue'] as Plain);
  if (has('listValue')) return (((v['listValue'] as Plain)['values'] as Plain[] | undefined) ?? []).map(valueToJson);
  if (has('stringValue')) return v['stringValue'];
  if (has('numberValue')) return v['numberValue'];
  if (has('boolValue')) return v['boolValue'];
  return null;
}

function structToJson(s: Plain): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const fields = (s['fields'] as Record<string, Plain> | undefined) ?? {};
  for (const [k, v] of Object.entries(fields)) out[k] = valueToJson(v);
  return out;
}

export interface RequestLimits {
  /** Most resource names one request may carry, and one stream may hold per type. */
  maxNamesPerRequest: number;
  /** Longest resource name, in UTF-16 code units. */
  maxNameLength: number;
}

/** Why a request is refused: a gRPC status code name and a message that names the problem. */
export interface RequestProblem {
  code: 'INVALID_ARGUMENT' | 'RESOURCE_EXHAUSTED';
  reason: string;
  message: string;
}

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** Checks resource names: count within the limit, each non-empty, not too long, no control characters. */
export function checkNames(names: readonly string[], field: string, typeUrl: string, limits: RequestLimits): RequestProblem | null {
  if (names.length > limits.maxNamesPerRequest) {
    return {
      code: 'RESOURCE_EXHAUSTED',
      reason: 'too_many_names',
      message: `${field} lists ${names.length} names for ${typeUrl}; the limit is ${limits.maxNamesPerRequest} per request (server option maxNamesPerRequest)`,
    };
  }
  for (let i = 0; i < names.length; i++) {
    const n = names[i] as string;
    if (n === '') return { code: 'INVALID_ARGUMENT', reason: 'malformed_name', message: `${field}[${i}] is empty; resource names must be non-empty (use "*" for a wildcard)` };
    if (n.length > limits.maxNameLength) {
      return { code: 'INVALID_ARGUMENT', reason: 'malformed_name', message: `${field}[${i}] is ${n.length} characters long; the limit is ${limits.maxNameLength}` };
    }
    if (CONTROL_CHARS.test(n)) {
      return { code: 'INVALID_ARGUMENT', reason: 'malformed_name', message: `${field}[${i}] ${JSON.stringify(n.slice(0, 80))} contains control characters` };
    }
  }
  return null;
}

/** Checks that a type URL names a message type in the loaded protos. */
export function checkTypeUrl(typeUrl: string): RequestProblem | null {
  if (protoRegistry().typeForUrl(typeUrl)) return null;
  return {
    code: 'INVALID_ARGUMENT',
    reason: 'unknown_type_url',
    message: `unknown type_url ${JSON.stringify(typeUrl)}: not a message type of the Envoy v3 API (expected e.g. "type.googleapis.com/envoy.config.cluster.v3.Cluster")`,
  };
}
