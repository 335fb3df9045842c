// The agent's xDS client against the real xDS server on loopback: Delta with wildcard LDS/CDS
// and EDS for the handler's names, ACKs, NACKs whose error_detail reaches the server's status
// view while the good resources stay applied, a retry that ACKs a NACKed version once it
// applies, reconnect with backoff keeping the last config and resuming with
// initial_resource_versions, and the fallback to SotW when the server has no Delta.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentStartError, xdsTlsCredentials } from '../../src/agent/agent.js';
import { Backoff } from '../../src/agent/backoff.js';
import { decodeState, type ResourceView } from '../../src/agent/decode.js';
import { XdsClient, type ApplyOutcome, type ApplyTrigger } from '../../src/agent/xds-client.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { TypeUrl, type XdsResource } from '../../src/xds/resources.js';
import { XdsServer } from '../../src/xds/server.js';
import { protoRegistry } from '../../src/proto/registry.js';
import { silentLogger } from '../../src/util/log.js';
import { cla, edsCluster, startXdsServer, tcpListener, type RunningServer } from '../support/xds-fixtures.js';

const NODE = { id: 'agent-test', cluster: 'edge', metadata: { rack: 'r1' } };

interface Recorder {
  views: Array<{ trigger: ApplyTrigger; view: ResourceView }>;
  /** Listener names the handler refuses. */
  refuse: Set<string>;
  handler(view: ResourceView, trigger: ApplyTrigger): Promise<ApplyOutcome>;
  waitFor(what: string, cond: (v: ResourceView) => boolean, ms?: number): Promise<ResourceView>;
}

/** A handler that decodes like the agent, refuses chosen listeners and records what it saw. */
function recorder(): Recorder {
  const r: Recorder = {
    views: [],
    refuse: new Set(),
    async handler(view, trigger) {
      r.views.push({ view, trigger });
      const d = decodeState(view);
      const problems = new Map<string, string[]>();
      const refused = d.state.listeners.filter((l) => r.refuse.has(l.name)).map((l) => `listener "${l.name}": interface "eth9" not found on node agent-test (have: lo)`);
      if (refused.length) problems.set(TypeUrl.Listener, refused);
      return { problems, edsNames: d.edsNames };
    },
    async waitFor(what, cond, ms = 5000) {
      const until = Date.now() + ms;
      for (;;) {
        const last = r.views[r.views.length - 1];
        if (last && cond(last.view)) return last.view;
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
        await new Promise((res) => setTimeout(res, 20));
      }
    },
  };
  return r;
}

function resources(version: number): XdsResource[] {
  return [edsCluster('c1'), cla('c1', [{ address: '10.0.0.1', port: 80 + version }]), tcpListener('a', 7000, 'c1'), tcpListener('b', 7001 + version, 'c1')];
}

const endpointPort = (v: ResourceView) => ((((v.assignments.get('c1') as any)?.endpoints?.[0]?.lb_endpoints?.[0]?.endpoint?.address?.socket_address?.port_value) as number | undefined) ?? -1); // eslint-disable-line @typescript-eslint/no-explicit-any

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

function client(target: string, rec: Recorder, extra: Partial<ConstructorParameters<typeof XdsClient>[0]> = {}): XdsClient {
  const c = new XdsClient({ target, node: NODE, handler: (v, t) => rec.handler(v, t), logger: silentLogger(), backoff: { initialMs: 50, maxMs: 200 }, ...extra });
  cleanup.push(() => c.close());
  return c;
}

async function server(cache = new SnapshotCache(), port = 0): Promise<RunningServer> {
  const s = port === 0 ? await startXdsServer({ cache }) : await (async () => {
    const registry = new Registry();
    const srv = new XdsServer({ cache, registry });
    const p = await srv.listen(port, '127.0.0.1');
    return { server: srv, cache, registry, port: p, address: `127.0.0.1:${p}`, close: () => srv.close() };
  })();
  cleanup.push(() => s.close());
  return s;
}

describe('Backoff', () => {
  it('doubles its ceiling up to the cap, draws from the upper half, and starts over after a reset', () => {
    const lo = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    expect([lo.next(), lo.next(), lo.next(), lo.next(), lo.next(), lo.next()]).toEqual([50, 100, 200, 400, 500, 500]);
    const hi = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
    expect([hi.next(), hi.next(), hi.next()]).toEqual([100, 200, 400]);
    expect(hi.failures).toBe(3);
    hi.reset();
    expect(hi.next()).toBe(100);
    expect(() => new Backoff({ initialMs: 0 })).toThrow(/0 < initialMs <= maxMs/);
  });
});

