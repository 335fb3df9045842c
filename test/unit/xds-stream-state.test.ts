import { describe, expect, it } from 'vitest';
import { SnapshotCache, type TypeSnapshot } from '../../src/xds/cache.js';
import { TypeUrl, type XdsResource } from '../../src/xds/resources.js';
import { commitPlan, planDelta, planSotw, TypeState, type Plan } from '../../src/xds/stream-state.js';

function res(typeUrl: string, name: string, content: string): XdsResource {
  return { typeUrl, name, bytes: Buffer.from(`${name}:${content}`) };
}

class World {
  readonly cache = new SnapshotCache();
  private v = 0;
  set(resources: XdsResource[]): void {
    this.cache.setSnapshot('g', String(++this.v), resources);
  }
  type(t: string): TypeSnapshot {
    return this.cache.snapshot('g')!.type(t);
  }
}

const names = (p: Plan | null): string[] => (p ? p.resources.map((r) => r.name) : []);

describe('planSotw', () => {
  it('LDS/CDS: full set when anything changed, nothing when nothing did', () => {
    const w = new World();
    w.set([res(TypeUrl.Cluster, 'a', '1'), res(TypeUrl.Cluster, 'b', '1')]);
    const ts = new TypeState(TypeUrl.Cluster);
    ts.sub.applySotw([]);
    const p1 = planSotw(ts, w.type(TypeUrl.Cluster));
    expect(names(p1).sort()).toEqual(['a', 'b']);
    commitPlan(ts, p1!, w.type(TypeUrl.Cluster));
    expect(planSotw(ts, w.type(TypeUrl.Cluster))).toBeNull();
    w.set([res(TypeUrl.Cluster, 'a', '2'), res(TypeUrl.Cluster, 'b', '1')]);
    const p2 = planSotw(ts, w.type(TypeUrl.Cluster))!;
    expect(names(p2).sort()).toEqual(['a', 'b']);
    expect(p2.changed.map((r) => r.name)).toEqual(['a']);
    commitPlan(ts, p2, w.type(TypeUrl.Cluster));
    w.set([res(TypeUrl.Cluster, 'a', '2')]);
    const p3 = planSotw(ts, w.type(TypeUrl.Cluster))!;
    expect(names(p3)).toEqual(['a']);
    commitPlan(ts, p3, w.type(TypeUrl.Cluster));
    expect([...ts.known.keys()]).toEqual(['a']);
  });

  it('EDS: only changed or newly requested resources, deletions stay silent', () => {
    const w = new World();
    w.set([res(TypeUrl.ClusterLoadAssignment, 'a', '1'), res(TypeUrl.ClusterLoadAssignment, 'b', '1')]);
    const ts = new TypeState(TypeUrl.ClusterLoadAssignment);
    ts.sub.applySotw(['a', 'b', 'later']);
    commitPlan(ts, planSotw(ts, w.type(TypeUrl.ClusterLoadAssignment))!, w.type(TypeUrl.ClusterLoadAssignment));
    w.set([res(TypeUrl.ClusterLoadAssignment, 'a', '2'), res(TypeUrl.ClusterLoadAssignment, 'b', '1')]);
    const p = planSotw(ts, w.type(TypeUrl.ClusterLoadAssignment))!;
    expect(names(p)).toEqual(['a']);
    commitPlan(ts, p, w.type(TypeUrl.ClusterLoadAssignment));
    w.set([res(TypeUrl.ClusterLoadAssignment, 'a', '2')]);
    expect(planSotw(ts, w.type(TypeUrl.ClusterLoadAssignment))).toBeNull();
    w.set([res(TypeUrl.ClusterLoadAssignment, 'a', '2'), res(TypeUrl.ClusterLoadAssignment, 'later', '1')]);
    expect(names(planSotw(ts, w.type(TypeUrl.ClusterLoadAssignment)))).toEqual(['later']);
  });

  it('forced names are sent even when the client holds them', () => {
    const w = new World();
    w.set([res(TypeUrl.ClusterLoadAssignment, 'a', '1')]);
    const ts = new TypeState(TypeUrl.ClusterLoadAssignment);
    ts.sub.applySotw(['a']);
    commitPlan(ts, planSotw(ts, w.type(TypeUrl.ClusterLoadAssignment))!, w.type(TypeUrl.ClusterLoadAssignment));
    expect(planSotw(ts, w.type(TypeUrl.ClusterLoadAssignment))).toBeNull();
    ts.forced.add('a');
    expect(names(planSotw(ts, w.type(TypeUrl.ClusterLoadAssignment)))).toEqual(['a']);
  });

  it('LDS named subscription: respondAnyway answers with the (possibly empty) set', () => {
    const w = new World();
    w.set([]);
    const ts = new TypeState(TypeUrl.Listener);
    ts.sub.applySotw(['missing']);
    expect(planSotw(ts, w.type(TypeUrl.Listener))).toBeNull();
    ts.respondAnyway = true;
    expect(planSotw(ts, w.type(TypeUrl.Listener))).toMatchObject({ resources: [], complete: true });
  });
});

