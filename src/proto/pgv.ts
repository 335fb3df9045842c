// Evaluates the protoc-gen-validate rules written in Envoy's protos — `(validate.rules)` on fields,
// `(validate.required)` on oneofs, `(validate.disabled)` on messages — on a message in canonical
// proto3 JSON (as decodeToJson returns it). Envoy runs these checks on its bootstrap and on every
// xDS resource it accepts, so a resource that passes the strict proto decode can still be NACKed,
// e.g. `connect_timeout: 0s` breaks `duration.gt {}`. The API refuses such resources up front.
// Rule semantics: protoc-gen-validate README, "Constraint Rules" (github.com/bufbuild/protoc-gen-validate).
// Every rule of validate.proto is implemented, plus `ignore_empty`, which Envoy's protos use from
// newer PGV releases; a rule this module does not know throws PgvUnsupportedRuleError (a gap in
// this module, never the user's fault), and test/unit/proto-pgv.test.ts checks that no loaded
// proto uses one.
import { isIP } from 'node:net';
import protobuf from 'protobufjs';
import { decodeToJson, type ProtoProblem } from './json.js';
import { protoRegistry } from './registry.js';

type Rules = Record<string, unknown>;
type Obj = Record<string, unknown>;

/** A rule kind or key this module does not evaluate: a programming gap, reported loudly. */
export class PgvUnsupportedRuleError extends Error {
  constructor(rule: string, path: string) {
    super(`protoc-gen-validate rule ${rule} (at ${path}) is not implemented by src/proto/pgv.ts; add it there`);
    this.name = 'PgvUnsupportedRuleError';
  }
}

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
/** Well-known types whose JSON form is not an object of their fields; they carry no rules inside. */
const OPAQUE = new Set(['google.protobuf.Struct', 'google.protobuf.Value', 'google.protobuf.ListValue', 'google.protobuf.FieldMask', 'google.protobuf.Empty']);
const FLOATS = new Set(['double', 'float']);
const INTEGERS = new Set(['int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64']);

/** Keys each rule kind may carry (validate.proto), plus `ignore_empty` from newer PGV. */
const KNOWN_KEYS: Record<string, ReadonlySet<string>> = {
  number: new Set(['const', 'lt', 'lte', 'gt', 'gte', 'in', 'not_in', 'ignore_empty']),
  bool: new Set(['const']),
  string: new Set([
    'const', 'len', 'min_len', 'max_len', 'len_bytes', 'min_bytes', 'max_bytes', 'pattern', 'prefix', 'suffix', 'contains', 'not_contains', 'in', 'not_in',
    'email', 'hostname', 'ip', 'ipv4', 'ipv6', 'uri', 'uri_ref', 'address', 'uuid', 'well_known_regex', 'strict', 'ignore_empty',
  ]),
  bytes: new Set(['const', 'len', 'min_len', 'max_len', 'pattern', 'prefix', 'suffix', 'contains', 'in', 'not_in', 'ip', 'ipv4', 'ipv6', 'ignore_empty']),
  enum: new Set(['const', 'defined_only', 'in', 'not_in']),
  message: new Set(['skip', 'required']),
  repeated: new Set(['min_items', 'max_items', 'unique', 'items', 'ignore_empty']),
  map: new Set(['min_pairs', 'max_pairs', 'no_sparse', 'keys', 'values', 'ignore_empty']),
  any: new Set(['required', 'in', 'not_in']),
  duration: new Set(['required', 'const', 'lt', 'lte', 'gt', 'gte', 'in', 'not_in']),
  timestamp: new Set(['required', 'const', 'lt', 'lte', 'gt', 'gte', 'lt_now', 'gt_now', 'within']),
};
const KIND_KEYS = (kind: string): ReadonlySet<string> | undefined => KNOWN_KEYS[FLOATS.has(kind) || INTEGERS.has(kind) ? 'number' : kind];

