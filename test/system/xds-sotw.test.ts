// State-of-the-World xDS over real gRPC streams: one test per protocol rule of xds_protocol.rst.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TypeUrl, type XdsResource } from '../../src/xds/resources.js';
import { XdsTestClient, encodeSotwRequest, type SotwResponse } from '../support/xds-client.js';
import { apiListener, cla, edsCluster, routeConfig, startXdsServer, tcpListener, type RunningServer } from '../support/xds-fixtures.js';

const ep = (n: number): Array<{ address: string; port: number }> => [{ address: `10.0.0.${n}`, port: 8000 + n }];
const names = (r: SotwResponse): string[] => r.resources.map((x) => x.name).sort();

let srv: RunningServer;
let client: XdsTestClient;
let version = 0;
const publish = (resources: XdsResource[], group = 'default'): string => {
  const v = String(++version);
  srv.cache.setSnapshot(group, v, resources);
  return v;
};

beforeEach(async () => {
  srv = await startXdsServer();
  client = new XdsTestClient(srv.address, { node: { id: 'node-1', cluster: 'test' } });
});

afterEach(async () => {
  client.close();
  await srv.close();
});

function typeStatus(typeUrl: string) {
  const streams = srv.server.status();
  expect(streams.length).toBeGreaterThan(0);
  const t = streams[0]!.types.find((x) => x.typeUrl === typeUrl);
  if (!t) throw new Error(`no status for ${typeUrl}`);
  return t;
}

describe('SotW: ACK and NACK', () => {
  it('answers with a version and a nonce; an ACK gets no response and is recorded', async () => {
    const v = publish([edsCluster('c1'), edsCluster('c2')]);
    const s = client.sotw();
    s.subscribe(TypeUrl.Cluster);
    const r = await s.nextOf(TypeUrl.Cluster);
    expect(r.versionInfo).toBe(v);
    expect(r.nonce).not.toBe('');
    expect(names(r)).toEqual(['c1', 'c2']);
    s.ack(r);
    await s.expectNone(300);
    const st = typeStatus(TypeUrl.Cluster);
    expect(st.acked).toMatchObject({ version: v, nonce: r.nonce });
    expect(st.awaitingAck).toBe(false);
    expect(st.lastSent).toMatchObject({ version: v, nonce: r.nonce, resources: 2 });
    expect(await srv.registry.getSingleMetricAsString('xds_connected_streams')).toContain('xds_connected_streams{protocol="sotw",service="ads"} 1');
    expect(await srv.registry.getSingleMetricAsString('xds_push_to_ack_seconds')).toContain(`xds_push_to_ack_seconds_count{type_url="${TypeUrl.Cluster}"} 1`);
    expect(srv.server.stats()).toMatchObject({ streams: 1, responses: 1, acks: 1, nacks: 0 });
  });

  it('a NACKed version is not resent; the NACK is kept; a newer version goes out', async () => {
    const v1 = publish([edsCluster('c1')]);
    const s = client.sotw();
    s.subscribe(TypeUrl.Cluster);
    s.ack(await s.nextOf(TypeUrl.Cluster));
    const bad = publish([edsCluster('c1', { connectTimeout: '2s' })]);
    const r2 = await s.nextOf(TypeUrl.Cluster);
    expect(r2.versionInfo).toBe(bad);
    s.nack(r2, 'cluster c1: connect_timeout rejected');
    await s.expectNone(500);
    let st = typeStatus(TypeUrl.Cluster);
    expect(st.lastNack).toMatchObject({ version: bad, nonce: r2.nonce, message: 'cluster c1: connect_timeout rejected', clientVersion: v1 });
    expect(st.acked?.version).toBe(v1);
    // A snapshot change that leaves CDS untouched does not resend the rejected version either.
    publish([edsCluster('c1', { connectTimeout: '2s' }), cla('c1', ep(1))]);
    await s.expectNone(300);
    const good = publish([edsCluster('c1', { connectTimeout: '3s' })]);
    const r3 = await s.nextOf(TypeUrl.Cluster);
    expect(r3.versionInfo).toBe(good);
    s.ack(r3);
    await s.expectNone(200);
    st = typeStatus(TypeUrl.Cluster);
    expect(st.acked?.version).toBe(good);
    expect(st.lastNack?.version).toBe(bad);
    const metrics = await srv.registry.getSingleMetricAsString('xds_nacks_total');
    expect(metrics).toContain(`xds_nacks_total{type_url="${TypeUrl.Cluster}"} 1`);
  });

  it('a client that later accepts a version it NACKed (same nonce) is shown as ACKed, and nothing is resent', async () => {
    publish([edsCluster('c1')]);
    const s = client.sotw();
    s.subscribe(TypeUrl.Cluster);
    s.ack(await s.nextOf(TypeUrl.Cluster));
    const v2 = publish([edsCluster('c1', { connectTimeout: '2s' })]);
    const r2 = await s.nextOf(TypeUrl.Cluster);
    s.nack(r2, 'listener x: interface eth9 missing');
    await s.expectNone(200);
    expect(typeStatus(TypeUrl.Cluster).lastNack?.message).toBe('listener x: interface eth9 missing');
    s.ack(r2);
    await s.expectNone(300);
    const st = typeStatus(TypeUrl.Cluster);
    expect(st.acked).toMatchObject({ version: v2, nonce: r2.nonce });
    expect(st.lastNack).toBeNull();
    expect(srv.server.stats()).toMatchObject({ acks: 1, nacks: 1 });
  });

  it('a request with a stale nonce gets no response and does not change the subscription', async () => {
    publish([cla('a', ep(1)), cla('b', ep(2))]);
    const s = client.sotw();
    s.subscribe(TypeUrl.ClusterLoadAssignment, ['a']);
    const r1 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    s.ack(r1);
    publish([cla('a', ep(3)), cla('b', ep(2))]);
    const r2 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(r2.nonce).not.toBe(r1.nonce);
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['a', 'b'], versionInfo: r1.versionInfo, responseNonce: r1.nonce });
    await s.expectNone(400);
    expect(typeStatus(TypeUrl.ClusterLoadAssignment).subscription.names).toEqual(['a']);
    s.ack(r2, ['a', 'b']);
    const r3 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r3)).toEqual(['b']);
  });
});

