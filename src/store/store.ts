// The Store contract: the one owner of the desired configuration and its revision history. Every
// committed change gets the next revision number; xDS versions derive from it, so they only go up.
// SQLite (sqlite.ts) is the default; the interface leaves room for a distributed backend (etcd).
import type { ConfigDocument } from '../model/schema.js';

export interface RevisionSummary {
  listeners: number;
  clusters: number;
  dropRules: number;
  resources: number;
}

export interface RevisionInfo {
  revision: number;
  /** ISO 8601 time of the commit. */
  createdAt: string;
  /** Short hash of the canonical config JSON; equal digests mean equal configs. */
  digest: string;
  /** What made the change, e.g. "PUT /v1/listeners/kafka" or "rollback to 41". */
  message: string;
  summary: RevisionSummary;
}

export interface ConfigSnapshot extends RevisionInfo {
  config: ConfigDocument;
}

export interface ApplyOptions {
  /** Compare-and-swap: commit only if the current revision is still this one. */
  ifRevision?: number;
  message?: string;
}

export interface ApplyResult {
  /** False when the config equals the current one: nothing was written, the revision stays. */
  changed: boolean;
  snapshot: ConfigSnapshot;
}

export type StoreWatcher = (snapshot: ConfigSnapshot) => void;

export interface Store {
  /** The current config; revision 0 with an empty config before the first commit. */
  current(): Promise<ConfigSnapshot>;
  /** Commits a whole config as the next revision, atomically and durably, unless it is unchanged. */
  apply(config: ConfigDocument, opts?: ApplyOptions): Promise<ApplyResult>;
  /** Newest first. */
  history(opts?: { limit?: number; before?: number }): Promise<RevisionInfo[]>;
  get(revision: number): Promise<ConfigSnapshot | undefined>;
  /** Commits the config of an earlier revision as the next revision. */
  rollback(revision: number, opts?: ApplyOptions): Promise<ApplyResult>;
  /** Called after every commit that changed something, in commit order. Returns an unsubscribe. */
  watch(cb: StoreWatcher): () => void;
  close(): Promise<void>;
}

export class RevisionConflictError extends Error {
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`the config changed meanwhile: expected revision ${expected}, but it is now ${actual}; read it again and retry`);
    this.name = 'RevisionConflictError';
  }
}

export class RevisionNotFoundError extends Error {
  constructor(
    readonly revision: number,
    readonly oldest: number | undefined,
  ) {
    super(`revision ${revision} is not in the history${oldest !== undefined ? ` (the oldest kept is ${oldest})` : ''}`);
    this.name = 'RevisionNotFoundError';
  }
}

export function summarize(config: ConfigDocument): RevisionSummary {
  return { listeners: config.listeners.length, clusters: config.clusters.length, dropRules: config.dropRules.length, resources: config.resources.length };
}
