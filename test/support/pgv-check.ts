// Checks an encoded Envoy message against the protoc-gen-validate rules written in the Envoy protos
// ((validate.rules) on fields, (validate.required) on oneofs), the same rules Envoy enforces when it
// accepts a resource. Covers the rule kinds Envoy's API uses on the paths we generate: string
// lengths, numeric bounds, enum defined_only, repeated item counts, required messages, durations
// and required oneofs; Any payloads are checked against their own type. Tests use it so "Envoy
// accepts the output" is checked without an Envoy binary.
import protobuf from 'protobufjs';
import { protoRegistry } from '../../src/proto/registry.js';

export interface PgvViolation {
  path: string;
  rule: string;
}

type Rules = Record<string, Record<string, unknown>>;

function fieldRules(f: protobuf.Field): Rules | undefined {
  const parsed = (f as unknown as { parsedOptions?: Record<string, unknown>[] }).parsedOptions;
  const entry = parsed?.find((o) => '(validate.rules)' in o);
  return entry ? (entry['(validate.rules)'] as Rules) : undefined;
}

function oneofRequired(o: protobuf.OneOf): boolean {
  return (o.options as Record<string, unknown> | undefined)?.['(validate.required)'] === true;
}

const WRAPPER_KIND: Record<string, string> = {
  'google.protobuf.UInt32Value': 'uint32',
  'google.protobuf.Int32Value': 'int32',
  'google.protobuf.UInt64Value': 'uint64',
  'google.protobuf.Int64Value': 'int64',
  'google.protobuf.DoubleValue': 'double',
  'google.protobuf.FloatValue': 'float',
  'google.protobuf.StringValue': 'string',
  'google.protobuf.BoolValue': 'bool',
};

function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Number(v);
  if (v && typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return Number(v);
}

function durationNs(d: unknown): number {
  if (!d || typeof d !== 'object') return 0;
  const o = d as { seconds?: unknown; nanos?: unknown };
  return num(o.seconds ?? 0) * 1e9 + num(o.nanos ?? 0);
}

function checkNumber(kind: string, value: number, rules: Record<string, unknown>, path: string, out: PgvViolation[]): void {
  const bound = (k: string) => (rules[k] === undefined ? undefined : num(rules[k]));
  const gt = bound('gt');
  const gte = bound('gte');
  const lt = bound('lt');
  const lte = bound('lte');
  if (gt !== undefined && !(value > gt)) out.push({ path, rule: `${kind}.gt ${gt} (got ${value})` });
  if (gte !== undefined && !(value >= gte)) out.push({ path, rule: `${kind}.gte ${gte} (got ${value})` });
  if (lt !== undefined && !(value < lt)) out.push({ path, rule: `${kind}.lt ${lt} (got ${value})` });
  if (lte !== undefined && !(value <= lte)) out.push({ path, rule: `${kind}.lte ${lte} (got ${value})` });
  if (rules['const'] !== undefined && value !== num(rules['const'])) out.push({ path, rule: `${kind}.const ${String(rules['const'])}` });
}

function checkScalar(f: protobuf.Field, value: unknown, rules: Rules, path: string, out: PgvViolation[]): void {
  for (const [kind, r] of Object.entries(rules)) {
    if (kind === 'string') {
      const s = String(value ?? '');
      const len = [...s].length;
      if (r['min_len'] !== undefined && len < num(r['min_len'])) out.push({ path, rule: `string.min_len ${String(r['min_len'])}` });
      if (r['max_len'] !== undefined && len > num(r['max_len'])) out.push({ path, rule: `string.max_len ${String(r['max_len'])}` });
      if (r['min_bytes'] !== undefined && Buffer.byteLength(s) < num(r['min_bytes'])) out.push({ path, rule: `string.min_bytes ${String(r['min_bytes'])}` });
      if (r['max_bytes'] !== undefined && Buffer.byteLength(s) > num(r['max_bytes'])) out.push({ path, rule: `string.max_bytes ${String(r['max_bytes'])}` });
    } else if (['uint32', 'int32', 'uint64', 'int64', 'double', 'float', 'sint32', 'fixed32'].includes(kind)) {
      checkNumber(kind, num(value ?? 0), r, path, out);
    } else if (kind === 'enum') {
      if (r['defined_only'] && f.resolvedType instanceof protobuf.Enum && !Object.values(f.resolvedType.values).includes(num(value ?? 0))) {
        out.push({ path, rule: `enum.defined_only (got ${String(value)})` });
      }
    }
  }
}

