// Evaluates protoc-gen-validate rules, the `(validate.rules)` and `(validate.required)` options in
// Envoy's protos, on a message in canonical proto3 JSON (as decodeToJson returns it). Envoy runs
// these checks on its bootstrap and on every xDS resource, so a config that only passes the strict
// proto decode can still be refused at start, e.g. `connect_timeout: 0s` breaks `duration.gt {}`.
// Rule semantics: https://github.com/bufbuild/protoc-gen-validate (README, "Constraint Rules").
// Only the rule kinds Envoy's API uses are implemented; any other rule met on a set field throws,
// so a gap shows up as an error instead of a silent pass.
import { isIP } from 'node:net';
import protobuf from 'protobufjs';
import type { ProtoProblem } from '../../src/proto/json.js';
import { protoRegistry } from '../../src/proto/registry.js';

type Rules = Record<string, any>;
type Obj = Record<string, unknown>;

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
const OPAQUE = new Set(['google.protobuf.Struct', 'google.protobuf.Value', 'google.protobuf.ListValue', 'google.protobuf.FieldMask', 'google.protobuf.Timestamp', 'google.protobuf.Empty']);
const NUMERIC = new Set(['double', 'float', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64']);
// RFC 7230 token, optionally with a leading ':' (HTTP/2 pseudo-headers), as PGV defines them.
const HEADER_NAME = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
const HEADER_VALUE = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
const HEADER_LOOSE = /^[^\u0000\u000A\u000D]*$/;

/** Merged `(validate.rules)` of a field or oneof; protobufjs keeps each option occurrence apart. */
function optionRules(obj: protobuf.ReflectionObject): Rules | undefined {
  const parsed = (obj as unknown as { parsedOptions?: Array<Record<string, unknown>> }).parsedOptions ?? [];
  const merged: Rules = {};
  let any = false;
  for (const o of parsed) {
    const r = o['(validate.rules)'] as Rules | undefined;
    if (!r) continue;
    any = true;
    for (const [k, v] of Object.entries(r)) merged[k] = { ...(merged[k] ?? {}), ...(v as object) };
  }
  return any ? merged : undefined;
}

function oneofRequired(o: protobuf.OneOf): boolean {
  return (o.options?.['(validate.required)'] as boolean | undefined) === true;
}

function durationSeconds(v: unknown): number {
  if (typeof v === 'string') {
    const m = /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(v);
    if (!m) throw new Error(`not a proto3 JSON duration: ${v}`);
    const s = Number(m[2]) + Number(`0.${m[3] ?? '0'}`);
    return m[1] ? -s : s;
  }
  const d = (v ?? {}) as { seconds?: number | string; nanos?: number };
  return Number(d.seconds ?? 0) + (d.nanos ?? 0) / 1e9;
}

class Checker {
  readonly problems: ProtoProblem[] = [];
  private readonly registry = protoRegistry();

  private fail(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  private unsupported(kind: string, key: string, path: string): never {
    throw new Error(`PGV rule ${kind}.${key} at ${path} is not implemented by test/support/deploy-pgv.ts`);
  }

  message(type: protobuf.Type, obj: Obj, path: string): void {
    for (const o of type.oneofsArray) {
      if (oneofRequired(o) && !o.fieldsArray.some((f) => obj[f.name] !== undefined)) {
        this.fail(path, `one of ${o.fieldsArray.map((f) => f.name).join(', ')} is required`);
      }
    }
    for (const field of type.fieldsArray) {
      const p = `${path}.${field.name}`;
      const v = obj[field.name];
      // A oneof member (or proto3 optional) that is not set is not validated (PGV semantics).
      if (field.partOf && v === undefined) continue;
      const rules = optionRules(field);
      field.resolve();
      if (field.map) this.map(field, (v ?? {}) as Obj, rules?.map, p);
      else if (field.repeated) this.repeated(field, (v ?? []) as unknown[], rules?.repeated, p);
      else this.single(field, v, rules, p);
    }
  }

  private map(field: protobuf.Field, entries: Obj, rules: Rules | undefined, path: string): void {
    const n = Object.keys(entries).length;
    if (rules && !(rules.ignore_empty && n === 0)) {
      for (const [k, r] of Object.entries(rules)) {
        if (k === 'min_pairs' && n < Number(r)) this.fail(path, `at least ${r} entries required`);
        else if (k === 'max_pairs' && n > Number(r)) this.fail(path, `at most ${r} entries allowed`);
        else if (k === 'keys') for (const key of Object.keys(entries)) this.scalar('string', key, (r as Rules).string, `${path}[${JSON.stringify(key)}]`);
        else if (k === 'values' || k === 'ignore_empty' || k === 'no_sparse') continue;
        else if (!['min_pairs', 'max_pairs'].includes(k)) this.unsupported('map', k, path);
      }
    }
    for (const [k, v] of Object.entries(entries)) this.element(field, v, rules?.values, `${path}[${JSON.stringify(k)}]`);
  }

  private repeated(field: protobuf.Field, items: unknown[], rules: Rules | undefined, path: string): void {
    if (rules && !(rules.ignore_empty && items.length === 0)) {
      for (const [k, r] of Object.entries(rules)) {
        if (k === 'min_items' && items.length < Number(r)) this.fail(path, `at least ${r} items required`);
        else if (k === 'max_items' && items.length > Number(r)) this.fail(path, `at most ${r} items allowed`);
        else if (k === 'unique' && r && new Set(items.map((i) => JSON.stringify(i))).size !== items.length) this.fail(path, 'items must be unique');
        else if (!['min_items', 'max_items', 'unique', 'items', 'ignore_empty'].includes(k)) this.unsupported('repeated', k, path);
      }
    }
    items.forEach((v, i) => this.element(field, v, rules?.items, `${path}[${i}]`));
  }

  /** One element of a repeated field or map value: its item rules, then its own fields. */
  private element(field: protobuf.Field, v: unknown, rules: Rules | undefined, path: string): void {
    this.single(field, v, rules, path, true);
  }

  private single(field: protobuf.Field, v: unknown, rules: Rules | undefined, path: string, isElement = false): void {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) {
      const name = rt.fullName.replace(/^\./, '');
      const wrapped = WRAPPERS[name];
      if (wrapped) {
        if (rules?.message?.required && v === undefined) this.fail(path, 'value is required');
        if (v !== undefined && rules?.[wrapped]) this.scalar(wrapped, v, rules[wrapped], path);
        return;
      }
      if (name === 'google.protobuf.Duration') {
        if (rules?.message?.required && v === undefined) this.fail(path, 'value is required');
        this.duration(v, rules?.duration, path);
        return;
      }
      if (name === 'google.protobuf.Any') {
        if ((rules?.any?.required || rules?.message?.required) && v === undefined) this.fail(path, 'value is required');
        if (v === undefined) return;
        const { '@type': url, ...rest } = v as Obj;
        for (const [k, r] of Object.entries(rules?.any ?? {})) {
          if (k === 'in' && !(r as string[]).includes(url as string)) this.fail(path, `type must be one of ${(r as string[]).join(', ')}`);
          else if (k === 'not_in' && (r as string[]).includes(url as string)) this.fail(path, `type ${url} is not allowed`);
          else if (!['required', 'in', 'not_in'].includes(k)) this.unsupported('any', k, path);
        }
        const inner = this.registry.typeForUrl(url as string);
        if (!inner) throw new Error(`${path}: unknown Any type ${url}`);
        this.message(inner, rest, path);
        return;
      }
      if (rules?.message?.required && v === undefined) this.fail(path, 'value is required');
      if (v === undefined || rules?.message?.skip || OPAQUE.has(name)) return;
      this.message(rt, v as Obj, path);
      return;
    }
    if (rt instanceof protobuf.Enum) {
      const value = v ?? (isElement ? undefined : rt.valuesById[0]);
      if (rules?.enum) this.enumValue(rt, value, rules.enum, path);
      return;
    }
    const kind = field.type;
    const value = v ?? (isElement ? undefined : kind === 'string' || kind === 'bytes' ? '' : kind === 'bool' ? false : 0);
    if (rules?.[kind]) this.scalar(kind, value, rules[kind], path);
  }

  private enumValue(e: protobuf.Enum, v: unknown, rules: Rules, path: string): void {
    const num = typeof v === 'number' ? v : e.values[v as string];
    for (const [k, r] of Object.entries(rules)) {
      if (k === 'defined_only' && r && (num === undefined || e.valuesById[num] === undefined)) this.fail(path, `${String(v)} is not a defined ${e.name} value`);
      else if (k === 'const' && num !== Number(r)) this.fail(path, `must be ${e.valuesById[Number(r)]}`);
      else if (k === 'in' && !([] as unknown[]).concat(r).map(Number).includes(num!)) this.fail(path, `${String(v)} is not allowed here`);
      else if (k === 'not_in' && ([] as unknown[]).concat(r).map(Number).includes(num!)) this.fail(path, `${String(v)} is not allowed here`);
      else if (!['defined_only', 'const', 'in', 'not_in'].includes(k)) this.unsupported('enum', k, path);
    }
  }

  private duration(v: unknown, rules: Rules | undefined, path: string): void {
    if (!rules) return;
    if (rules.required && v === undefined) this.fail(path, 'value is required');
    if (v === undefined) return;
    const s = durationSeconds(v);
    for (const [k, r] of Object.entries(rules)) {
      const bound = k === 'in' || k === 'not_in' ? NaN : durationSeconds(r);
      if (k === 'gt' && !(s > bound)) this.fail(path, `must be greater than ${bound}s`);
      else if (k === 'gte' && !(s >= bound)) this.fail(path, `must be at least ${bound}s`);
      else if (k === 'lt' && !(s < bound)) this.fail(path, `must be less than ${bound}s`);
      else if (k === 'lte' && !(s <= bound)) this.fail(path, `must be at most ${bound}s`);
      else if (k === 'const' && s !== bound) this.fail(path, `must be ${bound}s`);
      else if (!['gt', 'gte', 'lt', 'lte', 'const', 'required'].includes(k)) this.unsupported('duration', k, path);
    }
  }

  private scalar(kind: string, v: unknown, rules: Rules | undefined, path: string): void {
    if (!rules || v === undefined) return;
    if (kind === 'string') return this.string(String(v), rules, path);
    if (kind === 'bytes') {
      const n = Buffer.from(String(v), 'base64').length;
      for (const [k, r] of Object.entries(rules)) {
        if (k === 'min_len' && n < Number(r)) this.fail(path, `at least ${r} bytes required`);
        else if (k === 'max_len' && n > Number(r)) this.fail(path, `at most ${r} bytes allowed`);
        else if (!['min_len', 'max_len', 'ignore_empty'].includes(k)) this.unsupported('bytes', k, path);
      }
      return;
    }
    if (kind === 'bool') {
      for (const [k, r] of Object.entries(rules)) {
        if (k === 'const' && v !== r) this.fail(path, `must be ${String(r)}`);
        else if (k !== 'const') this.unsupported('bool', k, path);
      }
      return;
    }
    if (!NUMERIC.has(kind)) this.unsupported(kind, '*', path);
    const n = Number(v);
    if (rules.ignore_empty && n === 0) return;
    for (const [k, r] of Object.entries(rules)) {
      const list = ([] as unknown[]).concat(r).map(Number);
      if (k === 'gt' && !(n > Number(r))) this.fail(path, `must be greater than ${r}`);
      else if (k === 'gte' && !(n >= Number(r))) this.fail(path, `must be at least ${r}`);
      else if (k === 'lt' && !(n < Number(r))) this.fail(path, `must be less than ${r}`);
      else if (k === 'lte' && !(n <= Number(r))) this.fail(path, `must be at most ${r}`);
      else if (k === 'const' && n !== Number(r)) this.fail(path, `must be ${r}`);
      else if (k === 'in' && !list.includes(n)) this.fail(path, `must be one of ${list.join(', ')}`);
      else if (k === 'not_in' && list.includes(n)) this.fail(path, `${n} is not allowed`);
      else if (!['gt', 'gte', 'lt', 'lte', 'const', 'in', 'not_in', 'ignore_empty'].includes(k)) this.unsupported(kind, k, path);
    }
  }

  private string(s: string, rules: Rules, path: string): void {
    if (rules.ignore_empty && s === '') return;
    const chars = [...s].length;
    const bytes = Buffer.byteLength(s);
    for (const [k, r] of Object.entries(rules)) {
      const list = ([] as string[]).concat(r as string | string[]);
      if (k === 'min_len' && chars < Number(r)) this.fail(path, `at least ${r} characters required`);
      else if (k === 'max_len' && chars > Number(r)) this.fail(path, `at most ${r} characters allowed`);
      else if (k === 'len' && chars !== Number(r)) this.fail(path, `exactly ${r} characters required`);
      else if (k === 'min_bytes' && bytes < Number(r)) this.fail(path, `at least ${r} bytes required`);
      else if (k === 'max_bytes' && bytes > Number(r)) this.fail(path, `at most ${r} bytes allowed`);
      else if (k === 'const' && s !== r) this.fail(path, `must be ${JSON.stringify(r)}`);
      else if (k === 'in' && !list.includes(s)) this.fail(path, `must be one of ${list.map((x) => JSON.stringify(x)).join(', ')}`);
      else if (k === 'not_in' && list.includes(s)) this.fail(path, `${JSON.stringify(s)} is not allowed`);
      else if (k === 'prefix' && !s.startsWith(String(r))) this.fail(path, `must start with ${JSON.stringify(r)}`);
      else if (k === 'suffix' && !s.endsWith(String(r))) this.fail(path, `must end with ${JSON.stringify(r)}`);
      else if (k === 'contains' && !s.includes(String(r))) this.fail(path, `must contain ${JSON.stringify(r)}`);
      else if (k === 'pattern' && !new RegExp(String(r), 'u').test(s)) this.fail(path, `must match ${r}`);
      else if (k === 'ip' && r && isIP(s) === 0) this.fail(path, 'must be an IP address');
      else if (k === 'ipv4' && r && isIP(s) !== 4) this.fail(path, 'must be an IPv4 address');
      else if (k === 'ipv6' && r && isIP(s) !== 6) this.fail(path, 'must be an IPv6 address');
      else if (k === 'well_known_regex') {
        const strict = rules.strict !== false;
        const re = !strict ? HEADER_LOOSE : r === 'HTTP_HEADER_NAME' ? HEADER_NAME : r === 'HTTP_HEADER_VALUE' ? HEADER_VALUE : undefined;
        if (!re) this.unsupported('string', `well_known_regex=${String(r)}`, path);
        if (!re.test(s)) this.fail(path, `must be a valid ${String(r)}`);
      } else if (!['min_len', 'max_len', 'len', 'min_bytes', 'max_bytes', 'const', 'in', 'not_in', 'prefix', 'suffix', 'contains', 'pattern', 'ip', 'ipv4', 'ipv6', 'well_known_regex', 'strict', 'ignore_empty'].includes(k)) {
        this.unsupported('string', k, path);
      }
    }
  }
}

/** Every PGV violation in `json` (canonical proto3 JSON of `typeName`), with its JSON path. */
export function pgvProblems(typeName: string, json: Obj): ProtoProblem[] {
  const checker = new Checker();
  checker.message(protoRegistry().type(typeName), json, '$');
  return checker.problems;
}
