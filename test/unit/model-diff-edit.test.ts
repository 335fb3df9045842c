// Pure edits and diffs the API is built on: item upserts keep order, removals report absence,
// diffs name the changed fields, and selectors overlap only when some node could match both.
import { describe, expect, it } from 'vitest';
import { diffConfig, diffValues } from '../../src/model/diff.js';
import { findRawIndex, removeItem, removeRaw, setEndpoints, upsertItem, upsertRaw } from '../../src/model/edit.js';
import { selectorKey, selectorMatches, selectorsMayOverlap } from '../../src/model/node-selector.js';
import { emptyConfig, type ConfigDocument } from '../../src/model/schema.js';

const doc = (): ConfigDocument => ({
  ...emptyConfig(),
  clusters: [
    { name: 'a', endpoints: [{ address: '10.0.0.1', port: 1 }] },
    { name: 'b', endpoints: [] },
  ],
  dropRules: [{ cidr: '10.0.0.0/8' }],
});

describe('edits', () => {
  it('upsert replaces in place or appends; remove reports a missing item; inputs are not mutated', () => {
    const d = doc();
    const replaced = upsertItem(d, 'clusters', 'a', { name: 'a', lbPolicy: 'maglev' });
    expect(replaced.created).toBe(false);
    expect(replaced.doc.clusters.map((c) => c.name)).toEqual(['a', 'b']);
    expect(replaced.doc.clusters[0]).toEqual({ name: 'a', lbPolicy: 'maglev' });
    expect(d.clusters[0]?.lbPolicy).toBeUndefined();
    expect(upsertItem(d, 'clusters', 'c', { name: 'c' }).created).toBe(true);
    expect(removeItem(d, 'clusters', 'zz')).toBeUndefined();
    expect(removeItem(d, 'dropRules', '10.0.0.0/8')?.dropRules).toEqual([]);
    expect(setEndpoints(d, 'b', [{ address: '::1', port: 2 }])?.clusters[1]?.endpoints).toEqual([{ address: '::1', port: 2 }]);
    expect(setEndpoints(d, 'nope', [])).toBeUndefined();
  });

  it('raw resources are addressed by type URL and name (cluster_name for CLAs)', () => {
    const cla = { '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment', cluster_name: 'x' };
    const d = upsertRaw(doc(), cla['@type'], 'x', cla).doc;
    expect(findRawIndex(d, cla['@type'], 'x')).toBe(0);
    expect(findRawIndex(d, 'type.googleapis.com/envoy.config.cluster.v3.Cluster', 'x')).toBe(-1);
    expect(removeRaw(d, cla['@type'], 'x')?.resources).toEqual([]);
    expect(removeRaw(d, cla['@type'], 'y')).toBeUndefined();
  });
});

describe('diffs', () => {
  it('names added, removed and changed items with field paths', () => {
    const before = doc();
    const after: ConfigDocument = { ...before, clusters: [{ name: 'a', endpoints: [{ address: '10.0.0.1', port: 2 }] }, { name: 'c' }], dropRules: [] };
    expect(diffConfig(before, after)).toEqual({
      changed: true,
      items: [
        { kind: 'cluster', name: 'a', op: 'changed', fields: [{ path: 'endpoints[0].port', before: 1, after: 2 }] },
        { kind: 'cluster', name: 'c', op: 'added' },
        { kind: 'cluster', name: 'b', op: 'removed' },
        { kind: 'dropRule', name: '10.0.0.0/8', op: 'removed' },
      ],
    });
    expect(diffConfig(before, doc())).toEqual({ changed: false, items: [] });
    expect(diffValues({ a: [1] }, { a: [1, 2], b: true }, '')).toEqual([{ path: 'a[1]', after: 2 }, { path: 'b', after: true }]);
  });
});

describe('node selectors', () => {
  const node = { id: 'mb-1', cluster: 'edge', metadata: { rack: 'r1', zone: 3 } };
  it('match on every given field; labels compare string metadata', () => {
    expect(selectorMatches(undefined, node)).toBe(true);
    expect(selectorMatches({ ids: ['mb-2', 'mb-1'], clusters: ['edge'] }, node)).toBe(true);
    expect(selectorMatches({ ids: ['mb-1'], clusters: ['core'] }, node)).toBe(false);
    expect(selectorMatches({ labels: { rack: 'r1' } }, node)).toBe(true);
    expect(selectorMatches({ labels: { zone: '3' } }, node)).toBe(false);
  });
  it('overlap unless some field makes them disjoint; keys ignore order', () => {
    expect(selectorsMayOverlap({ clusters: ['a'] }, { ids: ['x'] })).toBe(true);
    expect(selectorsMayOverlap({ clusters: ['a'] }, { clusters: ['b'] })).toBe(false);
    expect(selectorsMayOverlap({ labels: { r: '1' } }, { labels: { r: '2' } })).toBe(false);
    expect(selectorsMayOverlap({ labels: { r: '1' } }, { labels: { z: '2' } })).toBe(true);
    expect(selectorKey({ ids: ['b', 'a'], labels: { y: '1', x: '2' } })).toBe(selectorKey({ labels: { x: '2', y: '1' }, ids: ['a', 'b'] }));
  });
});