describe('xDS client over Delta', () => {
  it('subscribes LDS and CDS by wildcard and EDS by the handler names, and ACKs what applied', async () => {
    const s = await server();
    s.cache.setSnapshot('default', '1', resources(1));
    const rec = recorder();
    const registry = new Registry();
    const c = client(s.address, rec, { registry });
    c.start();
    const view = await rec.waitFor('listeners, cluster and endpoints', (v) => v.listeners.size === 2 && v.clusters.size === 1 && endpointPort(v) === 81);
    expect([...view.listeners.keys()].sort()).toEqual(['a', 'b']);
    await until('ACKs of all three types', () => c.status().types.every((t) => t.lastAck?.version === '1'));
    const st = c.status();
    expect(st).toMatchObject({ connected: true, protocol: 'delta' });
    expect(st.types.find((t) => t.typeUrl === TypeUrl.ClusterLoadAssignment)!.subscription).toEqual(['c1']);
    const srv = s.server.status();
    expect(srv).toHaveLength(1);
    expect(srv[0]).toMatchObject({ protocol: 'delta', service: 'ads', node: { id: 'agent-test', cluster: 'edge' } });
    for (const t of srv[0]!.types) expect(t.lastNack).toBeNull();
    const text = await registry.metrics();
    expect(text).toMatch(/^exds_xds_connected 1$/m);
    expect(text).toMatch(/^exds_xds_acks_total\{type="Listener"\} 1$/m);
    expect(text).toMatch(/^exds_xds_version_info\{type="Listener",version="1"\} 1$/m);
  });

  it('NACKs with the handler problems, keeps the good resources, and ACKs the version once a retry applies it', async () => {
    const s = await server();
    s.cache.setSnapshot('default', '1', resources(1));
    const rec = recorder();
    rec.refuse.add('b');
    const c = client(s.address, rec);
    c.start();
    await until('a NACK of LDS', () => c.status().types.find((t) => t.typeUrl === TypeUrl.Listener)!.lastNack !== undefined);
    const l = c.status().types.find((t) => t.typeUrl === TypeUrl.Listener)!;
    expect(l.lastNack!.message).toBe('listener "b": interface "eth9" not found on node agent-test (have: lo)');
    expect(l.version).toBe(''); // nothing of LDS accepted yet
    expect(c.view().listeners.size).toBe(2); // the good one is applied; the handler decides per listener
    await until('the NACK in the server status', () => s.server.status()[0]?.types.find((t) => t.typeUrl === TypeUrl.Listener)?.lastNack !== null);
    expect(s.server.status()[0]!.types.find((t) => t.typeUrl === TypeUrl.Listener)!.lastNack).toMatchObject({ message: expect.stringContaining('listener "b": interface "eth9" not found') });
    // The cause goes away: a retry applies the same version and ACKs it.
    rec.refuse.clear();
    await c.reapply();
    const after = c.status().types.find((t) => t.typeUrl === TypeUrl.Listener)!;
    expect(after.lastAck?.version).toBe('1');
    expect(after.version).toBe('1');
    expect(rec.views[rec.views.length - 1]!.trigger).toEqual({ kind: 'retry' });
    // A new version applies and is ACKed on the same stream.
    s.cache.setSnapshot('default', '2', resources(2));
    await rec.waitFor('version 2', (v) => endpointPort(v) === 82 && v.listeners.has('b'));
    await until('ACK of version 2', () => c.status().types.find((t) => t.typeUrl === TypeUrl.Listener)!.lastAck?.version === '2');
  });

  it('keeps the last good config while the server is away, reconnects with backoff and resumes with initial_resource_versions', async () => {
    const cache = new SnapshotCache();
    const s = await server(cache);
    cache.setSnapshot('default', '1', resources(1));
    const rec = recorder();
    const c = client(s.address, rec);
    c.start();
    await until('ACKs', () => c.status().types.every((t) => t.lastAck?.version === '1'));
    await s.close();
    await until('disconnected', () => !c.status().connected);
    expect(c.view().listeners.size).toBe(2); // still in force
    await new Promise((r) => setTimeout(r, 300)); // a few failed attempts
    expect(c.status().failures).toBeGreaterThan(0);
    // Back on the same port with one listener changed and one gone.
    const cache2 = new SnapshotCache();
    cache2.setSnapshot('default', '3', [edsCluster('c1'), cla('c1', [{ address: '10.0.0.1', port: 81 }]), tcpListener('a', 7100, 'c1')]);
    const s2 = await server(cache2, s.port);
    await rec.waitFor('the resumed config', (v) => v.listeners.size === 1 && (v.listeners.get('a') as any).address.socket_address.port_value === 7100); // eslint-disable-line @typescript-eslint/no-explicit-any
    await until('ACK of version 3', () => c.status().types.find((t) => t.typeUrl === TypeUrl.Listener)!.lastAck?.version === '3');
    const types = s2.server.status()[0]!.types;
    // The client said what it held: only the changed listener came again (plus b's removal);
    // the unchanged cluster and endpoints were not resent.
    expect(types.find((t) => t.typeUrl === TypeUrl.Listener)!.lastSent).toMatchObject({ resources: 1, removed: 1 });
    expect(types.find((t) => t.typeUrl === TypeUrl.Cluster)!.lastSent).toMatchObject({ resources: 0 });
    expect(c.status().failures).toBe(0);
  });
});

