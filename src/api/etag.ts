// ETags and If-Match. The whole config's tag is its revision ("r42"); an item's tag is a digest of
// its content ("i3fa9…"), so writers of different items do not conflict with each other, while two
// writers of one item do. Mismatches are 409 Conflict, like every other lost race in this API.
import { createHash } from 'node:crypto';
import { canonicalJson } from '../model/config.js';
import { conflict, invalid } from './errors.js';

export function revisionTag(revision: number): string {
  return `"r${revision}"`;
}

export function itemTag(item: unknown): string {
  return `"i${createHash('sha256').update(canonicalJson(item)).digest('hex').slice(0, 16)}"`;
}

export type Precondition = { kind: 'none' } | { kind: 'any' } | { kind: 'revision'; revision: number } | { kind: 'item'; tag: string };

export function parseIfMatch(header: string | string[] | undefined): Precondition {
  if (header === undefined) return { kind: 'none' };
  const text = Array.isArray(header) ? header.join(',') : header;
  const value = text.trim();
  if (value === '*') return { kind: 'any' };
  if (value.includes(',')) throw invalid('If-Match must hold one ETag', [{ path: '$headers["if-match"]', message: `expected one ETag such as "r42", got ${value}` }]);
  const tag = value.replace(/^W\//, '');
  const rev = /^"r(\d+)"$/.exec(tag);
  if (rev) return { kind: 'revision', revision: Number(rev[1]) };
  if (/^"i[0-9a-f]{16}"$/.test(tag)) return { kind: 'item', tag };
  throw invalid('If-Match is not an ETag of this API', [{ path: '$headers["if-match"]', message: `expected an ETag from a previous response, such as "r42", got ${value}` }]);
}

/** Checks an item-level precondition against the item's current content (undefined: absent). */
export function checkItemPrecondition(pre: Precondition, current: unknown, what: string): void {
  if (pre.kind === 'any' && current === undefined) throw conflict(`If-Match: * but ${what} does not exist`);
  if (pre.kind === 'item') {
    if (current === undefined) throw conflict(`If-Match ${pre.tag} but ${what} does not exist any more`);
    const now = itemTag(current);
    if (now !== pre.tag) throw conflict(`${what} changed since you read it (ETag now ${now}, you sent ${pre.tag}); read it again and retry`);
  }
}

/** For writes of the whole config or a whole collection: only a revision ETag (or *) makes sense. */
export function revisionPrecondition(header: string | string[] | undefined): Precondition {
  const pre = parseIfMatch(header);
  if (pre.kind === 'item') {
    throw invalid('If-Match here takes the config revision', [{ path: '$headers["if-match"]', message: `expected a revision ETag such as "r42" (from GET /v1/config), got the item ETag ${pre.tag}` }]);
  }
  return pre;
}
