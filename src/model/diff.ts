// Differences between two config documents (what an operator is about to change) and between two
// translations (which Envoy resources change). Pure.
import { canonicalJson, dropRuleName } from './config.js';
import { decodeRawResource } from './raw-resources.js';
import type { ConfigDocument, RawResource } from './schema.js';
import type { Translation } from './translate.js';
import { shortType } from './type-urls.js';

export type ItemKind = 'listener' | 'cluster' | 'dropRule' | 'resource';

export interface FieldChange {
  /** Path inside the item, e.g. `endpoints[0].port`; empty for the whole item. */
  path: string;
  before?: unknown;
  after?: unknown;
}

export interface ItemChange {
  kind: ItemKind;
  name: string;
  op: 'added' | 'removed' | 'changed';
  fields?: FieldChange[];
}

export interface ConfigDiff {
  changed: boolean;
  items: ItemChange[];
}

function rawName(r: RawResource, i: number): string {
  const d = decodeRawResource(r, `$.resources[${i}]`);
  const type = typeof r['@type'] === 'string' ? shortType(r['@type']) : 'resource';
  return 'resource' in d ? `${type}/${d.resource.name}` : `${type}/#${i}`;
}

export function diffConfig(before: ConfigDocument, after: ConfigDocument): ConfigDiff {
  const items: ItemChange[] = [
    ...diffList('listener', before.listeners, after.listeners, (l) => l.name),
    ...diffList('cluster', before.clusters, after.clusters, (c) => c.name),
    ...diffList('dropRule', before.dropRules, after.dropRules, dropRuleName),
    ...diffList('resource', before.resources, after.resources, rawName),
  ];
  return { changed: items.length > 0, items };
}

function diffList<T>(kind: ItemKind, before: T[], after: T[], nameOf: (t: T, i: number) => string): ItemChange[] {
  const old = new Map(before.map((t, i) => [nameOf(t, i), t]));
  const now = new Map(after.map((t, i) => [nameOf(t, i), t]));
  const out: ItemChange[] = [];
  for (const [name, t] of now) {
    const prev = old.get(name);
    if (prev === undefined) out.push({ kind, name, op: 'added' });
    else if (canonicalJson(prev) !== canonicalJson(t)) out.push({ kind, name, op: 'changed', fields: diffValues(prev, t, '') });
  }
  for (const name of old.keys()) if (!now.has(name)) out.push({ kind, name, op: 'removed' });
  return out;
}

/** Leaf-level differences between two JSON values. */
export function diffValues(a: unknown, b: unknown, path: string): FieldChange[] {
  if (canonicalJson(a) === canonicalJson(b)) return [];
  if (Array.isArray(a) && Array.isArray(b)) {
    const out: FieldChange[] = [];
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const p = `${path}[${i}]`;
      if (i >= a.length) out.push({ path: p, after: b[i] });
      else if (i >= b.length) out.push({ path: p, before: a[i] });
      else out.push(...diffValues(a[i], b[i], p));
    }
    return out;
  }
  if (isObject(a) && isObject(b)) {
    const out: FieldChange[] = [];
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const p = path ? `${path}.${k}` : k;
      if (!(k in b)) out.push({ path: p, before: a[k] });
      else if (!(k in a)) out.push({ path: p, after: b[k] });
      else out.push(...diffValues(a[k], b[k], p));
    }
    return out;
  }
  return [{ path, before: a, after: b }];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export interface ResourceChange {
  typeUrl: string;
  name: string;
  op: 'added' | 'removed' | 'changed';
}

/** Which Envoy resources a change adds, removes or alters (ignoring node audiences). */
export function diffTranslations(before: Translation, after: Translation): ResourceChange[] {
  const key = (t: string, n: string) => `${t}\u0000${n}`;
  const old = new Map(before.resources.map((r) => [key(r.typeUrl, r.name), canonicalJson(r.json)]));
  const out: ResourceChange[] = [];
  const seen = new Set<string>();
  for (const r of after.resources) {
    const k = key(r.typeUrl, r.name);
    seen.add(k);
    const prev = old.get(k);
    if (prev === undefined) out.push({ typeUrl: r.typeUrl, name: r.name, op: 'added' });
    else if (prev !== canonicalJson(r.json)) out.push({ typeUrl: r.typeUrl, name: r.name, op: 'changed' });
  }
  for (const r of before.resources) if (!seen.has(key(r.typeUrl, r.name))) out.push({ typeUrl: r.typeUrl, name: r.name, op: 'removed' });
  return out;
}