describe('xDS client over SotW', () => {
  /** A front that serves only SotW ADS (Delta is UNIMPLEMENTED) and relays to the real server. */
  async function sotwOnlyFront(backend: string): Promise<string> {
    const upstream = new grpc.Client(backend, grpc.credentials.createInsecure());
    const front = new grpc.Server();
    const path = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
    const id = (b: Buffer) => b;
    front.register(
      path,
      (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        const up = upstream.makeBidiStreamRequest(path, id, id);
        call.on('data', (b: Buffer) => up.write(b));
        call.on('end', () => up.end());
        call.on('cancelled', () => up.cancel());
        up.on('data', (b: Buffer) => call.write(b));
        up.on('status', () => call.end());
        up.on('error', () => undefined);
      },
      id,
      id,
      'bidi',
    );
    const port = await new Promise<number>((res, rej) => front.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    cleanup.push(() => {
      front.forceShutdown();
      upstream.close();
    });
    return `127.0.0.1:${port}`;
  }

  it('falls back to SotW when Delta is UNIMPLEMENTED, and ACKs and NACKs there too', async () => {
    const s = await server();
    s.cache.setSnapshot('default', '1', resources(1));
    const target = await sotwOnlyFront(s.address);
    const rec = recorder();
    rec.refuse.add('a');
    const c = client(target, rec);
    c.start();
    await rec.waitFor('the config over SotW', (v) => v.listeners.size === 2 && endpointPort(v) === 81);
    await until('CDS and EDS ACKed, LDS NACKed', () => {
      const t = c.status().types;
      return t.find((x) => x.typeUrl === TypeUrl.Cluster)!.lastAck?.version === '1' && t.find((x) => x.typeUrl === TypeUrl.ClusterLoadAssignment)!.lastAck?.version === '1' && t.find((x) => x.typeUrl === TypeUrl.Listener)!.lastNack !== undefined;
    });
    expect(c.status().protocol).toBe('sotw');
    const srv = s.server.status()[0]!;
    expect(srv.protocol).toBe('sotw');
    await until('the NACK in the server status', () => s.server.status()[0]!.types.find((t) => t.typeUrl === TypeUrl.Listener)!.lastNack !== null);
    expect(s.server.status()[0]!.types.find((t) => t.typeUrl === TypeUrl.Listener)!.lastNack).toMatchObject({ message: expect.stringContaining('listener "a"') });
    // Endpoints change: SotW EDS carries the changed assignment only.
    rec.refuse.clear();
    s.cache.setSnapshot('default', '2', resources(2));
    await rec.waitFor('version 2 over SotW', (v) => endpointPort(v) === 82 && v.listeners.size === 2);
    await until('ACK of LDS version 2', () => c.status().types.find((t) => t.typeUrl === TypeUrl.Listener)!.lastAck?.version === '2');
  });
});

describe('xDS client over mTLS', () => {
  it('connects with the agent\'s client certificate, and a certificate from another CA is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'exds-agent-tls-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const openssl = (...args: string[]) => promisify(execFile)('openssl', args, { cwd: dir });
    const ca = async (name: string) => openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`);
    const issue = async (name: string, by: string, ext: string) => {
      writeFileSync(join(dir, `${name}.ext`), ext);
      await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${by}.crt`, '-CAkey', `${by}.key`, '-CAcreateserial', '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`);
    };
    await ca('ca');
    await ca('rogue');
    await issue('server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    await issue('agent-1', 'ca', 'extendedKeyUsage=clientAuth\n');
    await issue('intruder', 'rogue', 'extendedKeyUsage=clientAuth\n');
    const pem = (f: string) => readFileSync(join(dir, f));
    const s = await startXdsServer({ tls: { cert: pem('server.crt'), key: pem('server.key'), clientCa: pem('ca.crt') } });
    cleanup.push(() => s.close());
    s.cache.setSnapshot('default', '1', resources(1));
    const files = (name: string) => ({ cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), ca: join(dir, 'ca.crt') });
    const rec = recorder();
    const c = client(s.address, rec, { credentials: xdsTlsCredentials(files('agent-1')) });
    c.start();
    await rec.waitFor('the config over mTLS', (v) => v.listeners.size === 2);
    expect(s.server.status()[0]).toMatchObject({ peerCertificate: 'agent-1' });
    const bad = client(s.address, recorder(), { credentials: xdsTlsCredentials(files('intruder')) });
    bad.start();
    await until('a failed attempt', () => bad.status().failures > 0);
    expect(bad.status()).toMatchObject({ connected: false, lastError: expect.stringMatching(/UNAVAILABLE/) });
    expect(s.server.status()).toHaveLength(1);
    expect(() => xdsTlsCredentials({ ...files('agent-1'), key: join(dir, 'missing.key') })).toThrow(AgentStartError);
    expect(() => xdsTlsCredentials({ ...files('agent-1'), key: join(dir, 'missing.key') })).toThrow(/^--tls-key .*missing\.key: ENOENT/);
  }, 30_000);
});

