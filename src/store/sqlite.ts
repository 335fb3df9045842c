// SQLite store in --data-dir: one row per revision holding the whole config, WAL journal with
// synchronous=FULL so a commit is on disk before apply() returns (a kill -9 or power loss after an
// acknowledged write loses nothing), and an exclusive lock so two control planes cannot share a
// data dir. History beyond the retention limit is pruned; the newest revision is never pruned, so
// revision numbers keep going up across restarts.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { canonicalJson } from '../model/config.js';
import { emptyConfig, type ConfigDocument } from '../model/schema.js';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import {
  RevisionConflictError,
  RevisionNotFoundError,
  summarize,
  type ApplyOptions,
  type ApplyResult,
  type ConfigSnapshot,
  type RevisionInfo,
  type Store,
  type StoreWatcher,
} from './store.js';

export interface SqliteStoreOptions {
  dataDir: string;
  /** Revisions kept in the history (default 1000). */
  historyLimit?: number;
  logger?: Logger;
}

interface Row {
  revision: number;
  created_at: string;
  digest: string;
  message: string;
  summary: string;
  config?: string;
}

const SCHEMA_VERSION = 1;

export function configDigest(config: ConfigDocument): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex').slice(0, 16);
}

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly watchers = new Set<StoreWatcher>();
  private readonly historyLimit: number;
  private readonly log: Logger;
  private latest: ConfigSnapshot;

  private constructor(db: Database.Database, opts: SqliteStoreOptions) {
    this.db = db;
    this.historyLimit = Math.max(1, opts.historyLimit ?? 1000);
    this.log = opts.logger ?? silentLogger();
    this.latest = this.readLatest();
  }

  /** Opens (creating if needed) the store in `dataDir`. Throws a clear error if it is in use. */
  static open(opts: SqliteStoreOptions): SqliteStore {
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    const file = join(opts.dataDir, 'config.db');
    const db = new Database(file);
    try {
      db.pragma('busy_timeout = 0');
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec(`
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS revisions (
          revision   INTEGER PRIMARY KEY,
          created_at TEXT NOT NULL,
          digest     TEXT NOT NULL,
          message    TEXT NOT NULL,
          summary    TEXT NOT NULL,
          config     TEXT NOT NULL
        );`);
      // A write takes the exclusive lock now rather than at the first change.
      db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run('schema_version', String(SCHEMA_VERSION));
    } catch (err) {
      db.close();
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
        throw new Error(`the store ${file} is in use by another process (another control plane on the same --data-dir?); stop it or use another data dir`, { cause: err });
      }
      throw new Error(`cannot open the store ${file}: ${(err as Error).message}`, { cause: err });
    }
    return new SqliteStore(db, opts);
  }

  private readLatest(): ConfigSnapshot {
    const row = this.db.prepare('SELECT * FROM revisions ORDER BY revision DESC LIMIT 1').get() as Row | undefined;
    if (!row) {
      const config = emptyConfig();
      return { revision: 0, createdAt: new Date(0).toISOString(), digest: configDigest(config), message: 'empty', summary: summarize(config), config };
    }
    return this.toSnapshot(row);
  }

  private toInfo(row: Row): RevisionInfo {
    return { revision: row.revision, createdAt: row.created_at, digest: row.digest, message: row.message, summary: JSON.parse(row.summary) as RevisionInfo['summary'] };
  }

  private toSnapshot(row: Row): ConfigSnapshot {
    return { ...this.toInfo(row), config: JSON.parse(row.config as string) as ConfigDocument };
  }

  async current(): Promise<ConfigSnapshot> {
    return this.latest;
  }

  async apply(config: ConfigDocument, opts: ApplyOptions = {}): Promise<ApplyResult> {
    return this.applySync(config, opts);
  }

  private applySync(config: ConfigDocument, opts: ApplyOptions): ApplyResult {
    const digest = configDigest(config);
    const commit = this.db.transaction((): ApplyResult => {
      const head = this.db.prepare('SELECT revision, digest FROM revisions ORDER BY revision DESC LIMIT 1').get() as { revision: number; digest: string } | undefined;
      const headRevision = head?.revision ?? 0;
      if (opts.ifRevision !== undefined && opts.ifRevision !== headRevision) throw new RevisionConflictError(opts.ifRevision, headRevision);
      const headDigest = head?.digest ?? configDigest(emptyConfig());
      if (headDigest === digest) return { changed: false, snapshot: this.latest };
      const row: Row = {
        revision: headRevision + 1,
        created_at: new Date().toISOString(),
        digest,
        message: opts.message ?? 'apply',
        summary: JSON.stringify(summarize(config)),
        config: JSON.stringify(config),
      };
      this.db.prepare('INSERT INTO revisions (revision, created_at, digest, message, summary, config) VALUES (@revision, @created_at, @digest, @message, @summary, @config)').run(row);
      this.db.prepare('DELETE FROM revisions WHERE revision <= ?').run(row.revision - this.historyLimit);
      return { changed: true, snapshot: this.toSnapshot(row) };
    });
    // IMMEDIATE takes the write lock at BEGIN, so the revision read and the insert are one step.
    const result = commit.immediate();
    if (result.changed) {
      this.latest = result.snapshot;
      for (const w of this.watchers) {
        try {
          w(result.snapshot);
        } catch (err) {
          // A failing watcher must not undo or hide a commit that already happened; it is logged
          // here, where it is handled, and the other watchers still run.
          this.log.error({ err, revision: result.snapshot.revision }, 'store watcher failed');
        }
      }
    }
    return result;
  }

  async history(opts: { limit?: number; before?: number } = {}): Promise<RevisionInfo[]> {
    const limit = Math.min(Math.max(opts.limit ?? 100, 1), 10_000);
    const rows = this.db
      .prepare('SELECT revision, created_at, digest, message, summary FROM revisions WHERE revision < ? ORDER BY revision DESC LIMIT ?')
      .all(opts.before ?? Number.MAX_SAFE_INTEGER, limit) as Row[];
    return rows.map((r) => this.toInfo(r));
  }

  async get(revision: number): Promise<ConfigSnapshot | undefined> {
    if (revision === 0) {
      // Revision 0 is the empty config every store starts from; it has no row.
      const config = emptyConfig();
      return { revision: 0, createdAt: new Date(0).toISOString(), digest: configDigest(config), message: 'empty', summary: summarize(config), config };
    }
    const row = this.db.prepare('SELECT * FROM revisions WHERE revision = ?').get(revision) as Row | undefined;
    return row ? this.toSnapshot(row) : undefined;
  }

  async rollback(revision: number, opts: ApplyOptions = {}): Promise<ApplyResult> {
    const target = await this.get(revision);
    if (!target) {
      const oldest = this.db.prepare('SELECT MIN(revision) AS r FROM revisions').get() as { r: number | null };
      throw new RevisionNotFoundError(revision, oldest.r ?? undefined);
    }
    return this.applySync(target.config, { ...opts, message: opts.message ?? `rollback to ${revision}` });
  }

  watch(cb: StoreWatcher): () => void {
    this.watchers.add(cb);
    return () => this.watchers.delete(cb);
  }

  async close(): Promise<void> {
    this.watchers.clear();
    if (this.db.open) this.db.close();
  }
}
