import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { SnapshotCache, type GroupChange } from '../../src/xds/cache.js';
import { xdsMetrics } from '../../src/xds/metrics.js';
import { TypeUrl, type XdsResource } from '../../src/xds/resources.js';

function res(typeUrl: string, name: string, content: string): XdsResource {
  return { typeUrl, name, bytes: Buffer.from(`${name}:${content}`) };
}
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('SnapshotCache', () => {
  it('derives per-type versions: unchanged types keep their version and snapshot object', () => {
    const cache = new SnapshotCache();
    cache.setSnapshot('g', '1', [res(TypeUrl.Cluster, 'c1', 'a'), res(TypeUrl.ClusterLoadAssignment, 'c1', 'ep1')]);
    const s1 = cache.snapshot('g')!;
    cache.setSnapshot('g', '2', [res(TypeUrl.Cluster, 'c1', 'a'), res(TypeUrl.ClusterLoadAssignment, 'c1', 'ep2')]);
    const s2 = cache.snapshot('g')!;
    expect(s2.version).toBe('2');
    expect(s2.type(TypeUrl.Cluster).version).toBe('1');
    expect(s2.type(TypeUrl.Cluster)).toBe(s1.type(TypeUrl.Cluster));
    expect(s2.type(TypeUrl.ClusterLoadAssignment).version).toBe('2');
  });

  it('gives a type that empties a new version, and types never seen the first version', () => {
    const cache = new SnapshotCache();
    cache.setSnapshot('g', '5', [res(TypeUrl.Listener, 'l', 'x')]);
    expect(cache.snapshot('g')!.type(TypeUrl.Cluster).version).toBe('5');
    expect(cache.snapshot('g')!.type(TypeUrl.Cluster).resources.size).toBe(0);
    cache.setSnapshot('g', '6', []);
    const l = cache.snapshot('g')!.type(TypeUrl.Listener);
    expect(l.version).toBe('6');
    expect(l.resources.size).toBe(0);
    cache.setSnapshot('g', '7', []);
    expect(cache.snapshot('g')!.type(TypeUrl.Listener).version).toBe('6');
  });

  it('refuses versions that go backwards and changes nothing', () => {
    const cache = new SnapshotCache();
    cache.setSnapshot('g', '10', [res(TypeUrl.Cluster, 'c', 'a')]);
    expect(() => cache.setSnapshot('g', '9', [res(TypeUrl.Cluster, 'c', 'b')])).toThrow(/version 9 is older than the current 10/);
    expect(cache.snapshot('g')!.version).toBe('10');
    expect([...cache.snapshot('g')!.type(TypeUrl.Cluster).resources.values()][0]!.bytes.toString()).toBe('c:a');
  });

  it('keeps versions unique when the same version is set again with different content', () => {
    const cache = new SnapshotCache();
    cache.setSnapshot('g', '3', [res(TypeUrl.Cluster, 'c', 'a')]);
    cache.setSnapshot('g', '3', [res(TypeUrl.Cluster, 'c', 'b')]);
    expect(cache.snapshot('g')!.type(TypeUrl.Cluster).version).toBe('3.1');
    cache.setSnapshot('g', '3', [res(TypeUrl.Cluster, 'c', 'c')]);
    expect(cache.snapshot('g')!.type(TypeUrl.Cluster).version).toBe('3.2');
  });

  it('rejects duplicate names, bad type URLs and empty names with the index and name', () => {
    const cache = new SnapshotCache();
    expect(() => cache.setSnapshot('g', '1', [res(TypeUrl.Cluster, 'c', 'a'), res(TypeUrl.Cluster, 'c', 'b')])).toThrow(/resources\[1\]: duplicate .*"c"/);
    expect(() => cache.setSnapshot('g', '1', [{ typeUrl: 'nope', name: 'x', bytes: new Uint8Array() }])).toThrow(/resources\[0\]: typeUrl "nope"/);
    expect(() => cache.setSnapshot('g', '1', [{ typeUrl: TypeUrl.Cluster, name: '', bytes: new Uint8Array() }])).toThrow(/non-empty name/);
    expect(cache.groups()).toEqual([]);
  });

  it('encodes each distinct resource version once, shared across groups and snapshots', () => {
    const registry = new Registry();
    const cache = new SnapshotCache({ metrics: xdsMetrics(registry) });
    const shared = res(TypeUrl.Cluster, 'c', 'same');
    cache.setSnapshot('a', '1', [shared]);
    cache.setSnapshot('b', '1', [{ ...shared, bytes: Buffer.from(shared.bytes) }]);
    const ra = cache.snapshot('a')!.type(TypeUrl.Cluster).resources.get('c')!;
    const rb = cache.snapshot('b')!.type(TypeUrl.Cluster).resources.get('c')!;
    expect(ra).toBe(rb);
    expect(ra.sotwField()).toBe(rb.sotwField());
    ra.deltaField();
    rb.deltaField();
    expect(cache.stats().encodes).toEqual({ any: 1, delta: 1 });
    expect(cache.stats().resources).toBe(1);
  });

  it('recognises unchanged resources given as fresh byte arrays', () => {
    const cache = new SnapshotCache();
    cache.setSnapshot('g', '1', [res(TypeUrl.Cluster, 'c', 'same')]);
    const first = cache.snapshot('g')!.type(TypeUrl.Cluster).resources.get('c')!;
    first.sotwField();
    cache.setSnapshot('g', '2', [res(TypeUrl.Cluster, 'c', 'same'), res(TypeUrl.Listener, 'l', 'x')]);
    expect(cache.snapshot('g')!.type(TypeUrl.Cluster).resources.get('c')).toBe(first);
    expect(cache.stats()).toMatchObject({ resources: 2, encodes: { any: 1 } });
  });

  it('hashes each resource object once: setting the same objects for many groups costs lookups, not hashing', () => {
    const cache = new SnapshotCache();
    const list = Array.from({ length: 50 }, (_, i) => res(TypeUrl.Cluster, `c${i}`, 'v1'));
    for (let g = 0; g < 100; g++) cache.setSnapshot(`g${g}`, '1', list);
    expect(cache.stats()).toMatchObject({ groups: 100, resources: 50, hashed: 50 });
    // One resource changes everywhere: one new object, one hash, however many groups.
    const next = [...list];
    next[7] = res(TypeUrl.Cluster, 'c7', 'v2');
    for (let g = 0; g < 100; g++) cache.setSnapshot(`g${g}`, '2', next);
    expect(cache.stats()).toMatchObject({ resources: 50, hashed: 51 });
    expect(cache.snapshot('g42')!.type(TypeUrl.Cluster).resources.get('c7')).toBe(cache.snapshot('g0')!.type(TypeUrl.Cluster).resources.get('c7'));
    expect(cache.snapshot('g42')!.type(TypeUrl.Cluster).changed).toEqual(new Set(['c7']));
    // A known object is still checked for duplicates, and a bad input still changes nothing.
    expect(() => cache.setSnapshot('g0', '3', [...next, next[7]!])).toThrow(/duplicate .*"c7"/);
    expect(cache.snapshot('g0')!.version).toBe('2');
  });

  it('an object whose resource was forgotten, or whose fields were replaced, is hashed again', () => {
    const cache = new SnapshotCache();
    const r = res(TypeUrl.Cluster, 'c', 'v1');
    cache.setSnapshot('g', '1', [r]);
    cache.clearSnapshot('g');
    cache.setSnapshot('g', '2', [r]);
    expect(cache.stats()).toMatchObject({ resources: 1, hashed: 2 });
    r.bytes = Buffer.from('c:v2');
    cache.setSnapshot('g', '3', [r]);
    expect([...cache.snapshot('g')!.type(TypeUrl.Cluster).resources.values()][0]!.bytes.toString()).toBe('c:v2');
    expect(cache.stats()).toMatchObject({ resources: 1, hashed: 3 });
  });

  it('updateSnapshot gives what setSnapshot with the full list gives, at the cost of the change', () => {
    // A seeded walk of random edits, applied incrementally to one group and in full to another.
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const types = [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener];
    const cache = new SnapshotCache();
    const state = new Map<string, XdsResource>();
    const key = (r: { typeUrl: string; name: string }) => `${r.typeUrl} ${r.name}`;
    for (let i = 0; i < 30; i++) {
      const r = res(types[rnd(3)]!, `r${rnd(20)}`, 'v0');
      state.set(key(r), r);
    }
    cache.setSnapshot('inc', '1', [...state.values()]);
    cache.setSnapshot('full', '1', [...state.values()]);
    for (let step = 2; step < 60; step++) {
      const set: XdsResource[] = [];
      const remove: { typeUrl: string; name: string }[] = [];
      const touched = new Set<string>();
      for (let k = 0; k < 1 + rnd(4); k++) {
        const typeUrl = types[rnd(3)]!;
        const name = `r${rnd(20)}`;
        if (touched.has(`${typeUrl} ${name}`)) continue;
        touched.add(`${typeUrl} ${name}`);
        if (rnd(3) === 0) {
          remove.push({ typeUrl, name });
          state.delete(`${typeUrl} ${name}`);
        } else {
          // Sometimes the very object already held, sometimes equal bytes, sometimes new content.
          const held = state.get(`${typeUrl} ${name}`);
          const r = held && rnd(2) === 0 ? held : res(typeUrl, name, `v${rnd(3)}`);
          set.push(r);
          state.set(`${typeUrl} ${name}`, r);
        }
      }
      const before = cache.snapshot('inc')!;
      cache.updateSnapshot('inc', String(step), { set, remove });
      cache.setSnapshot('full', String(step), [...state.values()]);
      const inc = cache.snapshot('inc')!;
      const full = cache.snapshot('full')!;
      for (const t of types) {
        const a = inc.type(t);
        const b = full.type(t);
        expect(new Map([...a.resources].sort()), `step ${step} ${t}`).toEqual(new Map([...b.resources].sort()));
        for (const [name, r] of a.resources) expect(b.resources.get(name)).toBe(r); // interned: the same objects
        expect(a.version, `step ${step} ${t} version`).toBe(b.version);
        if (a !== before.type(t)) expect(a.changed && [...a.changed].sort()).toEqual(b.changed && [...b.changed].sort());
      }
    }
    // Reference counts stay exact: with one group gone, the other still holds all it uses.
    cache.clearSnapshot('full');
    expect(cache.stats().resources).toBe(state.size);
    cache.clearSnapshot('inc');
    expect(cache.stats().resources).toBe(0);
  });

  it('updateSnapshot refuses bad input and a group without a snapshot, changing nothing', () => {
    const cache = new SnapshotCache();
    expect(() => cache.updateSnapshot('g', '1', { set: [res(TypeUrl.Cluster, 'c', 'a')] })).toThrow(/has no snapshot yet; give it one with setSnapshot/);
    cache.setSnapshot('g', '2', [res(TypeUrl.Cluster, 'c', 'a')]);
    expect(() => cache.updateSnapshot('g', '1', { set: [] })).toThrow(/version 1 is older than the current 2/);
    expect(() => cache.updateSnapshot('g', '3', { set: [res(TypeUrl.Cluster, 'c', 'b')], remove: [{ typeUrl: TypeUrl.Cluster, name: 'c' }] })).toThrow(/both set and removed/);
    expect(() => cache.updateSnapshot('g', '3', { set: [res(TypeUrl.Cluster, 'd', 'b'), res(TypeUrl.Cluster, 'd', 'c')] })).toThrow(/duplicate/);
    expect(() => cache.updateSnapshot('g', '3', { set: [{ typeUrl: 'nope', name: 'x', bytes: new Uint8Array() }] })).toThrow(/typeUrl "nope"/);
    expect(cache.snapshot('g')!.version).toBe('2');
    expect(cache.stats().resources).toBe(1);
    // An update that changes nothing keeps every type snapshot (nothing to send).
    const t = cache.snapshot('g')!.type(TypeUrl.Cluster);
    cache.updateSnapshot('g', '3', { set: [res(TypeUrl.Cluster, 'c', 'a')], remove: [{ typeUrl: TypeUrl.Listener, name: 'absent' }] });
    expect(cache.snapshot('g')!.type(TypeUrl.Cluster)).toBe(t);
    expect(cache.stats().resources).toBe(1);
  });

  it('forgets resources no snapshot holds any more', () => {
    const cache = new SnapshotCache();
    cache.setSnapshot('a', '1', [res(TypeUrl.Cluster, 'c', 'v1')]);
    cache.setSnapshot('b', '1', [res(TypeUrl.Cluster, 'c', 'v1')]);
    cache.setSnapshot('a', '2', [res(TypeUrl.Cluster, 'c', 'v2')]);
    expect(cache.stats().resources).toBe(2);
    cache.clearSnapshot('b');
    expect(cache.stats().resources).toBe(1);
    cache.clearSnapshot('a');
    expect(cache.stats()).toMatchObject({ groups: 0, resources: 0 });
  });

  it('per-resource versions are hashes of the bytes', () => {
    const cache = new SnapshotCache();
    cache.setSnapshot('a', '1', [res(TypeUrl.Cluster, 'c', 'v1'), res(TypeUrl.Cluster, 'd', 'v1')]);
    cache.setSnapshot('b', '9', [res(TypeUrl.Cluster, 'c', 'v1')]);
    const a = cache.snapshot('a')!.type(TypeUrl.Cluster).resources;
    const b = cache.snapshot('b')!.type(TypeUrl.Cluster).resources;
    expect(a.get('c')!.version).toBe(b.get('c')!.version);
    expect(a.get('c')!.version).not.toBe(a.get('d')!.version);
  });

  it('tells watchers which types changed, after setSnapshot returns', async () => {
    const cache = new SnapshotCache();
    const seen: GroupChange[] = [];
    const stop = cache.watch('g', (c) => seen.push(c));
    cache.setSnapshot('g', '1', [res(TypeUrl.Cluster, 'c', 'a')]);
    expect(seen).toEqual([]);
    await flush();
    expect(seen).toEqual(['all']);
    cache.setSnapshot('g', '2', [res(TypeUrl.Cluster, 'c', 'a'), res(TypeUrl.Listener, 'l', 'x')]);
    cache.setSnapshot('g', '3', [res(TypeUrl.Cluster, 'c', 'a'), res(TypeUrl.Listener, 'l', 'x')]);
    await flush();
    expect(seen.length).toBe(2);
    expect([...(seen[1] as ReadonlySet<string>)]).toEqual([TypeUrl.Listener]);
    stop();
    cache.clearSnapshot('g');
    await flush();
    expect(seen.length).toBe(2);
  });

  it('a throwing watcher does not stop the others', async () => {
    const cache = new SnapshotCache();
    let called = 0;
    cache.watch('g', () => {
      throw new Error('boom');
    });
    cache.watch('g', () => called++);
    cache.setSnapshot('g', '1', []);
    await flush();
    expect(called).toBe(1);
  });
});
