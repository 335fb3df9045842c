// Incremental (delta) xDS over real gRPC streams: xds_protocol.rst, "Incremental xDS".
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TypeUrl, type XdsResource } from '../../src/xds/resources.js';
import { XdsTestClient, type DeltaResponse } from '../support/xds-client.js';
import { cla, edsCluster, startXdsServer, type RunningServer } from '../support/xds-fixtures.js';

const ep = (n: number): Array<{ address: string; port: number }> => [{ address: `10.1.0.${n}`, port: 9000 + n }];
const names = (r: DeltaResponse): string[] => r.resources.map((x) => x.name).sort();
const versions = (r: DeltaResponse): Record<string, string> => Object.fromEntries(r.resources.map((x) => [x.name, x.version as string]));

let srv: RunningServer;
let client: XdsTestClient;
let version = 0;
const publish = (resources: XdsResource[]): string => {
  const v = String(++version);
  srv.cache.setSnapshot('default', v, resources);
  return v;
};

beforeEach(async () => {
  srv = await startXdsServer();
  client = new XdsTestClient(srv.address, { node: { id: 'delta-node', cluster: 'test' } });
});

afterEach(async () => {
  client.close();
  await srv.close();
});

describe('Delta xDS', () => {
  it('wildcard: per-resource versions (hash of the bytes), only changes resent, removed_resources', async () => {
    const v1 = publish([edsCluster('a'), edsCluster('b')]);
    const s = client.delta();
    s.send({ typeUrl: TypeUrl.Cluster, subscribe: ['*'] });
    const r1 = await s.nextOf(TypeUrl.Cluster);
    expect(names(r1)).toEqual(['a', 'b']);
    expect(r1.systemVersionInfo).toBe(v1);
    expect(r1.removed).toEqual([]);
    const snapA = srv.cache.snapshot('default')!.type(TypeUrl.Cluster).resources.get('a')!;
    expect(versions(r1)['a']).toBe(snapA.version);
    s.ack(r1);
    await s.expectNone(200);

    publish([edsCluster('a'), edsCluster('b', { connectTimeout: '4s' }), edsCluster('c')]);
    const r2 = await s.nextOf(TypeUrl.Cluster);
    expect(names(r2)).toEqual(['b', 'c']);
    expect(versions(r2)['b']).not.toBe(versions(r1)['b']);
    s.ack(r2);

    publish([edsCluster('b', { connectTimeout: '4s' }), edsCluster('c')]);
    const r3 = await s.nextOf(TypeUrl.Cluster);
    expect(r3.resources).toEqual([]);
    expect(r3.removed).toEqual(['a']);
  });

  it('answers a first wildcard request even when the group has none of that type', async () => {
    publish([cla('a', ep(1))]);
    const s = client.delta();
    s.send({ typeUrl: TypeUrl.Listener, subscribe: ['*'] });
    const r = await s.nextOf(TypeUrl.Listener);
    expect(r).toMatchObject({ resources: [], removed: [] });
    s.ack(r);
    await s.expectNone(200);
  });

  it('legacy wildcard: a first request naming nothing subscribes to all clusters', async () => {
    publish([edsCluster('a')]);
    const s = client.delta();
    s.send({ typeUrl: TypeUrl.Cluster });
    expect(names(await s.nextOf(TypeUrl.Cluster))).toEqual(['a']);
  });

  it('reconnect with initial_resource_versions: nothing needless is resent', async () => {
    publish([cla('a', ep(1)), cla('b', ep(2)), cla('c', ep(3))]);
    const first = client.delta();
    first.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['a', 'b', 'c'] });
    const r1 = await first.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r1)).toEqual(['a', 'b', 'c']);
    first.ack(r1);
    const held = versions(r1);
    first.cancel();

    // While the client was away: b changed, c vanished, a stayed.
    publish([cla('a', ep(1)), cla('b', ep(20))]);
    const again = client.delta();
    again.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['a', 'b', 'c'], initialResourceVersions: held });
    const r2 = await again.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r2)).toEqual(['b']);
    expect(r2.removed).toEqual(['c']);
    again.ack(r2);
    await again.expectNone(300);

    // Fully up to date: the reconnect gets no response at all.
    const third = client.delta();
    third.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['a', 'b'], initialResourceVersions: { a: held['a']!, b: versions(r2)['b']! } });
    await third.expectNone(400);
  });

  it('subscribe and unsubscribe mid-stream', async () => {
    publish([cla('a', ep(1)), cla('b', ep(2))]);
    const s = client.delta();
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['a'] });
    const r1 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r1)).toEqual(['a']);
    s.ack(r1);
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['b'] });
    const r2 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r2)).toEqual(['b']);
    s.ack(r2);
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, unsubscribe: ['a'] });
    await s.expectNone(300);
    publish([cla('a', ep(5)), cla('b', ep(2))]);
    await s.expectNone(300);
    publish([cla('a', ep(5)), cla('b', ep(6))]);
    const r3 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r3)).toEqual(['b']);
    s.ack(r3);
    // Subscribing to a name the client already holds still sends it (it may have forgotten it).
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['b'] });
    expect(names(await s.nextOf(TypeUrl.ClusterLoadAssignment))).toEqual(['b']);
  });

  it('names that do not exist yet: removed_resources at once, the resource when it appears', async () => {
    publish([cla('a', ep(1))]);
    const s = client.delta();
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['later'] });
    const r1 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(r1.resources).toEqual([]);
    expect(r1.removed).toEqual(['later']);
    s.ack(r1);
    await s.expectNone(200);
    publish([cla('a', ep(1)), cla('later', ep(2))]);
    const r2 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r2)).toEqual(['later']);
  });

  it('NACK: the rejected resource is not resent; the NACK is in the status', async () => {
    publish([cla('a', ep(1))]);
    const s = client.delta();
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['a'] });
    s.ack(await s.nextOf(TypeUrl.ClusterLoadAssignment));
    const bad = publish([cla('a', ep(2))]);
    const r = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    s.nack(r, 'endpoint 10.1.0.2 unreachable');
    await s.expectNone(400);
    const st = srv.server.status()[0]!.types[0]!;
    expect(st.lastNack).toMatchObject({ version: bad, nonce: r.nonce, message: 'endpoint 10.1.0.2 unreachable' });
    publish([cla('a', ep(3))]);
    expect(names(await s.nextOf(TypeUrl.ClusterLoadAssignment))).toEqual(['a']);
  });

  it('honours a subscription change carried by a request with a stale nonce', async () => {
    publish([cla('a', ep(1)), cla('b', ep(2))]);
    const s = client.delta();
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['a'] });
    const r1 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    s.ack(r1);
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['b'], responseNonce: r1.nonce });
    expect(names(await s.nextOf(TypeUrl.ClusterLoadAssignment))).toEqual(['b']);
  });

  it('unsubscribing a name under a wildcard confirms or denies it', async () => {
    publish([edsCluster('in')]);
    const s = client.delta();
    s.send({ typeUrl: TypeUrl.Cluster, subscribe: ['*', 'in', 'out'] });
    const r1 = await s.nextOf(TypeUrl.Cluster);
    expect(names(r1)).toEqual(['in']);
    expect(r1.removed).toEqual(['out']);
    s.ack(r1);
    s.send({ typeUrl: TypeUrl.Cluster, unsubscribe: ['in', 'out'] });
    const r2 = await s.nextOf(TypeUrl.Cluster);
    expect(names(r2)).toEqual(['in']);
    expect(r2.removed).toEqual(['out']);
  });

  it('delta ADS: CDS before EDS, and a fresh CLA after its cluster changes', async () => {
    publish([edsCluster('c1'), cla('c1', ep(1))]);
    const s = client.delta();
    s.send({ typeUrl: TypeUrl.Cluster, subscribe: ['*'] });
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['c1'] });
    const a = await s.next();
    const b = await s.next();
    expect([a.typeUrl, b.typeUrl]).toEqual([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment]);
    s.ack(a);
    s.ack(b);
    publish([edsCluster('c1', { connectTimeout: '9s' }), cla('c1', ep(1))]);
    const cds = await s.nextOf(TypeUrl.Cluster);
    const eds = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(cds)).toEqual(['c1']);
    expect(names(eds)).toEqual(['c1']);
    expect(eds.resources[0]!.version).toBe(versions(b)['c1']);
  });
});
