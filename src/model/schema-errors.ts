// Turns TypeBox validation errors into the problems we show users: one line per failing value,
// with a JSON path in the same notation as the proto codec ($.listeners[0].port) and a message that
// says what was expected and what was found. Union alternatives collapse into one message.
import type { TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import type { TLocalizedValidationError } from 'typebox/error';
import { Settings } from 'typebox/system';

export interface Problem {
  /** JSON path of the offending value, e.g. `$.listeners[0].port`. */
  path: string;
  message: string;
}

// TypeBox stops collecting at 8 errors by default; users should see every problem at once. The cap
// still bounds the work a hostile document can cause.
Settings.Set({ maxErrors: 1000 });

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `$.a[0].b` for a JSON pointer into `value` (numeric segments index arrays). */
export function pointerToPath(pointer: string, value: unknown, root = '$'): string {
  if (pointer === '') return root;
  let path = root;
  let cur: unknown = value;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur) && /^\d+$/.test(seg)) path += `[${seg}]`;
    else path += IDENT.test(seg) ? `.${seg}` : `[${JSON.stringify(seg)}]`;
    cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
  }
  return path;
}

export function appendPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return IDENT.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function at(value: unknown, pointer: string): unknown {
  if (pointer === '' || pointer === '#') return value;
  let cur = value;
  for (const raw of pointer.replace(/^#/, '').slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v)}`;
  return `${typeof v} ${String(v)}`;
}

function expectation(schema: TSchema | undefined): string | undefined {
  const d = schema && (schema as { description?: unknown }).description;
  return typeof d === 'string' ? d : undefined;
}

function fieldsOf(schema: TSchema | undefined): string[] {
  const props = schema && (schema as { properties?: Record<string, unknown> }).properties;
  return props ? Object.keys(props) : [];
}

/** Problems for `value` against `schema`; empty when it conforms. */
export function schemaProblems(schema: TSchema, value: unknown, root = '$'): Problem[] {
  const validator = compiled(schema);
  if (validator.Check(value)) return [];
  return explain(schema, value, validator.Errors(value), root);
}

const cache = new WeakMap<TSchema, ReturnType<typeof Compile>>();
function compiled(schema: TSchema): ReturnType<typeof Compile> {
  let v = cache.get(schema);
  if (!v) {
    v = Compile(schema);
    cache.set(schema, v);
  }
  return v;
}

/** Problems from raw TypeBox errors (also used for errors fastify's validator produced). */
export function explain(schema: TSchema, value: unknown, errors: readonly TLocalizedValidationError[], root = '$'): Problem[] {
  const unions = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf').map((e) => `${e.schemaPath}/${e.keyword}/`);
  const out: Problem[] = [];
  const seen = new Set<string>();
  const push = (p: Problem) => {
    const key = `${p.path}\u0000${p.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(p);
    }
  };
  for (const e of errors) {
    if (unions.some((u) => e.schemaPath.startsWith(u))) continue; // reported once, by the union
    if (e.keyword === 'boolean') continue; // the parent's additionalProperties error names the field
    const path = pointerToPath(e.instancePath, value, root);
    const found = at(value, e.instancePath);
    const sub = at(schema, e.schemaPath) as TSchema | undefined;
    const params = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case 'additionalProperties': {
        const allowed = fieldsOf(sub);
        for (const name of (params['additionalProperties'] as string[] | undefined) ?? []) {
          push({ path: appendPath(path, name), message: `unknown field "${name}"${allowed.length ? ` (allowed: ${allowed.join(', ')})` : ''}` });
        }
        break;
      }
      case 'required':
        for (const name of (params['requiredProperties'] as string[] | undefined) ?? []) {
          push({ path: appendPath(path, name), message: `missing required field "${name}"` });
        }
        break;
      case 'anyOf':
      case 'oneOf':
        push({ path, message: `expected ${expectation(sub) ?? 'one of the allowed forms'}, got ${describeValue(found)}` });
        break;
      case 'enum':
        push({ path, message: `expected one of ${(params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(found)}` });
        break;
      case 'type':
        push({ path, message: `expected ${params['type'] === 'integer' ? 'an integer' : params['type'] === 'array' || params['type'] === 'object' ? `an ${String(params['type'])}` : `a ${String(params['type'])}`}, got ${describeValue(found)}` });
        break;
      case 'pattern':
        push({ path, message: `expected ${expectation(sub) ?? `a string matching ${String(params['pattern'])}`}, got ${describeValue(found)}` });
        break;
      default:
        push({ path, message: `${e.message}${expectation(sub) ? ` (${expectation(sub)})` : ''}, got ${describeValue(found)}` });
    }
  }
  return out;
}