// RFC 7230 token, optionally with a leading ':' (HTTP/2 pseudo-headers), as PGV defines them.
const HEADER_NAME = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
const HEADER_VALUE = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
const HEADER_LOOSE = /^[^\u0000\u000A\u000D]*$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const HOST_LABEL = /^[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$/;

const rulesCache = new WeakMap<protobuf.ReflectionObject, Rules | null>();
const patternCache = new Map<string, RegExp>();

/** The merged `(validate.rules)` of a field; protobufjs keeps each option occurrence apart. */
function optionRules(obj: protobuf.ReflectionObject): Rules | undefined {
  const cached = rulesCache.get(obj);
  if (cached !== undefined) return cached ?? undefined;
  const parsed = (obj as unknown as { parsedOptions?: Array<Record<string, unknown>> }).parsedOptions ?? [];
  let merged: Rules | null = null;
  for (const o of parsed) {
    const r = o['(validate.rules)'] as Rules | undefined;
    if (!r) continue;
    merged ??= {};
    for (const [k, v] of Object.entries(r)) merged[k] = v && typeof v === 'object' && !Array.isArray(v) ? { ...((merged[k] as object) ?? {}), ...(v as object) } : v;
  }
  rulesCache.set(obj, merged);
  return merged ?? undefined;
}

function sub(rules: Rules | undefined, kind: string): Rules | undefined {
  const r = rules?.[kind];
  return r && typeof r === 'object' ? (r as Rules) : undefined;
}

function oneofRequired(o: protobuf.OneOf): boolean {
  return (o.options as Record<string, unknown> | undefined)?.['(validate.required)'] === true;
}

function messageDisabled(t: protobuf.Type): boolean {
  const opts = t.options as Record<string, unknown> | undefined;
  return opts?.['(validate.disabled)'] === true || opts?.['(validate.ignored)'] === true;
}

function list(r: unknown): unknown[] {
  return Array.isArray(r) ? r : [r];
}

/** A duration or timestamp bound as nanoseconds; accepts proto3 JSON strings and {seconds, nanos}. */
function durationNanos(v: unknown): bigint {
  if (typeof v === 'string') {
    const m = /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(v);
    if (!m) throw new Error(`not a proto3 JSON duration: ${v}`);
    const ns = BigInt(m[2] as string) * 1_000_000_000n + BigInt((m[3] ?? '').padEnd(9, '0') || '0');
    return m[1] ? -ns : ns;
  }
  const d = (v ?? {}) as { seconds?: number | string; nanos?: number };
  return BigInt(d.seconds ?? 0) * 1_000_000_000n + BigInt(d.nanos ?? 0);
}

function timestampNanos(v: unknown): bigint {
  if (typeof v === 'string') {
    const m = /^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(v);
    const ms = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
    if (!m || Number.isNaN(ms)) throw new Error(`not a proto3 JSON timestamp: ${v}`);
    return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0') || '0');
  }
  return durationNanos(v);
}

function showDuration(ns: bigint): string {
  const neg = ns < 0n;
  const a = neg ? -ns : ns;
  const frac = a % 1_000_000_000n;
  return `${neg ? '-' : ''}${a / 1_000_000_000n}${frac === 0n ? '' : `.${String(frac).padStart(9, '0').replace(/0+$/, '')}`}s`;
}

function isHostname(s: string): boolean {
  const h = s.endsWith('.') ? s.slice(0, -1) : s;
  if (h.length === 0 || h.length > 253) return false;
  return h.split('.').every((l) => l.length <= 63 && HOST_LABEL.test(l));
}

function isEmail(s: string): boolean {
  const at = s.lastIndexOf('@');
  if (at <= 0 || at > 64) return false;
  const local = s.slice(0, at);
  return !/[\s<>()[\]\\,;:"]/.test(local) && isHostname(s.slice(at + 1));
}

function isUri(s: string, relativeOk: boolean): boolean {
  try {
    if (relativeOk) new URL(s, 'http://relative.invalid/');
    else if (!/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(s)) return false;
    else new URL(s);
    return true;
  } catch {
    return false;
  }
}

class Checker {
  readonly problems: ProtoProblem[] = [];
  /** Set when a rule compared with the clock (timestamp lt_now/gt_now/within): not memoizable. */
  usedClock = false;
  private readonly registry = protoRegistry();

  private fail(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  private known(kind: string, rules: Rules, path: string): void {
    const keys = KIND_KEYS(kind);
    if (!keys) throw new PgvUnsupportedRuleError(kind, path);
    for (const k of Object.keys(rules)) if (!keys.has(k)) throw new PgvUnsupportedRuleError(`${kind}.${k}`, path);
  }

  message(type: protobuf.Type, obj: Obj, path: string, depth: number): void {
    // Deeper than any real config; the strict decoder refuses such nesting anyway.
    if (depth > 100) return;
    const shape = typeShape(type);
    if (shape.disabled) return;
    for (const o of shape.requiredOneofs) {
      if (!o.fieldsArray.some((f) => obj[f.name] !== undefined)) this.fail(path, `one of ${o.fieldsArray.map((f) => f.name).join(', ')} is required`);
    }
    for (const { field, rules } of shape.fields) {
      const v = obj[field.name];
      // Unset fields without rules have nothing to check; a oneof member (or proto3 optional)
      // that is not set is not validated at all (PGV semantics).
      if (v === undefined && (!rules || field.partOf)) continue;
      const p = `${path}.${field.name}`;
      if (field.map) this.map(field, (v ?? {}) as Obj, rules, p, depth);
      else if (field.repeated) this.repeated(field, (v ?? []) as unknown[], rules, p, depth);
      else this.single(field, v, rules, p, false, depth);
    }
  }

  private map(field: protobuf.Field, entries: Obj, fieldRules: Rules | undefined, path: string, depth: number): void {
    const rules = sub(fieldRules, 'map');
    if (fieldRules) for (const kind of Object.keys(fieldRules)) if (kind !== 'map') throw new PgvUnsupportedRuleError(`${kind} on a map field`, path);
    const keys = Object.keys(entries);
    if (rules) {
      this.known('map', rules, path);
      if (!(rules['ignore_empty'] && keys.length === 0)) {
        if (rules['min_pairs'] !== undefined && keys.length < Number(rules['min_pairs'])) this.fail(path, `at least ${String(rules['min_pairs'])} entries required`);
        if (rules['max_pairs'] !== undefined && keys.length > Number(rules['max_pairs'])) this.fail(path, `at most ${String(rules['max_pairs'])} entries allowed`);
      }
    }
    const keyRules = sub(rules, 'keys');
    const keyType = (field as unknown as protobuf.MapField).keyType;
    for (const k of keys) {
      const p = `${path}[${JSON.stringify(k)}]`;
      if (keyRules) for (const [kind, r] of Object.entries(keyRules)) this.scalar(kind, kind === 'bool' ? k === 'true' : k, r as Rules, p, keyType);
      const value = entries[k];
      if (rules?.['no_sparse'] && (value === null || value === undefined)) this.fail(p, 'map values must not be unset');
      this.single(field, value, sub(rules, 'values'), p, true, depth);
    }
  }

  private repeated(field: protobuf.Field, items: unknown[], fieldRules: Rules | undefined, path: string, depth: number): void {
    const rules = sub(fieldRules, 'repeated');
    if (fieldRules) for (const kind of Object.keys(fieldRules)) if (kind !== 'repeated') throw new PgvUnsupportedRuleError(`${kind} on a repeated field`, path);
    if (rules) {
      this.known('repeated', rules, path);
      if (!(rules['ignore_empty'] && items.length === 0)) {
        if (rules['min_items'] !== undefined && items.length < Number(rules['min_items'])) this.fail(path, `at least ${String(rules['min_items'])} items required`);
        if (rules['max_items'] !== undefined && items.length > Number(rules['max_items'])) this.fail(path, `at most ${String(rules['max_items'])} items allowed`);
        if (rules['unique'] && new Set(items.map((i) => JSON.stringify(i))).size !== items.length) this.fail(path, 'items must be unique');
      }
    }
    const itemRules = sub(rules, 'items');
    items.forEach((v, i) => this.single(field, v, itemRules, `${path}[${i}]`, true, depth));
  }

  /** One value of a field (or one element of a repeated field or map): its rules, then its own fields. */
  private single(field: protobuf.Field, v: unknown, rules: Rules | undefined, path: string, isElement: boolean, depth: number): void {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) return this.messageValue(rt, v, rules, path, depth);
    if (rt instanceof protobuf.Enum) {
      const value = v ?? (isElement ? undefined : 0);
      for (const [kind, r] of Object.entries(rules ?? {})) {
        if (kind !== 'enum') throw new PgvUnsupportedRuleError(`${kind} on an enum field`, path);
        if (value !== undefined) this.enumValue(rt, value, r as Rules, path);
      }
      return;
    }
    const kind = field.type;
    const value = v ?? (isElement ? undefined : kind === 'string' || kind === 'bytes' ? '' : kind === 'bool' ? false : 0);
    for (const [k, r] of Object.entries(rules ?? {})) {
      if (k === 'message') continue; // meaningless on a scalar; PGV ignores it
      this.scalar(k, value, r as Rules, path, kind);
    }
  }

  private messageValue(rt: protobuf.Type, v: unknown, rules: Rules | undefined, path: string, depth: number): void {
    const name = rt.fullName.slice(1);
    const msgRules = sub(rules, 'message');
    if (msgRules) this.known('message', msgRules, path);
    if (msgRules?.['required'] && v === undefined) this.fail(path, 'value is required');
    const wrapped = WRAPPERS[name];
    if (wrapped) {
      for (const [kind, r] of Object.entries(rules ?? {})) if (kind !== 'message' && v !== undefined) this.scalar(kind, v, r as Rules, path, wrapped);
      return;
    }
    if (name === 'google.protobuf.Duration') return this.timeValue('duration', v, rules, path);
    if (name === 'google.protobuf.Timestamp') return this.timeValue('timestamp', v, rules, path);
    if (name === 'google.protobuf.Any') return this.anyValue(v, rules, path, depth);
    for (const kind of Object.keys(rules ?? {})) if (kind !== 'message') throw new PgvUnsupportedRuleError(`${kind} on a message field`, path);
    if (v === undefined || v === null || msgRules?.['skip'] || OPAQUE.has(name)) return;
    this.message(rt, v as Obj, path, depth + 1);
  }

  private anyValue(v: unknown, rules: Rules | undefined, path: string, depth: number): void {
    const anyRules = sub(rules, 'any');
    for (const kind of Object.keys(rules ?? {})) if (kind !== 'any' && kind !== 'message') throw new PgvUnsupportedRuleError(`${kind} on an Any field`, path);
    if (anyRules) {
      this.known('any', anyRules, path);
      if (anyRules['required'] && v === undefined) this.fail(path, 'value is required');
    }
    if (v === undefined || v === null) return;
    const { '@type': url, ...rest } = v as Obj;
    if (anyRules?.['in'] !== undefined && !list(anyRules['in']).includes(url)) this.fail(path, `type must be one of ${list(anyRules['in']).join(', ')}`);
    if (anyRules?.['not_in'] !== undefined && list(anyRules['not_in']).includes(url)) this.fail(path, `type ${String(url)} is not allowed`);
    const inner = typeof url === 'string' ? this.registry.typeForUrl(url) : undefined;
    if (!inner) {
      this.fail(path, `cannot check an Any of unknown type ${JSON.stringify(url)}`);
      return;
    }
    // Well-known types inside an Any carry their JSON form under "value" and have no rules inside.
    if (inner.fullName.slice(1).startsWith('google.protobuf.')) return;
    this.message(inner, rest, path, depth + 1);
  }

  private timeValue(kind: 'duration' | 'timestamp', v: unknown, rules: Rules | undefined, path: string): void {
    const r = sub(rules, kind);
    for (const k of Object.keys(rules ?? {})) if (k !== kind && k !== 'message') throw new PgvUnsupportedRuleError(`${k} on a ${kind} field`, path);
    if (!r) return;
    this.known(kind, r, path);
    if (r['required'] && v === undefined) this.fail(path, 'value is required');
    if (v === undefined || v === null) return;
    const read = kind === 'duration' ? durationNanos : timestampNanos;
    const show = kind === 'duration' ? showDuration : (ns: bigint) => new Date(Number(ns / 1_000_000n)).toISOString();
    const value = read(v);
    this.bounds(value, r, read, show, path);
    if (r['const'] !== undefined && value !== read(r['const'])) this.fail(path, `must be ${show(read(r['const']))}`);
    if (r['in'] !== undefined && !list(r['in']).some((x) => read(x) === value)) this.fail(path, `must be one of ${list(r['in']).map((x) => show(read(x))).join(', ')}`);
    if (r['not_in'] !== undefined && list(r['not_in']).some((x) => read(x) === value)) this.fail(path, `${show(value)} is not allowed`);
    if (kind === 'timestamp' && (r['lt_now'] || r['gt_now'] || r['within'] !== undefined)) {
      this.usedClock = true;
      const now = BigInt(Date.now()) * 1_000_000n;
      if (r['lt_now'] && !(value < now)) this.fail(path, 'must be in the past');
      if (r['gt_now'] && !(value > now)) this.fail(path, 'must be in the future');
      if (r['within'] !== undefined) {
        const w = durationNanos(r['within']);
        const d = value > now ? value - now : now - value;
        if (d > w) this.fail(path, `must be within ${showDuration(w)} of now`);
      }
    }
  }

  /**
   * gt/gte/lt/lte, including PGV's exclusive ranges: when the upper bound is below the lower one,
   * the value must lie outside [upper, lower] instead of between them.
   */
  private bounds<T extends number | bigint>(value: T, r: Rules, read: (x: unknown) => T, show: (x: T) => string, path: string): void {
    const lo = r['gt'] !== undefined ? { v: read(r['gt']), incl: false } : r['gte'] !== undefined ? { v: read(r['gte']), incl: true } : undefined;
    const hi = r['lt'] !== undefined ? { v: read(r['lt']), incl: false } : r['lte'] !== undefined ? { v: read(r['lte']), incl: true } : undefined;
    const above = (b: { v: T; incl: boolean }) => (b.incl ? value >= b.v : value > b.v);
    const below = (b: { v: T; incl: boolean }) => (b.incl ? value <= b.v : value < b.v);
    const loText = (b: { v: T; incl: boolean }) => (b.incl ? `must be at least ${show(b.v)}` : `must be greater than ${show(b.v)}`);
    const hiText = (b: { v: T; incl: boolean }) => (b.incl ? `must be at most ${show(b.v)}` : `must be less than ${show(b.v)}`);
    if (lo && hi && hi.v < lo.v) {
      if (!(above(lo) || below(hi))) this.fail(path, `${hiText(hi)} or ${loText(lo).replace(/^must be /, '')}`);
      return;
    }
    if (lo && !above(lo)) this.fail(path, loText(lo));
    if (hi && !below(hi)) this.fail(path, hiText(hi));
  }

  private enumValue(e: protobuf.Enum, v: unknown, rules: Rules, path: string): void {
    this.known('enum', rules, path);
    const num = typeof v === 'number' ? v : e.values[v as string];
    const show = String(v);
    if (rules['defined_only'] && (num === undefined || e.valuesById[num] === undefined)) this.fail(path, `${show} is not a defined ${e.name} value`);
    if (rules['const'] !== undefined && num !== Number(rules['const'])) this.fail(path, `must be ${e.valuesById[Number(rules['const'])] ?? String(rules['const'])}`);
    const named = (x: unknown) => e.valuesById[Number(x)] ?? String(x);
    if (rules['in'] !== undefined && !list(rules['in']).map(Number).includes(num as number)) this.fail(path, `must be one of ${list(rules['in']).map(named).join(', ')}`);
    if (rules['not_in'] !== undefined && list(rules['not_in']).map(Number).includes(num as number)) this.fail(path, `${show} is not allowed here`);
  }

  /** Rules of `kind` on a scalar (or wrapper, or map key) of proto type `actual`. */
  private scalar(kind: string, v: unknown, rules: Rules, path: string, actual: string): void {
    if (kind !== actual && !(FLOATS.has(kind) && FLOATS.has(actual))) {
      // PGV generates nothing for a rule of the wrong kind; a protoc run would refuse it. Treat it
      // as a gap rather than guess.
      throw new PgvUnsupportedRuleError(`${kind} on a ${actual} value`, path);
    }
    this.known(kind, rules, path);
    if (v === undefined || v === null) return;
    if (kind === 'string') return this.string(String(v), rules, path);
    if (kind === 'bytes') return this.bytes(Buffer.from(String(v), 'base64'), rules, path);
    if (kind === 'bool') {
      if (rules['const'] !== undefined && v !== rules['const']) this.fail(path, `must be ${String(rules['const'])}`);
      return;
    }
    if (FLOATS.has(kind)) return this.number(Number(v), rules, Number, path);
    // 64-bit integers arrive as strings and may exceed 2^53.
    return this.number(BigInt(v as string | number), rules, (x) => BigInt(x as string | number), path);
  }

  private number<T extends number | bigint>(n: T, rules: Rules, read: (x: unknown) => T, path: string): void {
    if (rules['ignore_empty'] && Number(n) === 0) return;
    this.bounds(n, rules, read, String, path);
    if (rules['const'] !== undefined && n !== read(rules['const'])) this.fail(path, `must be ${String(rules['const'])}`);
    if (rules['in'] !== undefined && !list(rules['in']).some((x) => read(x) === n)) this.fail(path, `must be one of ${list(rules['in']).join(', ')}`);
    if (rules['not_in'] !== undefined && list(rules['not_in']).some((x) => read(x) === n)) this.fail(path, `${String(n)} is not allowed`);
  }

  private bytes(b: Buffer, rules: Rules, path: string): void {
    if (rules['ignore_empty'] && b.length === 0) return;
    const bin = (x: unknown) => Buffer.from(String(x), 'base64');
    const n = b.length;
    if (rules['len'] !== undefined && n !== Number(rules['len'])) this.fail(path, `exactly ${String(rules['len'])} bytes required`);
    if (rules['min_len'] !== undefined && n < Number(rules['min_len'])) this.fail(path, `at least ${String(rules['min_len'])} bytes required`);
    if (rules['max_len'] !== undefined && n > Number(rules['max_len'])) this.fail(path, `at most ${String(rules['max_len'])} bytes allowed`);
    if (rules['const'] !== undefined && !b.equals(bin(rules['const']))) this.fail(path, 'must equal the required constant');
    if (rules['pattern'] !== undefined && !pattern(String(rules['pattern'])).test(b.toString('latin1'))) this.fail(path, `must match ${String(rules['pattern'])}`);
    if (rules['prefix'] !== undefined && !b.subarray(0, bin(rules['prefix']).length).equals(bin(rules['prefix']))) this.fail(path, 'must start with the required prefix');
    if (rules['suffix'] !== undefined && !b.subarray(Math.max(0, n - bin(rules['suffix']).length)).equals(bin(rules['suffix']))) this.fail(path, 'must end with the required suffix');
    if (rules['contains'] !== undefined && !b.includes(bin(rules['contains']))) this.fail(path, 'must contain the required bytes');
    if (rules['in'] !== undefined && !list(rules['in']).some((x) => b.equals(bin(x)))) this.fail(path, 'must be one of the allowed values');
    if (rules['not_in'] !== undefined && list(rules['not_in']).some((x) => b.equals(bin(x)))) this.fail(path, 'is not an allowed value');
    if (rules['ip'] && n !== 4 && n !== 16) this.fail(path, 'must be an IP address (4 or 16 bytes)');
    if (rules['ipv4'] && n !== 4) this.fail(path, 'must be an IPv4 address (4 bytes)');
    if (rules['ipv6'] && n !== 16) this.fail(path, 'must be an IPv6 address (16 bytes)');
  }

  private string(s: string, rules: Rules, path: string): void {
    if (rules['ignore_empty'] && s === '') return;
    const chars = [...s].length;
    const bytes = Buffer.byteLength(s);
    const r = (k: string) => rules[k];
    const has = (k: string) => rules[k] !== undefined;
    if (has('len') && chars !== Number(r('len'))) this.fail(path, `exactly ${String(r('len'))} characters required`);
    if (has('min_len') && chars < Number(r('min_len'))) this.fail(path, `at least ${String(r('min_len'))} characters required`);
    if (has('max_len') && chars > Number(r('max_len'))) this.fail(path, `at most ${String(r('max_len'))} characters allowed`);
    if (has('len_bytes') && bytes !== Number(r('len_bytes'))) this.fail(path, `exactly ${String(r('len_bytes'))} bytes required`);
    if (has('min_bytes') && bytes < Number(r('min_bytes'))) this.fail(path, `at least ${String(r('min_bytes'))} bytes required`);
    if (has('max_bytes') && bytes > Number(r('max_bytes'))) this.fail(path, `at most ${String(r('max_bytes'))} bytes allowed`);
    if (has('const') && s !== r('const')) this.fail(path, `must be ${JSON.stringify(r('const'))}`);
    if (has('in') && !list(r('in')).includes(s)) this.fail(path, `must be one of ${list(r('in')).map((x) => JSON.stringify(x)).join(', ')}`);
    if (has('not_in') && list(r('not_in')).includes(s)) this.fail(path, `${JSON.stringify(s)} is not allowed`);
    if (has('prefix') && !s.startsWith(String(r('prefix')))) this.fail(path, `must start with ${JSON.stringify(r('prefix'))}`);
    if (has('suffix') && !s.endsWith(String(r('suffix')))) this.fail(path, `must end with ${JSON.stringify(r('suffix'))}`);
    if (has('contains') && !s.includes(String(r('contains')))) this.fail(path, `must contain ${JSON.stringify(r('contains'))}`);
    if (has('not_contains') && s.includes(String(r('not_contains')))) this.fail(path, `must not contain ${JSON.stringify(r('not_contains'))}`);
    if (has('pattern') && !pattern(String(r('pattern'))).test(s)) this.fail(path, `must match ${String(r('pattern'))}`);
    if (r('email') && !isEmail(s)) this.fail(path, 'must be an email address');
    if (r('hostname') && !isHostname(s)) this.fail(path, 'must be a hostname');
    if (r('ip') && isIP(s) === 0) this.fail(path, 'must be an IP address');
    if (r('ipv4') && isIP(s) !== 4) this.fail(path, 'must be an IPv4 address');
    if (r('ipv6') && isIP(s) !== 6) this.fail(path, 'must be an IPv6 address');
    if (r('address') && isIP(s) === 0 && !isHostname(s)) this.fail(path, 'must be an IP address or a hostname');
    if (r('uri') && !isUri(s, false)) this.fail(path, 'must be an absolute URI');
    if (r('uri_ref') && !isUri(s, true)) this.fail(path, 'must be a URI reference');
    if (r('uuid') && !UUID.test(s)) this.fail(path, 'must be a UUID');
    if (has('well_known_regex')) {
      const which = r('well_known_regex');
      const known = which === 'HTTP_HEADER_NAME' || which === 1 ? 'HTTP_HEADER_NAME' : which === 'HTTP_HEADER_VALUE' || which === 2 ? 'HTTP_HEADER_VALUE' : undefined;
      if (!known) {
        if (which !== 'UNKNOWN' && which !== 0) throw new PgvUnsupportedRuleError(`string.well_known_regex=${String(which)}`, path);
      } else {
        const re = r('strict') === false ? HEADER_LOOSE : known === 'HTTP_HEADER_NAME' ? HEADER_NAME : HEADER_VALUE;
        if (!re.test(s)) this.fail(path, `must be a valid ${known}`);
      }
    }
  }
}

interface TypeShape {
  disabled: boolean;
  requiredOneofs: protobuf.OneOf[];
  fields: { field: protobuf.Field; rules: Rules | undefined }[];
}
const shapes = new WeakMap<protobuf.Type, TypeShape>();

/** What checking a message type needs, worked out once per type. */
function typeShape(type: protobuf.Type): TypeShape {
  let shape = shapes.get(type);
  if (!shape) {
    shape = {
      disabled: messageDisabled(type),
      requiredOneofs: type.oneofsArray.filter(oneofRequired),
      fields: type.fieldsArray.map((field) => {
        field.resolve();
        return { field, rules: optionRules(field) };
      }),
    };
    shapes.set(type, shape);
  }
  return shape;
}

/** PGV patterns are RE2; the ones Envoy uses are valid JavaScript regular expressions too. */
function pattern(source: string): RegExp {
  let re = patternCache.get(source);
  if (!re) {
    re = new RegExp(source, 'u');
    patternCache.set(source, re);
  }
  return re;
}

/**
 * Every PGV violation in `json` (canonical proto3 JSON of `typeName`, proto field names, as
 * decodeToJson returns it), each with its JSON path under `rootPath`. Empty when Envoy would
 * accept the message as far as these rules go.
 */
export function pgvProblems(typeName: string, json: Obj, rootPath = '$'): ProtoProblem[] {
  return pgvProblemsOf(protoRegistry().type(typeName), json, rootPath);
}

/** Like pgvProblems, for a resolved protobufjs type (Any payloads are looked up in the registry). */
export function pgvProblemsOf(type: protobuf.Type, json: Obj, rootPath = '$'): ProtoProblem[] {
  const checker = new Checker();
  checker.message(type, json, rootPath, 0);
  return checker.problems;
}

/** Results by message type and content; the API checks the same resources on every write. */
const memo = new Map<string, ProtoProblem[]>();
/** Bound on the remembered content (keys hold the bytes), oldest first out. */
const MEMO_CHARS = 32 * 1024 * 1024;
let memoChars = 0;

/**
 * Like pgvProblems, for the wire encoding of a `typeName` message. Results are remembered by
 * content (a bounded, least-recently-used table), so re-checking unchanged resources costs a table lookup.
 */
export function pgvProblemsInBytes(typeName: string, bytes: Uint8Array, rootPath = '$'): ProtoProblem[] {
  // The bytes themselves as the key: cheaper than hashing them first, and exact.
  const key = `${typeName}\n${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')}`;
  let found = memo.get(key);
  if (found) {
    memo.delete(key);
    memo.set(key, found);
  } else {
    const checker = new Checker();
    checker.message(protoRegistry().type(typeName), decodeToJson(typeName, bytes) as Obj, '$', 0);
    found = checker.problems;
    if (!checker.usedClock && key.length <= MEMO_CHARS / 4) {
      memo.set(key, found);
      memoChars += key.length;
      for (const old of memo.keys()) {
        if (memoChars <= MEMO_CHARS) break;
        memo.delete(old);
        memoChars -= old.length;
      }
    }
  }
  return found.map((p) => ({ path: rootPath + p.path.slice(1), message: p.message }));
}

/** Every (rule kind, key) pair used by the loaded protos that this module cannot evaluate. */
export function unsupportedPgvRules(): string[] {
  const out = new Set<string>();
  const visitRules = (kind: string, rules: Rules, where: string) => {
    if (kind === 'message') {
      for (const k of Object.keys(rules)) if (!KNOWN_KEYS['message']?.has(k)) out.add(`${where}: message.${k}`);
      return;
    }
    const keys = KIND_KEYS(kind);
    if (!keys) return void out.add(`${where}: ${kind}`);
    for (const [k, v] of Object.entries(rules)) {
      if (!keys.has(k)) out.add(`${where}: ${kind}.${k}`);
      else if ((kind === 'repeated' && k === 'items') || (kind === 'map' && (k === 'keys' || k === 'values'))) {
        for (const [ik, iv] of Object.entries(v as Rules)) visitRules(ik, iv as Rules, `${where} ${k}`);
      } else if (kind === 'string' && k === 'well_known_regex' && !['HTTP_HEADER_NAME', 'HTTP_HEADER_VALUE', 'UNKNOWN', 0, 1, 2].includes(v as string)) {
        out.add(`${where}: string.well_known_regex=${String(v)}`);
      }
    }
  };
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const o of ns.nestedArray) {
      if (o instanceof protobuf.Type) {
        for (const f of o.fieldsArray) {
          const rules = optionRules(f);
          for (const [kind, r] of Object.entries(rules ?? {})) visitRules(kind, (r ?? {}) as Rules, `${o.fullName.slice(1)}.${f.name}`);
        }
      }
      if (o instanceof protobuf.Namespace || o instanceof protobuf.Type) walk(o);
    }
  };
  walk(protoRegistry().root);
  return [...out].sort();
}
