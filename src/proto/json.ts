// Strict proto3 JSON <-> protobuf conversion against the registry's types. Unlike protobufjs's
// lenient fromObject, every unknown field, wrong type, unknown enum value, unknown Any type and
// doubly-set oneof is reported with its JSON path, so bad input is refused instead of dropped.
// Reference: https://protobuf.dev/programming-guides/json/ (field names, WKT encodings).
import protobuf from 'protobufjs';
import { protoRegistry, typeUrlFor, type ProtoRegistry } from './registry.js';

export interface ProtoProblem {
  /** JSON path of the offending value, e.g. `$.filter_chains[0].filters[0].typed_config.cluster`. */
  path: string;
  message: string;
}

export class ProtoJsonError extends Error {
  constructor(
    readonly typeName: string,
    readonly problems: ProtoProblem[],
  ) {
    super(
      `invalid ${typeName}: ` +
        problems
          .slice(0, 5)
          .map((p) => `${p.path}: ${p.message}`)
          .join('; ') +
        (problems.length > 5 ? ` (and ${problems.length - 5} more)` : ''),
    );
    this.name = 'ProtoJsonError';
  }
}

type Plain = Record<string, unknown>;

const INT32_TYPES = new Set(['int32', 'sint32', 'sfixed32']);
const UINT32_TYPES = new Set(['uint32', 'fixed32']);
const INT64_TYPES = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);
const WRAPPERS: Record<string, string> = {
  'google.protobuf.DoubleValue': 'double',
  'google.protobuf.FloatValue': 'float',
  'google.protobuf.Int64Value': 'int64',
  'google.protobuf.UInt64Value': 'uint64',
  'google.protobuf.Int32Value': 'int32',
  'google.protobuf.UInt32Value': 'uint32',
  'google.protobuf.BoolValue': 'bool',
  'google.protobuf.StringValue': 'string',
  'google.protobuf.BytesValue': 'bytes',
};
const MAX_DEPTH = 64;
const SPECIAL_JSON_WKT = new Set([
  ...Object.keys(WRAPPERS),
  'google.protobuf.Duration',
  'google.protobuf.Timestamp',
  'google.protobuf.Struct',
  'google.protobuf.Value',
  'google.protobuf.ListValue',
  'google.protobuf.FieldMask',
]);

function fullName(t: protobuf.ReflectionObject): string {
  return t.fullName.replace(/^\./, '');
}

/** The proto3 JSON name of a field: json_name if set, else lowerCamelCase of the proto name. */
export function jsonNameOf(field: protobuf.Field): string {
  const explicit = (field.options as Record<string, unknown> | undefined)?.['json_name'];
  if (typeof explicit === 'string') return explicit;
  return field.name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function fieldLookup(type: protobuf.Type): Map<string, protobuf.Field> {
  const cache = fieldLookupCache.get(type);
  if (cache) return cache;
  const m = new Map<string, protobuf.Field>();
  for (const f of type.fieldsArray) {
    m.set(f.name, f);
    m.set(jsonNameOf(f), f);
  }
  fieldLookupCache.set(type, m);
  return m;
}
const fieldLookupCache = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  return `${typeof v} ${String(v)}`;
}

class Decoder {
  readonly problems: ProtoProblem[] = [];
  constructor(private readonly reg: ProtoRegistry) {}

  private bad(path: string, message: string): undefined {
    this.problems.push({ path, message });
    return undefined;
  }