describe('SotW: subscriptions', () => {
  it('explicit wildcard "*" receives every resource and the full set on each change', async () => {
    publish([edsCluster('c1')]);
    const s = client.sotw();
    s.subscribe(TypeUrl.Cluster, ['*']);
    const r1 = await s.nextOf(TypeUrl.Cluster);
    expect(names(r1)).toEqual(['c1']);
    s.ack(r1);
    publish([edsCluster('c1'), edsCluster('c2')]);
    const r2 = await s.nextOf(TypeUrl.Cluster);
    expect(names(r2)).toEqual(['c1', 'c2']);
    s.ack(r2);
    publish([edsCluster('c2')]);
    const r3 = await s.nextOf(TypeUrl.Cluster);
    expect(names(r3)).toEqual(['c2']);
  });

  it('legacy wildcard: an empty first list is "*", later names replace it, and empty then means none', async () => {
    publish([edsCluster('c1'), edsCluster('c2')]);
    const s = client.sotw();
    s.subscribe(TypeUrl.Cluster, []);
    const r1 = await s.nextOf(TypeUrl.Cluster);
    expect(names(r1)).toEqual(['c1', 'c2']);
    // Naming c1 is a new request for it: the spec ("How the client specifies what resources to
    // return") wants it sent again even though the wildcard already delivered it.
    s.ack(r1, ['c1']);
    const renamed = await s.nextOf(TypeUrl.Cluster);
    expect(names(renamed)).toEqual(['c1']);
    s.ack(renamed);
    publish([edsCluster('c1'), edsCluster('c2', { connectTimeout: '5s' })]);
    await s.expectNone(300);
    publish([edsCluster('c1', { connectTimeout: '5s' }), edsCluster('c2', { connectTimeout: '5s' })]);
    const r2 = await s.nextOf(TypeUrl.Cluster);
    expect(names(r2)).toEqual(['c1']);
    s.ack(r2, []);
    publish([edsCluster('c1', { connectTimeout: '6s' }), edsCluster('c2', { connectTimeout: '6s' })]);
    await s.expectNone(400);
    expect(typeStatus(TypeUrl.Cluster).subscription).toMatchObject({ wildcard: false, nameCount: 0 });
  });

  it('the legacy wildcard does not apply to EDS: an empty list subscribes to nothing', async () => {
    publish([cla('a', ep(1))]);
    const s = client.sotw();
    s.subscribe(TypeUrl.ClusterLoadAssignment, []);
    await s.expectNone(400);
  });

  it('unsubscribing stops updates for the dropped names only', async () => {
    publish([cla('a', ep(1)), cla('b', ep(2))]);
    const s = client.sotw();
    s.subscribe(TypeUrl.ClusterLoadAssignment, ['a', 'b']);
    const r1 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r1)).toEqual(['a', 'b']);
    s.ack(r1, ['a']);
    await s.expectNone(300);
    publish([cla('a', ep(1)), cla('b', ep(9))]);
    await s.expectNone(300);
    publish([cla('a', ep(7)), cla('b', ep(9))]);
    const r2 = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r2)).toEqual(['a']);
  });

  it('EDS sends only what changed; newly requested names are sent even if unchanged', async () => {
    publish([cla('a', ep(1)), cla('b', ep(2))]);
    const s = client.sotw();
    s.subscribe(TypeUrl.ClusterLoadAssignment, ['a']);
    s.ack(await s.nextOf(TypeUrl.ClusterLoadAssignment));
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['a', 'b'], versionInfo: '1' });
    const r = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(r)).toEqual(['b']);
    s.ack(r, ['a']);
    await s.expectNone(200);
    s.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: ['a', 'b'], versionInfo: r.versionInfo, responseNonce: r.nonce });
    const again = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(again)).toEqual(['b']);
    s.ack(again, ['a', 'b']);
    publish([cla('a', ep(1)), cla('b', ep(5))]);
    expect(names(await s.nextOf(TypeUrl.ClusterLoadAssignment))).toEqual(['b']);
  });

  it('resources requested before they exist are pushed when they appear', async () => {
    publish([]);
    const s = client.sotw();
    s.subscribe(TypeUrl.ClusterLoadAssignment, ['later']);
    await s.expectNone(300);
    s.subscribe(TypeUrl.Listener, ['l-later']);
    // LDS is full state: the answer (an empty set) tells the client the listener does not exist.
    const empty = await s.nextOf(TypeUrl.Listener);
    expect(empty.resources).toEqual([]);
    s.ack(empty);
    publish([cla('later', ep(1)), tcpListener('l-later', 10000, 'x')]);
    const first = await s.next();
    const second = await s.next();
    expect(first.typeUrl).toBe(TypeUrl.ClusterLoadAssignment);
    expect(names(first)).toEqual(['later']);
    expect(second.typeUrl).toBe(TypeUrl.Listener);
    expect(names(second)).toEqual(['l-later']);
  });

  it('LDS/CDS answer the first request even when the group has none of that type', async () => {
    publish([cla('a', ep(1))]);
    const s = client.sotw();
    s.subscribe(TypeUrl.Listener);
    const r = await s.nextOf(TypeUrl.Listener);
    expect(r.resources).toEqual([]);
    s.ack(r);
    await s.expectNone(200);
  });
});

