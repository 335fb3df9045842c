// Bad and abusive clients: each gets a clear gRPC status or a reset, the server keeps serving, and
// well-behaved streams are not slowed. Also proves that many streams share one encoding.
import { afterEach, describe, expect, it } from 'vitest';
import { encodeJson } from '../../src/proto/json.js';
import { TypeUrl, type XdsResource } from '../../src/xds/resources.js';
import { METHODS, XdsTestClient, encodeSotwRequest, openNonReadingStream } from '../support/xds-client.js';
import { cla, edsCluster, startXdsServer, type RunningServer } from '../support/xds-fixtures.js';

let srv: RunningServer | undefined;
const clients: XdsTestClient[] = [];
const newClient = (id: string): XdsTestClient => {
  const c = new XdsTestClient(srv!.address, { node: { id, cluster: 'test' } });
  clients.push(c);
  return c;
};

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await srv?.close();
  srv = undefined;
});

async function metric(name: string): Promise<string> {
  return srv!.registry.getSingleMetricAsString(name);
}

/** A healthy ADS stream that must keep working next to the bad ones. */
async function healthyStream(): Promise<ReturnType<XdsTestClient['sotw']>> {
  const s = newClient('healthy').sotw();
  s.subscribe(TypeUrl.Cluster);
  s.ack(await s.nextOf(TypeUrl.Cluster));
  return s;
}

describe('bad requests', () => {
  it('unknown type_url, empty and control-character names, garbage bytes: INVALID_ARGUMENT naming the problem', async () => {
    srv = await startXdsServer();
    srv.cache.setSnapshot('default', '1', [edsCluster('c1')]);
    const healthy = await healthyStream();

    const unknown = newClient('u').sotw();
    unknown.subscribe('type.googleapis.com/envoy.config.nope.v3.Nope', ['x']);
    expect(await unknown.ended()).toMatchObject({ code: 3, details: expect.stringContaining('unknown type_url "type.googleapis.com/envoy.config.nope.v3.Nope"') });

    const missing = newClient('m').sotw();
    missing.send({ typeUrl: '', resourceNames: ['x'] });
    expect(await missing.ended()).toMatchObject({ code: 3, details: expect.stringContaining('type_url is required') });

    const empty = newClient('e').sotw();
    empty.subscribe(TypeUrl.ClusterLoadAssignment, ['ok', '']);
    expect(await empty.ended()).toMatchObject({ code: 3, details: expect.stringContaining('resource_names[1] is empty') });

    const control = newClient('c').delta();
    control.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: ['bad\u0001name'] });
    expect(await control.ended()).toMatchObject({ code: 3, details: expect.stringContaining('resource_names_subscribe[0]') });

    const garbage = newClient('g').sotw();
    garbage.sendRaw(Buffer.from([0x0a, 0x64, 0x61, 0x62])); // version_info claims 100 bytes, 2 follow
    expect(await garbage.ended()).toMatchObject({ code: 3, details: expect.stringContaining('malformed DiscoveryRequest') });

    srv.cache.setSnapshot('default', '2', [edsCluster('c1'), edsCluster('c2')]);
    expect((await healthy.nextOf(TypeUrl.Cluster)).resources.length).toBe(2);
    expect(await metric('xds_rejected_requests_total')).toMatch(/reason="unknown_type_url"} 1/);
  });

  it('a 100k-name subscription is refused with RESOURCE_EXHAUSTED and the limit, without slowing others', async () => {
    srv = await startXdsServer();
    srv.cache.setSnapshot('default', '1', [edsCluster('c1')]);
    const healthy = await healthyStream();
    const huge = Array.from({ length: 100_000 }, (_, i) => `n${i}`);

    const sotw = newClient('big-sotw').sotw();
    sotw.subscribe(TypeUrl.ClusterLoadAssignment, huge);
    const end = await sotw.ended(10_000);
    expect(end.code).toBe(8);
    expect(end.details).toContain('100000 names');
    expect(end.details).toContain('the limit is 50000');

    // Delta: the limit also bounds what a stream accumulates over several requests.
    const delta = newClient('big-delta').delta();
    delta.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: huge.slice(0, 40_000) });
    delta.send({ typeUrl: TypeUrl.ClusterLoadAssignment, subscribe: huge.slice(40_000, 80_000) });
    const dend = await delta.ended(10_000);
    expect(dend.code).toBe(8);
    expect(dend.details).toContain('now subscribes to 80000 names');

    const t0 = Date.now();
    srv.cache.setSnapshot('default', '2', [edsCluster('c1'), edsCluster('c2')]);
    await healthy.nextOf(TypeUrl.Cluster);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('a configurable name limit applies per request', async () => {
    srv = await startXdsServer({ limits: { maxNamesPerRequest: 10 } });
    const s = newClient('eleven').sotw();
    s.subscribe(TypeUrl.ClusterLoadAssignment, Array.from({ length: 11 }, (_, i) => `c${i}`));
    expect(await s.ended()).toMatchObject({ code: 8, details: expect.stringContaining('the limit is 10 per request') });
  });
});

