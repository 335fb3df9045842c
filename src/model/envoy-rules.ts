// Envoy's protoc-gen-validate rules applied to what a config would serve: raw resources as given,
// and the resources generated from the model. The strict decode proves the shape; these rules
// catch values Envoy refuses (a zero connect_timeout, an empty stat_prefix, port 70000), so a write
// is refused with a path instead of every node NACKing the result.
import { pgvProblemsInBytes } from '../proto/pgv.js';
import type { DecodedRawResource } from './raw-resources.js';
import type { Problem } from './schema-errors.js';
import type { TranslatedResource } from './translate.js';
import { messageName, shortType } from './type-urls.js';

/**
 * Results by the encoded bytes object. The encoder hands out the same bytes for unchanged
 * resources on every write, and nothing mutates encoded bytes, so this skips even the content
 * lookup of pgvProblemsInBytes for them. Paths are relative ("$...") and re-rooted per use.
 */
const byBytes = new WeakMap<Uint8Array, Problem[]>();

function relativeProblems(typeUrl: string, bytes: Uint8Array): Problem[] {
  let found = byBytes.get(bytes);
  if (!found) {
    found = pgvProblemsInBytes(messageName(typeUrl), bytes);
    byBytes.set(bytes, found);
  }
  return found;
}

/** Violations in a raw resource, with paths under `path` (the resource's place in the document). */
export function rawResourceRuleProblems(r: DecodedRawResource, path: string): Problem[] {
  return relativeProblems(r.typeUrl, r.bytes).map((p) => ({ path: path + p.path.slice(1), message: p.message }));
}

/**
 * Violations in a generated resource. Their Envoy field paths do not exist in the document, so
 * each problem points at the item the resource came from and names the Envoy field.
 */
export function generatedResourceRuleProblems(r: TranslatedResource, bytes: Uint8Array): Problem[] {
  return relativeProblems(r.typeUrl, bytes).map((p) => ({
    path: r.origin,
    message: `the generated ${shortType(r.typeUrl)} "${r.name}" would be refused by Envoy: ${p.path.replace(/^\$\.?/, '') || 'the message'}: ${p.message}`,
  }));
}