  /** JSON value of message type -> protobufjs plain object (keepCase names), or undefined on error. */
  message(type: protobuf.Type, json: unknown, path: string, depth: number): Plain | undefined {
    if (depth > MAX_DEPTH) return this.bad(path, `nesting deeper than ${MAX_DEPTH} levels`);
    const name = fullName(type);
    const wkt = this.wellKnown(name, json, path, depth);
    if (wkt !== NOT_WKT) return wkt;
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      return this.bad(path, `expected an object for ${name}, got ${describe(json)}`);
    }
    const fields = fieldLookup(type);
    const out: Plain = {};
    const oneofSeen = new Map<string, string>();
    for (const [key, value] of Object.entries(json as Plain)) {
      const fpath = `${path}.${key}`;
      const field = fields.get(key);
      if (!field) {
        this.bad(fpath, `unknown field "${key}" in ${name}`);
        continue;
      }
      if (value === undefined) continue;
      if (value === null && !(field.resolvedType && fullName(field.resolvedType) === 'google.protobuf.Value')) continue;
      if (out[field.name] !== undefined) {
        this.bad(fpath, `field "${field.name}" given twice (as proto name and JSON name)`);
        continue;
      }
      if (field.partOf) {
        const other = oneofSeen.get(field.partOf.name);
        if (other) {
          this.bad(fpath, `"${field.name}" and "${other}" are both set, but they are alternatives (oneof ${field.partOf.name})`);
          continue;
        }
        oneofSeen.set(field.partOf.name, field.name);
      }
      const v = this.fieldValue(field, value, fpath, depth);
      if (v !== undefined) out[field.name] = v;
    }
    return out;
  }

  private fieldValue(field: protobuf.Field, value: unknown, path: string, depth: number): unknown {
    if (field.map) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return this.bad(path, `expected an object (map), got ${describe(value)}`);
      const out: Plain = {};
      for (const [k, v] of Object.entries(value as Plain)) {
        const keyOk = this.mapKey((field as unknown as protobuf.MapField).keyType, k, `${path}.${k}`);
        if (!keyOk) continue;
        const conv = this.single(field, v, `${path}.${k}`, depth);
        if (conv !== undefined) out[k] = conv;
      }
      return out;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) return this.bad(path, `expected an array, got ${describe(value)}`);
      const out: unknown[] = [];
      value.forEach((v, i) => {
        const conv = this.single(field, v, `${path}[${i}]`, depth);
        if (conv !== undefined) out.push(conv);
      });
      return out;
    }
    return this.single(field, value, path, depth);
  }

  private mapKey(keyType: string, k: string, path: string): boolean {
    if (keyType === 'string') return true;
    if (keyType === 'bool') return k === 'true' || k === 'false' ? true : (this.bad(path, 'map key must be "true" or "false"'), false);
    if (!/^-?\d+$/.test(k)) return (this.bad(path, `map key must be an integer, got "${k}"`), false);
    return true;
  }

  private single(field: protobuf.Field, value: unknown, path: string, depth: number): unknown {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) return this.message(rt, value, path, depth + 1);
    if (rt instanceof protobuf.Enum) return this.enumValue(rt, value, path);
    return this.scalar(field.type, value, path);
  }

  private enumValue(e: protobuf.Enum, value: unknown, path: string): number | undefined {
    if (typeof value === 'string') {
      const n = e.values[value];
      if (n === undefined) return this.bad(path, `unknown value "${value}" for enum ${fullName(e)} (expected one of: ${Object.keys(e.values).slice(0, 12).join(', ')})`);
      return n;
    }
    if (typeof value === 'number' && Number.isInteger(value)) return value;
    return this.bad(path, `expected an enum name for ${fullName(e)}, got ${describe(value)}`);
  }

  scalar(type: string, value: unknown, path: string): unknown {
    switch (type) {
      case 'string':
        return typeof value === 'string' ? value : this.bad(path, `expected a string, got ${describe(value)}`);
      case 'bool':
        return typeof value === 'boolean' ? value : this.bad(path, `expected true or false, got ${describe(value)}`);
      case 'bytes': {
        if (typeof value !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) return this.bad(path, `expected base64 bytes, got ${describe(value)}`);
        return Buffer.from(value, value.includes('-') || value.includes('_') ? 'base64url' : 'base64');
      }
      case 'double':
      case 'float': {
        if (typeof value === 'number') return value;
        if (value === 'NaN') return NaN;
        if (value === 'Infinity') return Infinity;
        if (value === '-Infinity') return -Infinity;
        if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
        return this.bad(path, `expected a number, got ${describe(value)}`);
      }
    }
    const isInt = INT32_TYPES.has(type) || UINT32_TYPES.has(type) || INT64_TYPES.has(type);
    if (!isInt) return this.bad(path, `unsupported field type ${type}`);
    let n: number;
    if (typeof value === 'number') n = value;
    else if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) n = Number(value.trim());
    else return this.bad(path, `expected an integer, got ${describe(value)}`);
    if (!Number.isInteger(n)) return this.bad(path, `expected an integer, got ${n}`);
    const unsigned = UINT32_TYPES.has(type) || type === 'uint64' || type === 'fixed64';
    if (unsigned && n < 0) return this.bad(path, `expected a non-negative integer, got ${n}`);
    if (INT32_TYPES.has(type) && (n < -2147483648 || n > 2147483647)) return this.bad(path, `${n} is out of range for ${type}`);
    if (UINT32_TYPES.has(type) && n > 4294967295) return this.bad(path, `${n} is out of range for ${type}`);
    if (INT64_TYPES.has(type) && typeof value === 'string') return value.trim();
    return n;
  }

  /** Well-known types with special JSON forms. Returns NOT_WKT for ordinary messages. */
  private wellKnown(name: string, json: unknown, path: string, depth: number): Plain | undefined | typeof NOT_WKT {
    const wrapped = WRAPPERS[name];
    if (wrapped) {
      const v = this.scalar(wrapped, json, path);
      return v === undefined ? undefined : { value: v };
    }
    switch (name) {
      case 'google.protobuf.Any':
        return this.any(json, path, depth);
      case 'google.protobuf.Duration':
        return this.duration(json, path);
      case 'google.protobuf.Timestamp':
        return this.timestamp(json, path);
      case 'google.protobuf.Struct':
        if (typeof json !== 'object' || json === null || Array.isArray(json)) return this.bad(path, `expected an object, got ${describe(json)}`);
        return structOf(json as Plain);
      case 'google.protobuf.Value':
        return valueOf(json);
      case 'google.protobuf.ListValue':
        if (!Array.isArray(json)) return this.bad(path, `expected an array, got ${describe(json)}`);
        return { values: json.map(valueOf) };
      case 'google.protobuf.FieldMask':
        if (typeof json !== 'string') return this.bad(path, `expected a comma-separated field mask string, got ${describe(json)}`);
        return { paths: json === '' ? [] : json.split(',').map((p) => p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)) };
      case 'google.protobuf.Empty':
        if (typeof json !== 'object' || json === null || Array.isArray(json) || Object.keys(json).length > 0) return this.bad(path, 'expected {}');
        return {};
      default:
        return NOT_WKT;
    }
  }

  private any(json: unknown, path: string, depth: number): Plain | undefined {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) return this.bad(path, `expected an object with "@type", got ${describe(json)}`);
    const obj = json as Plain;
    const url = obj['@type'];
    if (typeof url !== 'string' || url === '') return this.bad(`${path}["@type"]`, 'missing "@type" (every Any needs a type URL like "type.googleapis.com/envoy.config.listener.v3.Listener")');
    const inner = this.reg.typeForUrl(url);
    if (!inner) return this.bad(`${path}["@type"]`, `unknown type "${url}"`);
    const rest: Plain = { ...obj };
    delete rest['@type'];
    // WKTs with a special JSON form sit under "value" inside an Any (proto3 JSON spec, "Any").
    const isWkt = SPECIAL_JSON_WKT.has(fullName(inner));
    if (isWkt && Object.keys(rest).some((k) => k !== 'value')) return this.bad(path, `an Any of ${fullName(inner)} takes only "@type" and "value"`);
    const body = isWkt ? rest['value'] : rest;
    const before = this.problems.length;
    const plain = this.message(inner, body, isWkt ? `${path}.value` : path, depth + 1);
    if (plain === undefined || this.problems.length > before) return undefined;
    const bytes = inner.encode(inner.fromObject(plain)).finish();
    return { type_url: url, value: bytes };
  }

  private duration(json: unknown, path: string): Plain | undefined {
    const m = typeof json === 'string' ? /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(json) : null;
    if (!m) return this.bad(path, `expected a duration like "1.5s", got ${describe(json)}`);
    const sign = m[1] ? -1 : 1;
    const seconds = Number(m[2]);
    if (seconds > 315576000000) return this.bad(path, 'duration out of range');
    const nanos = Number((m[3] ?? '').padEnd(9, '0'));
    return { seconds: sign * seconds, nanos: sign * nanos };
  }

  private timestamp(json: unknown, path: string): Plain | undefined {
    const m = typeof json === 'string' ? /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(json) : null;
    const ms = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
    if (!m || Number.isNaN(ms)) return this.bad(path, `expected an RFC 3339 timestamp like "2024-01-02T03:04:05Z", got ${describe(json)}`);
    return { seconds: Math.floor(ms / 1000), nanos: Number((m[2] ?? '').padEnd(9, '0')) };
  }
}