describe('listener warming', () => {
  it('holds a listener update until the endpoints of newly subscribed clusters arrive', async () => {
    // A Delta ADS server that answers LDS at once and EDS only after 300 ms.
    const reg = protoRegistry();
    const reqType = reg.type('envoy.service.discovery.v3.DeltaDiscoveryRequest');
    const respType = reg.type('envoy.service.discovery.v3.DeltaDiscoveryResponse');
    const byType = new Map<string, XdsResource[]>();
    for (const r of resources(1)) byType.set(r.typeUrl, [...(byType.get(r.typeUrl) ?? []), r]);
    const respond = (typeUrl: string, n: number) =>
      Buffer.from(respType.encode(respType.fromObject({ type_url: typeUrl, nonce: String(n), system_version_info: '1', resources: (byType.get(typeUrl) ?? []).map((r) => ({ name: r.name, version: '1', resource: { type_url: typeUrl, value: Buffer.from(r.bytes) } })) })).finish());
    const front = new grpc.Server();
    const id = (b: Buffer) => b;
    front.register(
      '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
      (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        let n = 0;
        call.on('data', (b: Buffer) => {
          const req = reqType.toObject(reqType.decode(b)) as { type_url: string; response_nonce?: string; resource_names_subscribe?: string[] };
          if (req.response_nonce || !(req.resource_names_subscribe ?? []).length) return; // ACKs
          const delay = req.type_url === TypeUrl.ClusterLoadAssignment ? 300 : 0;
          setTimeout(() => call.write(respond(req.type_url, ++n)), delay);
        });
        call.on('end', () => call.end());
      },
      id,
      id,
      'bidi',
    );
    const port = await new Promise<number>((res, rej) => front.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    cleanup.push(() => front.forceShutdown());
    const rec = recorder();
    const c = client(`127.0.0.1:${port}`, rec);
    c.start();
    await rec.waitFor('all three types', (v) => v.listeners.size === 2 && endpointPort(v) === 81);
    const triggers = rec.views.map((v) => (v.trigger.kind === 'response' ? v.trigger.typeUrl : 'retry'));
    // The listener response came before the endpoints, but was applied after them.
    expect(triggers).toEqual([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener]);
    expect(endpointPort(rec.views[2]!.view)).toBe(81);
  });
});