describe('planDelta', () => {
  it('sends what differs from initial_resource_versions and removes what vanished', () => {
    const w = new World();
    w.set([res(TypeUrl.Cluster, 'a', '1'), res(TypeUrl.Cluster, 'b', '1')]);
    const snap = w.type(TypeUrl.Cluster);
    const ts = new TypeState(TypeUrl.Cluster);
    ts.sub.applyDelta(['*'], [], true);
    ts.known.set('a', snap.resources.get('a')!.version);
    ts.known.set('b', 'stale');
    ts.known.set('gone', 'whatever');
    const p = planDelta(ts, snap)!;
    expect(names(p)).toEqual(['b']);
    expect(p.removed).toEqual(['gone']);
    commitPlan(ts, p, snap);
    expect(planDelta(ts, snap)).toBeNull();
  });

  it('names a subscribed resource that does not exist in removed_resources once', () => {
    const w = new World();
    w.set([]);
    const ts = new TypeState(TypeUrl.ClusterLoadAssignment);
    ts.sub.applyDelta(['nope'], [], true);
    ts.forced.add('nope');
    const p = planDelta(ts, w.type(TypeUrl.ClusterLoadAssignment))!;
    expect(p.removed).toEqual(['nope']);
    commitPlan(ts, p, w.type(TypeUrl.ClusterLoadAssignment));
    expect(planDelta(ts, w.type(TypeUrl.ClusterLoadAssignment))).toBeNull();
    w.set([res(TypeUrl.ClusterLoadAssignment, 'nope', '1')]);
    expect(names(planDelta(ts, w.type(TypeUrl.ClusterLoadAssignment)))).toEqual(['nope']);
  });

  it('after unsubscribing a name under a wildcard, confirms or denies it', () => {
    const w = new World();
    w.set([res(TypeUrl.Cluster, 'in', '1')]);
    const ts = new TypeState(TypeUrl.Cluster);
    ts.sub.applyDelta(['*', 'in', 'out'], [], true);
    commitPlan(ts, planDelta(ts, w.type(TypeUrl.Cluster))!, w.type(TypeUrl.Cluster));
    ts.sub.applyDelta([], ['in', 'out'], false);
    ts.announce.add('in');
    ts.announce.add('out');
    ts.forced.add('in');
    const p = planDelta(ts, w.type(TypeUrl.Cluster))!;
    expect(names(p)).toEqual(['in']);
    expect(p.removed).toEqual(['out']);
  });
});

describe('incremental planning', () => {
  // A seeded generator keeps failures reproducible.
  function rng(seed: number): () => number {
    let s = seed;
    return () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  }

  for (const [typeUrl, plan] of [
    [TypeUrl.ClusterLoadAssignment, planSotw],
    [TypeUrl.Cluster, planSotw],
    [TypeUrl.ClusterLoadAssignment, planDelta],
    [TypeUrl.Cluster, planDelta],
  ] as const) {
    it(`${plan.name} on ${typeUrl.split('.').pop()}: looking only at changed names gives the same plan as a full scan`, () => {
      const rand = rng(typeUrl.length + plan.name.length);
      const w = new World();
      const pool = Array.from({ length: 12 }, (_, i) => `r${i}`);
      const ts = new TypeState(typeUrl);
      ts.sub.applySotw(rand() < 0.5 ? ['*'] : pool.filter(() => rand() < 0.6));
      for (let step = 0; step < 300; step++) {
        const resources = pool.filter(() => rand() < 0.7).map((n) => res(typeUrl, n, String(Math.floor(rand() * 3))));
        w.set(resources);
        const snap = w.type(typeUrl);
        if (rand() < 0.2) ts.forced.add(pool[Math.floor(rand() * pool.length)]!);
        const fresh = new TypeState(typeUrl);
        fresh.sub.applySotw(ts.sub.wildcard ? ['*', ...ts.sub.names] : [...ts.sub.names]);
        for (const [k, v] of ts.known) fresh.known.set(k, v);
        for (const f of ts.forced) fresh.forced.add(f);
        const full = plan(fresh, snap);
        const incremental = plan(ts, snap);
        const summary = (p: Plan | null): unknown => p && { r: p.resources.map((r) => r.name).sort(), rm: [...p.removed].sort(), c: p.changed.map((r) => r.name).sort() };
        expect(summary(incremental), `step ${step}`).toEqual(summary(full));
        if (incremental) commitPlan(ts, incremental, snap);
        else {
          ts.forced.clear();
          ts.synced = snap;
        }
      }
    });
  }
});