describe('SotW: ADS ordering', () => {
  async function subscribedAds() {
    publish([edsCluster('c1'), cla('c1', ep(1)), apiListener('l1', 'r1'), routeConfig('r1', 'c1')]);
    const s = client.sotw();
    s.subscribe(TypeUrl.Listener);
    s.ack(await s.nextOf(TypeUrl.Listener));
    s.subscribe(TypeUrl.RouteConfiguration, ['r1']);
    s.ack(await s.nextOf(TypeUrl.RouteConfiguration));
    s.subscribe(TypeUrl.Cluster);
    s.ack(await s.nextOf(TypeUrl.Cluster));
    s.subscribe(TypeUrl.ClusterLoadAssignment, ['c1', 'c2']);
    s.ack(await s.nextOf(TypeUrl.ClusterLoadAssignment));
    await s.expectNone(200);
    return s;
  }

  it('pushes a change of all four types as CDS, EDS, LDS, RDS', async () => {
    const s = await subscribedAds();
    publish([edsCluster('c1'), edsCluster('c2'), cla('c1', ep(1)), cla('c2', ep(2)), apiListener('l1', 'r1'), apiListener('l2', 'r1'), routeConfig('r1', 'c2')]);
    const order: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await s.next();
      order.push(r.typeUrl);
      s.ack(r);
    }
    expect(order).toEqual([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener, TypeUrl.RouteConfiguration]);
    await s.expectNone(200);
  });

  it('holds later types back while an earlier type waits for its ACK', async () => {
    const s = await subscribedAds();
    publish([edsCluster('c1', { connectTimeout: '2s' }), cla('c1', ep(1)), tcpListener('l1', 10001, 'c1'), routeConfig('r1', 'c1')]);
    const cds = await s.nextOf(TypeUrl.Cluster);
    const eds = await s.nextOf(TypeUrl.ClusterLoadAssignment); // fresh EDS after the CDS change
    const lds = await s.nextOf(TypeUrl.Listener);
    s.ack(eds);
    s.ack(lds);
    await s.expectNone(200);
    // CDS is still unacknowledged: a new version touching CDS and LDS must not let LDS overtake it.
    publish([edsCluster('c1', { connectTimeout: '3s' }), cla('c1', ep(1)), tcpListener('l1', 10002, 'c1'), routeConfig('r1', 'c1')]);
    await s.expectNone(400);
    s.ack(cds);
    const next = [await s.next(), await s.next(), await s.next()].map((r) => r.typeUrl);
    expect(next).toEqual([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener]);
  });

  it('sends a fresh EDS for a changed cluster even when its endpoints did not change', async () => {
    const s = await subscribedAds();
    publish([edsCluster('c1', { lbPolicy: 'LEAST_REQUEST' }), cla('c1', ep(1)), apiListener('l1', 'r1'), routeConfig('r1', 'c1')]);
    const cds = await s.nextOf(TypeUrl.Cluster);
    expect(names(cds)).toEqual(['c1']);
    const eds = await s.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(eds)).toEqual(['c1']);
    expect(eds.resources[0]!.json()).toMatchObject({ cluster_name: 'c1' });
    s.ack(cds);
    s.ack(eds);
    await s.expectNone(300);
  });
});