const NOT_WKT = Symbol('not-wkt');

// protobufjs bundles struct.proto with camelCase field names, so Value uses them here.
function valueOf(v: unknown): Plain {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(valueOf) } };
  return { structValue: structOf(v as Plain) };
}

function structOf(o: Plain): Plain {
  const fields: Plain = {};
  for (const [k, v] of Object.entries(o)) fields[k] = valueOf(v);
  return { fields };
}

/**
 * Decodes proto3 JSON strictly into a protobufjs message of `typeName`.
 * Throws ProtoJsonError listing every problem with its path.
 */
export function fromJson(typeName: string, json: unknown, rootPath = '$'): protobuf.Message {
  const reg = protoRegistry();
  const type = reg.type(typeName);
  const dec = new Decoder(reg);
  const plain = dec.message(type, json, rootPath, 0);
  if (dec.problems.length > 0 || plain === undefined) throw new ProtoJsonError(typeName, dec.problems);
  return type.fromObject(plain);
}

/** Strictly decodes proto3 JSON and returns its wire encoding. */
export function encodeJson(typeName: string, json: unknown, rootPath = '$'): Uint8Array {
  const msg = fromJson(typeName, json, rootPath);
  return protoRegistry().type(typeName).encode(msg).finish();
}

/**
 * Decodes a JSON object that names its own type with "@type" (as an Any does) and returns the
 * type URL and the encoded message. Used for raw resources given by operators.
 */
