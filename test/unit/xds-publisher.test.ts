// SnapshotPublisher (src/control-plane.ts) without sockets: over a seeded walk of config edits
// (selectors, listeners, endpoints, raw resources), every node's group snapshot holds exactly what
// the model says that node receives, nodes with the same selector matches share a group, and a
// one-endpoint change hashes one resource whatever the number of groups.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { SnapshotPublisher, type GroupedStreams } from '../../src/control-plane.js';
import { normalizeConfig } from '../../src/model/config.js';
import { NodeAudience } from '../../src/model/node-groups.js';
import type { NodeIdentity } from '../../src/model/node-selector.js';
import type { ConfigDocumentInput } from '../../src/model/schema.js';
import { encodeResource, translate } from '../../src/model/translate.js';
import { validateConfig } from '../../src/model/validate.js';
import type { ConfigSnapshot } from '../../src/store/store.js';
import { silentLogger } from '../../src/util/log.js';
import { SnapshotCache } from '../../src/xds/cache.js';

/** Stands in for the xDS server: one stream per node, grouped by the publisher. */
class FakeStreams implements GroupedStreams {
  readonly groupOf = new Map<string, string>();
  moves = 0;
  constructor(
    private readonly publisher: SnapshotPublisher,
    private readonly nodes: NodeIdentity[],
  ) {}
  connect(): void {
    for (const n of this.nodes) this.groupOf.set(n.id, this.publisher.groupFor({ ...n, metadata: n.metadata }));
  }
  groupsInUse(): Map<string, number> {
    const out = new Map<string, number>();
    for (const g of this.groupOf.values()) out.set(g, (out.get(g) ?? 0) + 1);
    return out;
  }
  regroup(): number {
    let moved = 0;
    for (const n of this.nodes) {
      const g = this.publisher.groupFor({ ...n, metadata: n.metadata });
      if (g !== this.groupOf.get(n.id)) moved++;
      this.groupOf.set(n.id, g);
    }
    this.moves += moved;
    return moved;
  }
}

let revision = 0;
function snapshot(doc: ConfigDocumentInput): ConfigSnapshot {
  revision++;
  return { revision, config: normalizeConfig(doc), createdAt: new Date().toISOString(), digest: String(revision), message: 'test', summary: {} as ConfigSnapshot['summary'] };
}

const nodes: NodeIdentity[] = Array.from({ length: 24 }, (_, i) => ({ id: `n${i}`, cluster: i % 3 === 0 ? 'edge' : 'core', metadata: { zone: `z${i % 4}`, rack: `r${i % 2}` } }));

function setup() {
  const cache = new SnapshotCache();
  const publisher = new SnapshotPublisher(cache, new Registry(), silentLogger());
  const streams = new FakeStreams(publisher, nodes);
  publisher.bindStreams(streams);
  return { cache, publisher, streams };
}

/** Every node's group holds exactly the resources the model gives that node, byte for byte. */
function expectServed(cache: SnapshotCache, streams: FakeStreams, doc: ConfigDocumentInput): void {
  const v = validateConfig(doc);
  if (!v.ok) throw new Error(JSON.stringify(v.problems));
  const audience = new NodeAudience(translate(v));
  for (const n of nodes) {
    const group = streams.groupOf.get(n.id) as string;
    const snap = cache.snapshot(group);
    expect(snap, `${n.id} in ${group} has a snapshot`).toBeDefined();
    const want = audience.resourcesForNode(n).map((r) => `${r.typeUrl} ${r.name} ${Buffer.from(encodeResource(r).bytes).toString('base64')}`);
    const have = snap!.typeUrls().flatMap((t) => [...snap!.type(t).resources.values()].map((r) => `${t} ${r.name} ${r.bytes.toString('base64')}`));
    expect(have.sort(), `${n.id} (${group})`).toEqual(want.sort());
  }
  // One group per distinct set of matched selectors, not per node.
  const distinct = new Set(nodes.map((n) => JSON.stringify(audience.matchedSelectors(n))));
  expect(new Set(streams.groupOf.values()).size).toBe(distinct.size);
  expect(cache.groups().length).toBe(distinct.size);
}