describe('a client that never reads', () => {
  it('is reset after the stall timeout and counted, while another stream keeps getting updates promptly', async () => {
    srv = await startXdsServer({ limits: { stallTimeoutMs: 1500, maxQueuedBytesPerStream: 256 * 1024 } });
    // ~4 MB of clusters: far beyond the HTTP/2 flow-control window the silent client grants.
    const padding = 'x'.repeat(2000);
    const big = (rev: number): XdsResource[] =>
      Array.from({ length: 2000 }, (_, i) => ({
        typeUrl: TypeUrl.Cluster,
        name: `big-${i}`,
        bytes: encodeJson('envoy.config.cluster.v3.Cluster', { name: `big-${i}`, alt_stat_name: `${padding}-${rev}`, connect_timeout: '1s' }),
      }));
    srv.cache.setSnapshot('default', '1', big(1));
    const silent = await openNonReadingStream(srv.address, METHODS.ads.sotw, encodeSotwRequest({ node: { id: 'silent' }, type_url: TypeUrl.Cluster }));
    try {
      const healthy = newClient('reader').sotw();
      healthy.subscribe(TypeUrl.ClusterLoadAssignment, ['e']);
      for (let rev = 2; rev <= 6; rev++) {
        const t0 = Date.now();
        srv.cache.setSnapshot('default', String(rev), [...big(rev), cla('e', [{ address: '10.9.0.1', port: rev }])]);
        const r = await healthy.nextOf(TypeUrl.ClusterLoadAssignment, 2000);
        expect(Date.now() - t0).toBeLessThan(500);
        healthy.ack(r);
        await new Promise((res) => setTimeout(res, 150));
      }
      const closed = await Promise.race([silent.closed, new Promise<null>((res) => setTimeout(() => res(null), 5000))]);
      expect(closed).not.toBeNull();
      expect(closed!.rstCode).toBe(11); // ENHANCE_YOUR_CALM → RESOURCE_EXHAUSTED in gRPC clients
      expect(await metric('xds_slow_streams_cancelled_total')).toMatch(/xds_slow_streams_cancelled_total 1/);
      expect(srv.server.status().map((s) => s.node?.id)).toEqual(['reader']);
    } finally {
      silent.destroy();
    }
  });
});

describe('encode once', () => {
  it('many SotW and Delta streams, in two node groups, share one encoding per resource version', async () => {
    srv = await startXdsServer({ grouper: (n) => String(n.metadata['g'] ?? 'a') });
    const clusters = Array.from({ length: 100 }, (_, i) => edsCluster(`c${i}`));
    srv.cache.setSnapshot('a', '1', clusters);
    srv.cache.setSnapshot('b', '1', clusters);
    const streams: Array<Promise<void>> = [];
    const conns = Array.from({ length: 4 }, (_, i) => newClient(`conn-${i}`));
    const open = 48;
    for (let i = 0; i < open; i++) {
      const c = conns[i % conns.length]!;
      const node = { id: `n${i}`, metadata: { g: i % 2 ? 'a' : 'b' } };
      if (i % 3 === 0) {
        const d = c.delta('ads', node);
        d.send({ typeUrl: TypeUrl.Cluster, subscribe: ['*'] });
        streams.push(d.nextOf(TypeUrl.Cluster).then((r) => (expect(r.resources.length).toBe(100), d.ack(r))));
      } else {
        const s = c.sotw('ads', node);
        s.subscribe(TypeUrl.Cluster);
        streams.push(s.nextOf(TypeUrl.Cluster).then((r) => (expect(r.resources.length).toBe(100), s.ack(r))));
      }
    }
    await Promise.all(streams);
    expect(srv.cache.stats().encodes).toEqual({ any: 100, delta: 100 });
    expect(await metric('xds_responses_total')).toMatch(/protocol="sotw"} 32/);

    // One changed cluster: one more encoding, however many streams receive it.
    const changed = [...clusters];
    changed[7] = edsCluster('c7', { connectTimeout: '7s' });
    srv.cache.setSnapshot('a', '2', changed);
    srv.cache.setSnapshot('b', '2', changed);
    await new Promise((r) => setTimeout(r, 500));
    expect(srv.cache.stats().encodes).toEqual({ any: 101, delta: 101 });
    expect(await metric('xds_resource_encodes_total')).toContain('xds_resource_encodes_total{kind="any"} 101');
  });
});
