// Raw Envoy resources operators load beside the model (proto3 JSON with "@type"): strict decoding
// against the Envoy protos, and the resource name xDS serves them under.
import { encodeTypedJson, ProtoJsonError } from '../proto/json.js';
import { protoRegistry } from '../proto/registry.js';
import type { Problem } from './schema-errors.js';
import type { NodeSelector, RawResource } from './schema.js';

/** Our key beside "@type"; it is not part of the Envoy message and is removed before decoding. */
export const NODE_SELECTOR_KEY = '@nodeSelector';

export interface DecodedRawResource {
  typeUrl: string;
  name: string;
  /** Wire encoding of the message (not wrapped in Any). */
  bytes: Uint8Array;
  /** The proto3 JSON without our keys, with "@type". */
  json: Record<string, unknown>;
  nodeSelector?: NodeSelector;
}

/** The field that names a resource in xDS: cluster_name for CLAs, name for everything else. */
function nameField(typeName: string): string | undefined {
  if (typeName === 'envoy.config.endpoint.v3.ClusterLoadAssignment') return 'cluster_name';
  const t = protoRegistry().type(typeName);
  return t.fields['name'] && t.fields['name'].type === 'string' ? 'name' : undefined;
}

function camel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** Decodes one raw resource strictly; problems carry paths under `path`. */
export function decodeRawResource(raw: RawResource, path: string): { resource: DecodedRawResource } | { problems: Problem[] } {
  const json: Record<string, unknown> = { ...raw };
  delete json[NODE_SELECTOR_KEY];
  let encoded: ReturnType<typeof encodeTypedJson>;
  try {
    encoded = encodeTypedJson(json, path);
  } catch (err) {
    if (err instanceof ProtoJsonError) return { problems: err.problems };
    throw err;
  }
  const field = nameField(encoded.typeName);
  if (!field) return { problems: [{ path: `${path}["@type"]`, message: `${encoded.typeName} has no name field, so xDS cannot serve it as a resource` }] };
  const name = json[field] ?? json[camel(field)];
  if (typeof name !== 'string' || name === '') {
    return { problems: [{ path: `${path}.${field}`, message: `a ${encoded.typeName} resource needs a non-empty "${field}": xDS serves resources by name` }] };
  }
  const resource: DecodedRawResource = { typeUrl: encoded.typeUrl, name, bytes: encoded.bytes, json };
  if (raw[NODE_SELECTOR_KEY]) resource.nodeSelector = raw[NODE_SELECTOR_KEY];
  return { resource };
}