export function encodeTypedJson(json: unknown, rootPath = '$'): { typeUrl: string; typeName: string; bytes: Uint8Array } {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ProtoJsonError('resource', [{ path: rootPath, message: `expected an object with "@type", got ${describe(json)}` }]);
  }
  const url = (json as Plain)['@type'];
  const reg = protoRegistry();
  const type = typeof url === 'string' ? reg.typeForUrl(url) : undefined;
  if (typeof url !== 'string' || !type) {
    const msg = typeof url === 'string' ? `unknown type "${url}"` : 'missing "@type" (e.g. "type.googleapis.com/envoy.config.cluster.v3.Cluster")';
    throw new ProtoJsonError('resource', [{ path: `${rootPath}["@type"]`, message: msg }]);
  }
  const rest: Plain = { ...(json as Plain) };
  delete rest['@type'];
  const typeName = fullName(type);
  return { typeUrl: url, typeName, bytes: encodeJson(typeName, rest, rootPath) };
}

// ---------------------------------------------------------------------------------------------
// protobuf -> JSON (proto field names, as Envoy's YAML and config dumps use them)

function durationJson(seconds: number, nanos: number): string {
  const neg = seconds < 0 || nanos < 0;
  const s = Math.abs(seconds);
  const n = Math.abs(nanos);
  const frac = n === 0 ? '' : '.' + String(n).padStart(9, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${s}${frac}s`;
}

function plainValue(v: Plain): unknown {
  if ('structValue' in v) return plainStruct(v['structValue'] as Plain);
  if ('listValue' in v) return (((v['listValue'] as Plain)['values'] as Plain[] | undefined) ?? []).map(plainValue);
  if ('numberValue' in v) return v['numberValue'];
  if ('stringValue' in v) return v['stringValue'];
  if ('boolValue' in v) return v['boolValue'];
  return null;
}

function plainStruct(s: Plain): Plain {
  const out: Plain = {};
  for (const [k, v] of Object.entries((s['fields'] as Plain | undefined) ?? {})) out[k] = plainValue(v as Plain);
  return out;
}

function toJsonValue(type: protobuf.Type, obj: Plain, reg: ProtoRegistry): unknown {
  const name = fullName(type);
  if (WRAPPERS[name]) return obj['value'] ?? (WRAPPERS[name] === 'bool' ? false : WRAPPERS[name] === 'string' || WRAPPERS[name] === 'bytes' ? '' : 0);
  switch (name) {
    case 'google.protobuf.Duration':
      return durationJson(Number(obj['seconds'] ?? 0), Number(obj['nanos'] ?? 0));
    case 'google.protobuf.Timestamp': {
      const ms = Number(obj['seconds'] ?? 0) * 1000;
      const nanos = Number(obj['nanos'] ?? 0);
      const base = new Date(ms).toISOString().replace(/\.\d{3}Z$/, '');
      return `${base}${nanos ? '.' + String(nanos).padStart(9, '0').replace(/0+$/, '') : ''}Z`;
    }
    case 'google.protobuf.Struct':
      return plainStruct(obj);
    case 'google.protobuf.Value':
      return plainValue(obj);
    case 'google.protobuf.ListValue':
      return ((obj['values'] as Plain[] | undefined) ?? []).map(plainValue);
    case 'google.protobuf.FieldMask':
      return ((obj['paths'] as string[] | undefined) ?? []).join(',');
    case 'google.protobuf.Any': {
      const url = String(obj['type_url'] ?? '');
      const inner = reg.typeForUrl(url);
      const bytes = Buffer.from(String(obj['value'] ?? ''), 'base64');
      if (!inner) return { '@type': url, value: bytes.toString('base64') };
      const innerJson = messageToJson(inner, inner.decode(bytes), reg);
      if (SPECIAL_JSON_WKT.has(fullName(inner))) return { '@type': url, value: innerJson };
      return { '@type': url, ...(innerJson as Plain) };
    }
  }
  const out: Plain = {};
  for (const field of type.fieldsArray) {
    const v = obj[field.name];
    if (v === undefined) continue;
    const rt = field.resolvedType;
    if (!(rt instanceof protobuf.Type)) {
      out[field.name] = v;
      continue;
    }
    if (field.map) {
      const m: Plain = {};
      for (const [k, mv] of Object.entries(v as Plain)) m[k] = toJsonValue(rt, mv as Plain, reg);
      out[field.name] = m;
    } else if (field.repeated) out[field.name] = (v as Plain[]).map((e) => toJsonValue(rt, e, reg));
    else out[field.name] = toJsonValue(rt, v as Plain, reg);
  }
  return out;
}

function messageToJson(type: protobuf.Type, msg: protobuf.Message, reg: ProtoRegistry): unknown {
  const obj = type.toObject(msg, { longs: String, enums: String, bytes: String, defaults: false, oneofs: false });
  return toJsonValue(type, obj as Plain, reg);
}

/** Decodes wire bytes of `typeName` into JSON with proto field names and Any expanded. */
export function decodeToJson(typeName: string, bytes: Uint8Array): unknown {
  const reg = protoRegistry();
  const type = reg.type(typeName);
  return messageToJson(type, type.decode(bytes), reg);
}

/** Like decodeToJson, for a type URL; the result carries "@type" as a resource dump would. */
export function decodeAnyToJson(typeUrl: string, bytes: Uint8Array): Plain {
  return toJsonValue(protoRegistry().type('google.protobuf.Any'), { type_url: typeUrl, value: Buffer.from(bytes).toString('base64') }, protoRegistry()) as Plain;
}

export { typeUrlFor };