/** Violations of the PGV rules of `typeName` in `bytes`; empty when Envoy would accept it. */
export function pgvViolations(typeName: string, bytes: Uint8Array, path = '$'): PgvViolation[] {
  const type = protoRegistry().type(typeName);
  const out: PgvViolation[] = [];
  checkMessage(type, type.decode(bytes), path, out, 0);
  return out;
}

function isSet(msg: protobuf.Message, f: protobuf.Field): boolean {
  const v = (msg as unknown as Record<string, unknown>)[f.name];
  if (f.repeated) return Array.isArray(v) && v.length > 0;
  if (f.map) return !!v && Object.keys(v as object).length > 0;
  return v !== undefined && v !== null && Object.prototype.hasOwnProperty.call(msg, f.name);
}

function checkMessage(type: protobuf.Type, msg: protobuf.Message, path: string, out: PgvViolation[], depth: number): void {
  if (depth > 64) return;
  const obj = msg as unknown as Record<string, unknown>;
  if (type.fullName === '.google.protobuf.Any') {
    const inner = protoRegistry().typeForUrl(String(obj['type_url']));
    if (inner) checkMessage(inner, inner.decode(obj['value'] as Uint8Array), path, out, depth + 1);
    return;
  }
  for (const o of type.oneofsArray) {
    if (oneofRequired(o) && !o.fieldsArray.some((f) => isSet(msg, f))) out.push({ path, rule: `oneof ${o.name} is required` });
  }
  for (const f of type.fieldsArray) {
    const fpath = `${path}.${f.name}`;
    const rules = fieldRules(f);
    const value = obj[f.name];
    const set = isSet(msg, f);
    if (rules) {
      const rep = rules['repeated'];
      if (rep && f.repeated) {
        const n = Array.isArray(value) ? value.length : 0;
        if (rep['min_items'] !== undefined && n < num(rep['min_items'])) out.push({ path: fpath, rule: `repeated.min_items ${String(rep['min_items'])}` });
        if (rep['max_items'] !== undefined && n > num(rep['max_items'])) out.push({ path: fpath, rule: `repeated.max_items ${String(rep['max_items'])}` });
      }
      if (rules['message']?.['required'] && !set) out.push({ path: fpath, rule: 'message.required' });
      const dur = rules['duration'];
      if (dur) {
        if (dur['required'] && !set) out.push({ path: fpath, rule: 'duration.required' });
        if (set) {
          const ns = durationNs(value);
          if (dur['gt'] !== undefined && !(ns > durationNs(dur['gt']))) out.push({ path: fpath, rule: 'duration.gt' });
          if (dur['gte'] !== undefined && !(ns >= durationNs(dur['gte']))) out.push({ path: fpath, rule: 'duration.gte' });
        }
      }
      const rt = f.resolvedType;
      if (!f.repeated && !f.map) {
        if (rt instanceof protobuf.Type && WRAPPER_KIND[rt.fullName.slice(1)]) {
          if (set) checkScalar(f, (value as { value?: unknown }).value, rules, fpath, out);
        } else if (!(rt instanceof protobuf.Type)) {
          // proto3 scalars are checked even when left at their default, as PGV does.
          checkScalar(f, value, rules, fpath, out);
        }
      }
    }
    if (!set || !(f.resolvedType instanceof protobuf.Type)) continue;
    const sub = f.resolvedType;
    if (f.map) for (const [k, v] of Object.entries(value as Record<string, protobuf.Message>)) checkMessage(sub, v, `${fpath}.${k}`, out, depth + 1);
    else if (f.repeated) (value as protobuf.Message[]).forEach((v, i) => checkMessage(sub, v, `${fpath}[${i}]`, out, depth + 1));
    else checkMessage(sub, value as protobuf.Message, fpath, out, depth + 1);
  }
}