describe('SotW: per-type services, node groups, Fetch', () => {
  it('serves each type on its own service and refuses other types there', async () => {
    publish([edsCluster('c1'), cla('c1', ep(1)), apiListener('l1', 'r1'), routeConfig('r1', 'c1')]);
    const cases: Array<[Parameters<XdsTestClient['sotw']>[0], string, string[]]> = [
      ['lds', TypeUrl.Listener, []],
      ['cds', TypeUrl.Cluster, []],
      ['eds', TypeUrl.ClusterLoadAssignment, ['c1']],
      ['rds', TypeUrl.RouteConfiguration, ['r1']],
    ];
    for (const [service, typeUrl, subscribe] of cases) {
      const s = client.sotw(service);
      s.subscribe(typeUrl, subscribe);
      const r = await s.nextOf(typeUrl);
      expect(r.resources.length).toBe(1);
      s.ack(r);
    }
    const wrong = client.sotw('lds');
    wrong.subscribe(TypeUrl.Cluster);
    const end = await wrong.ended();
    expect(end.code).toBe(3);
    expect(end.details).toContain('serves only type.googleapis.com/envoy.config.listener.v3.Listener');
    const services = srv.server.status().map((x) => x.service).sort();
    expect(services).toEqual(['cds', 'eds', 'lds', 'rds']);
  });

  it('gives each node group its own snapshot; a group without one gets nothing until it has one', async () => {
    await srv.close();
    srv = await startXdsServer({ grouper: (node) => String(node.metadata['tier'] ?? 'default') });
    const gold = new XdsTestClient(srv.address, { node: { id: 'g1', metadata: { tier: 'gold' } } });
    const silver = new XdsTestClient(srv.address, { node: { id: 's1', metadata: { tier: 'silver' } } });
    try {
      srv.cache.setSnapshot('gold', '1', [edsCluster('gold-only')]);
      const g = gold.sotw();
      const s = silver.sotw();
      g.subscribe(TypeUrl.Cluster);
      s.subscribe(TypeUrl.Cluster);
      expect(names(await g.nextOf(TypeUrl.Cluster))).toEqual(['gold-only']);
      await s.expectNone(400);
      srv.cache.setSnapshot('silver', '2', [edsCluster('silver-only')]);
      const r = await s.nextOf(TypeUrl.Cluster);
      expect(names(r)).toEqual(['silver-only']);
      expect(srv.server.status().map((x) => [x.node?.id, x.group]).sort()).toEqual([
        ['g1', 'gold'],
        ['s1', 'silver'],
      ]);
    } finally {
      gold.close();
      silver.close();
    }
  });

  it('lets the grouper create the snapshot lazily on first sight of a group', async () => {
    await srv.close();
    const started = await startXdsServer();
    srv = started;
    const lazyServer = await startXdsServer({
      cache: started.cache,
      grouper: (node) => {
        const group = `lazy-${node.cluster}`;
        if (!started.cache.snapshot(group)) started.cache.setSnapshot(group, '1', [edsCluster(`for-${node.cluster}`)]);
        return group;
      },
    });
    const c = new XdsTestClient(lazyServer.address, { node: { id: 'n', cluster: 'blue' } });
    try {
      const s = c.sotw();
      s.subscribe(TypeUrl.Cluster);
      expect(names(await s.nextOf(TypeUrl.Cluster))).toEqual(['for-blue']);
    } finally {
      c.close();
      await lazyServer.close();
    }
  });

  it('a grouper that throws refuses the stream with its message', async () => {
    await srv.close();
    srv = await startXdsServer({
      grouper: (node) => {
        throw new Error(`no selector matches node ${node.id}`);
      },
    });
    const c = new XdsTestClient(srv.address, { node: { id: 'stranger' } });
    try {
      const s = c.sotw();
      s.subscribe(TypeUrl.Cluster);
      const end = await s.ended();
      expect(end.code).toBe(3);
      expect(end.details).toContain('no selector matches node stranger');
    } finally {
      c.close();
    }
  });

  it('Fetch (REST-style polling) is UNIMPLEMENTED with a pointer to the streaming methods', async () => {
    const res = await client.unary('/envoy.service.cluster.v3.ClusterDiscoveryService/FetchClusters', encodeSotwRequest({ type_url: TypeUrl.Cluster }));
    expect('error' in res && res.error.code).toBe(12);
    expect('error' in res && res.error.details).toContain('StreamClusters');
  });
});