describe('SnapshotPublisher', () => {
  it('keeps every group exactly right over a walk of edits, regrouping when selectors change', () => {
    let seed = 11;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const { cache, publisher, streams } = setup();
    const selectors = [undefined, { labels: { zone: 'z1' } }, { clusters: ['edge'] }, { labels: { rack: 'r0' } }, { ids: ['n3', 'n4'] }, { labels: { zone: 'z2', rack: 'r0' } }];
    const doc = (): ConfigDocumentInput => {
      const clusters = Array.from({ length: 8 }, (_, i) => ({ name: `c${i}`, endpoints: [{ address: `10.0.${i}.1`, port: 8000 + rnd(3) }] }));
      const listeners = Array.from({ length: 4 }, (_, i) => {
        const sel = selectors[rnd(selectors.length)];
        return { name: `l${i}`, address: '0.0.0.0', port: 1000 + i, mode: 'skb' as const, cluster: `c${rnd(8)}`, ...(sel ? { nodeSelector: sel } : {}) };
      });
      const rawSel = selectors[rnd(selectors.length)];
      const resources = [{ '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', name: 'rt', virtual_hosts: [{ name: 'v', domains: [`d${rnd(2)}.test`] }], ...(rawSel ? { '@nodeSelector': rawSel } : {}) }];
      return { listeners, clusters, resources } as ConfigDocumentInput;
    };
    let d = doc();
    publisher.publish(snapshot(d));
    streams.connect();
    expectServed(cache, streams, d);
    for (let step = 0; step < 40; step++) {
      d = doc();
      publisher.publish(snapshot(d));
      expectServed(cache, streams, d);
    }
    expect(streams.moves).toBeGreaterThan(0); // the walk did move nodes between groups
  });

  it('nodes that connected while no revision could be served get the first good one', () => {
    const { cache, publisher, streams } = setup();
    // A stored revision the current rules refuse (a cluster without its name).
    publisher.publish(snapshot({ clusters: [{ endpoints: [] }] } as unknown as ConfigDocumentInput));
    expect(publisher.servedRevision).toBe(-1);
    streams.connect();
    expect(cache.groups()).toEqual([]);
    // No selectors, so nobody is regrouped: the publisher itself must notice the group in use.
    const good: ConfigDocumentInput = { listeners: [{ name: 'l', address: '0.0.0.0', port: 1, mode: 'skb', cluster: 'c' }], clusters: [{ name: 'c', endpoints: [] }] };
    publisher.publish(snapshot(good));
    expectServed(cache, streams, good);
  });

  it('a one-endpoint change hashes one resource, however many groups receive it', () => {
    const { cache, publisher, streams } = setup();
    const doc = (port: number): ConfigDocumentInput => ({
      listeners: nodes.map((n, i) => ({ name: `l-${n.id}`, address: '0.0.0.0', port: 2000 + i, mode: 'skb' as const, cluster: 'shared', nodeSelector: { ids: [n.id] } })),
      clusters: [
        { name: 'shared', endpoints: [{ address: '10.0.0.1', port }] },
        ...Array.from({ length: 50 }, (_, i) => ({ name: `other-${i}`, endpoints: [{ address: `10.1.0.${i + 1}`, port: 80 }] })),
      ],
    });
    publisher.publish(snapshot(doc(80)));
    streams.connect();
    expect(cache.groups().length).toBe(nodes.length); // a listener per node: a group per node
    const hashed = cache.stats().hashed;
    publisher.publish(snapshot(doc(81)));
    expect(cache.stats().hashed - hashed).toBe(1);
    expectServed(cache, streams, doc(81));
    // Nothing changed: no group is touched.
    const before = nodes.map((n) => cache.snapshot(streams.groupOf.get(n.id) as string));
    publisher.publish(snapshot(doc(81)));
    nodes.forEach((n, i) => expect(cache.snapshot(streams.groupOf.get(n.id) as string)).toBe(before[i]));
  });
});
