// The SQLite store on real files: revisions, idempotence, compare-and-swap, history retention,
// rollback, watch, reopening (revisions continue upward) and the one-process-per-data-dir lock.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { emptyConfig, type ConfigDocument } from '../../src/model/schema.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { RevisionConflictError, RevisionNotFoundError, type ConfigSnapshot } from '../../src/store/store.js';

const dirs: string[] = [];
const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'exds-store-'));
  dirs.push(d);
  return d;
}

function open(dataDir: string, historyLimit?: number): SqliteStore {
  const s = SqliteStore.open(historyLimit === undefined ? { dataDir } : { dataDir, historyLimit });
  stores.push(s);
  return s;
}

function withCluster(name: string, port = 1): ConfigDocument {
  return { ...emptyConfig(), clusters: [{ name, endpoints: [{ address: '10.0.0.1', port }] }] };
}

describe('SqliteStore', () => {
  it('starts at revision 0 with an empty config; each change bumps the revision; no-ops do not', async () => {
    const s = open(tmp());
    expect((await s.current()).revision).toBe(0);
    expect((await s.current()).config).toEqual(emptyConfig());
    const a = await s.apply(withCluster('a'), { message: 'first' });
    expect(a).toMatchObject({ changed: true, snapshot: { revision: 1, message: 'first', summary: { clusters: 1, listeners: 0 } } });
    const same = await s.apply(withCluster('a'));
    expect(same.changed).toBe(false);
    expect(same.snapshot.revision).toBe(1);
    const b = await s.apply(withCluster('b'));
    expect(b.snapshot.revision).toBe(2);
    expect((await s.get(1))?.config).toEqual(withCluster('a'));
    expect((await s.history()).map((r) => r.revision)).toEqual([2, 1]);
  });

  it('compare-and-swap refuses a stale revision and leaves the store unchanged', async () => {
    const s = open(tmp());
    await s.apply(withCluster('a'));
    await expect(s.apply(withCluster('x'), { ifRevision: 0 })).rejects.toBeInstanceOf(RevisionConflictError);
    expect((await s.current()).config).toEqual(withCluster('a'));
    expect((await s.apply(withCluster('y'), { ifRevision: 1 })).snapshot.revision).toBe(2);
  });

  it('keeps a bounded history, and rollback commits an old config as a new revision', async () => {
    const s = open(tmp(), 3);
    for (let i = 1; i <= 5; i++) await s.apply(withCluster(`c${i}`));
    expect((await s.history()).map((r) => r.revision)).toEqual([5, 4, 3]);
    await expect(s.rollback(1)).rejects.toBeInstanceOf(RevisionNotFoundError);
    const r = await s.rollback(3);
    expect(r.snapshot).toMatchObject({ revision: 6, message: 'rollback to 3' });
    expect(r.snapshot.config).toEqual(withCluster('c3'));
    const empty = await s.rollback(0);
    expect(empty.snapshot.revision).toBe(7);
    expect(empty.snapshot.config).toEqual(emptyConfig());
  });

  it('notifies watchers after each commit, in order, and survives a failing watcher', async () => {
    const s = open(tmp());
    const seen: number[] = [];
    s.watch(() => {
      throw new Error('watcher bug');
    });
    const off = s.watch((snap: ConfigSnapshot) => seen.push(snap.revision));
    await s.apply(withCluster('a'));
    await s.apply(withCluster('a'));
    await s.apply(withCluster('b'));
    off();
    await s.apply(withCluster('c'));
    expect(seen).toEqual([1, 2]);
    expect((await s.current()).revision).toBe(3);
  });

  it('a reopened store serves the same config and continues the revision numbers', async () => {
    const dir = tmp();
    const s = open(dir, 2);
    for (let i = 1; i <= 4; i++) await s.apply(withCluster(`c${i}`));
    await s.close();
    const again = open(dir, 2);
    expect((await again.current()).revision).toBe(4);
    expect((await again.current()).config).toEqual(withCluster('c4'));
    expect((await again.apply(withCluster('c5'))).snapshot.revision).toBe(5);
  });

  it('refuses a second opener of the same data dir with a clear message', () => {
    const dir = tmp();
    open(dir);
    expect(() => open(dir)).toThrow(/in use by another process.*--data-dir/);
  });
});
