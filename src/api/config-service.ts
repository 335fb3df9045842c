// The API's path to the store: read the current config, apply a pure edit, validate the result
// (every problem, with paths), translate it to prove it encodes and passes Envoy's field rules,
// and commit with compare-and-swap. A rejected request commits nothing. Internal races (two
// requests editing at once) are retried; a client's own If-Match revision is never retried past.
import type { ConfigDiff } from '../model/diff.js';
import { diffConfig } from '../model/diff.js';
import { generatedResourceRuleProblems, rawResourceRuleProblems } from '../model/envoy-rules.js';
import type { ConfigDocument } from '../model/schema.js';
import type { Problem } from '../model/schema-errors.js';
import { ResourceEncoder } from '../model/resource-encoder.js';
import { translate, type EncodedResource, type Translation } from '../model/translate.js';
import { validateConfig, type ValidConfig } from '../model/validate.js';
import { RevisionConflictError, type ConfigSnapshot, type Store } from '../store/store.js';
import { conflict, invalid } from './errors.js';
import type { Precondition } from './etag.js';

export interface CommitResult {
  snapshot: ConfigSnapshot;
  changed: boolean;
  before: ConfigSnapshot;
  diff: ConfigDiff;
}

export interface EditOptions {
  precondition: Precondition;
  message: string;
  /** Status for a result that fails validation: 400 when the request body was at fault, 409 when
   *  the request is fine but conflicts with the rest of the config (deleting a used cluster). */
  invalidStatus?: 400 | 409;
}

const MAX_RETRIES = 5;

export class ConfigService {
  /** Encodings of the last check, so a write re-encodes only what it changed. */
  private readonly encoder = new ResourceEncoder();

  constructor(readonly store: Store) {}

  current(): Promise<ConfigSnapshot> {
    return this.store.current();
  }

  /** Validates a whole document or throws a 400 naming every problem. */
  check(doc: unknown, status: 400 | 409 = 400): ValidConfig {
    const v = validateConfig(doc);
    if (!v.ok) {
      const count = `${v.problems.length} problem${v.problems.length === 1 ? '' : 's'}`;
      throw status === 400 ? invalid(`the config is invalid (${count})`, v.problems) : conflict(`the change would leave the config invalid (${count}); remove the references first`, v.problems);
    }
    // Encoding every resource proves the translation is servable, and Envoy's own field rules
    // (protoc-gen-validate) that it would be accepted, before anything is committed.
    const { problems } = translateAndEncode(v, this.encoder);
    if (problems.length > 0) {
      const count = `${problems.length} problem${problems.length === 1 ? '' : 's'}`;
      throw status === 400 ? invalid(`the config breaks rules Envoy enforces (${count})`, problems) : conflict(`the change would leave resources Envoy refuses (${count})`, problems);
    }
    return v;
  }

  /** Runs `edit` on the current config and commits the result. */
  async edit(edit: (current: ConfigDocument) => ConfigDocument, opts: EditOptions): Promise<CommitResult> {
    for (let attempt = 0; ; attempt++) {
      const before = await this.store.current();
      if (opts.precondition.kind === 'revision' && opts.precondition.revision !== before.revision) {
        throw conflict(`the config is at revision ${before.revision}, not ${opts.precondition.revision} as If-Match says; read it again and retry`);
      }
      const next = edit(before.config);
      const valid = this.check(next, opts.invalidStatus ?? 400);
      try {
        const r = await this.store.apply(valid.config, { ifRevision: before.revision, message: opts.message });
        return { snapshot: r.snapshot, changed: r.changed, before, diff: diffConfig(before.config, r.snapshot.config) };
      } catch (err) {
        if (!(err instanceof RevisionConflictError)) throw err;
        if (opts.precondition.kind === 'revision' || attempt >= MAX_RETRIES) throw conflict(err.message);
      }
    }
  }
}

/** Translates and encodes every resource, and lists those that break Envoy's field rules. */
export function translateAndEncode(v: ValidConfig, encoder = new ResourceEncoder()): { translation: Translation; problems: Problem[] } {
  const translation = translate(v);
  const problems: Problem[] = [];
  const encoded = encoder.encodeAll(translation.resources);
  for (const r of translation.resources) {
    const { bytes } = encoded.get(r) as EncodedResource;
    // Raw resources carry their document path as origin; generated ones name the item they came from.
    problems.push(...(r.bytes ? rawResourceRuleProblems({ typeUrl: r.typeUrl, name: r.name, bytes, json: r.json }, r.origin) : generatedResourceRuleProblems(r, bytes)));
  }
  return { translation, problems };
}
