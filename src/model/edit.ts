// Item-level edits of a config document (what the REST API's CRUD routes do), as pure functions
// returning a new document. Validation of the result is the caller's next step.
import { dropRuleName } from './config.js';
import { decodeRawResource } from './raw-resources.js';
import type { Cluster, ConfigDocument, DropRule, Endpoint, Listener, RawResource } from './schema.js';

export type Collection = 'listeners' | 'clusters' | 'dropRules';

type ItemOf<C extends Collection> = C extends 'listeners' ? Listener : C extends 'clusters' ? Cluster : DropRule;

export function itemName<C extends Collection>(collection: C, item: ItemOf<C>): string {
  return collection === 'dropRules' ? dropRuleName(item as DropRule) : (item as Listener | Cluster).name;
}

export function findItem<C extends Collection>(doc: ConfigDocument, collection: C, name: string): ItemOf<C> | undefined {
  return (doc[collection] as ItemOf<C>[]).find((it) => itemName(collection, it) === name);
}

/** Replaces the item called `name` in place, or appends `item` when there is none. */
export function upsertItem<C extends Collection>(doc: ConfigDocument, collection: C, name: string, item: ItemOf<C>): { doc: ConfigDocument; created: boolean } {
  const list = doc[collection] as ItemOf<C>[];
  const i = list.findIndex((it) => itemName(collection, it) === name);
  const next = i < 0 ? [...list, item] : list.map((it, k) => (k === i ? item : it));
  return { doc: { ...doc, [collection]: next }, created: i < 0 };
}

/** The document without the item, or undefined when there is no such item. */
export function removeItem(doc: ConfigDocument, collection: Collection, name: string): ConfigDocument | undefined {
  const list = doc[collection] as (Listener | Cluster | DropRule)[];
  const next = list.filter((it) => itemName(collection, it as never) !== name);
  return next.length === list.length ? undefined : { ...doc, [collection]: next };
}

export function setEndpoints(doc: ConfigDocument, clusterName: string, endpoints: Endpoint[]): ConfigDocument | undefined {
  const c = findItem(doc, 'clusters', clusterName);
  if (!c) return undefined;
  return upsertItem(doc, 'clusters', clusterName, { ...c, endpoints }).doc;
}

/** Type URL and name of a raw resource, or undefined when it cannot be decoded. */
export function rawIdentity(r: RawResource, index: number): { typeUrl: string; name: string } | undefined {
  const d = decodeRawResource(r, `$.resources[${index}]`);
  return 'resource' in d ? { typeUrl: d.resource.typeUrl, name: d.resource.name } : undefined;
}

export function findRawIndex(doc: ConfigDocument, typeUrl: string, name: string): number {
  return doc.resources.findIndex((r, i) => {
    if (r['@type'] !== typeUrl) return false;
    const id = rawIdentity(r, i);
    return id?.name === name;
  });
}

export function upsertRaw(doc: ConfigDocument, typeUrl: string, name: string, raw: RawResource): { doc: ConfigDocument; created: boolean } {
  const i = findRawIndex(doc, typeUrl, name);
  const next = i < 0 ? [...doc.resources, raw] : doc.resources.map((r, k) => (k === i ? raw : r));
  return { doc: { ...doc, resources: next }, created: i < 0 };
}

export function removeRaw(doc: ConfigDocument, typeUrl: string, name: string): ConfigDocument | undefined {
  const i = findRawIndex(doc, typeUrl, name);
  if (i < 0) return undefined;
  return { ...doc, resources: doc.resources.filter((_r, k) => k !== i) };
}
