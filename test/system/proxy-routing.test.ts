// The embedded proxy as its own process in a middlebox namespace, between a client namespace and
// two backend namespaces: SNI routing with real TLS clients and servers, round robin, connect
// timeout with a retry on the next endpoint, active health checks taking a stopped backend out
// and back in, and a listener that cannot bind failing alone.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DesiredChain, DesiredCluster, DesiredListener, DesiredState } from '../../src/agent/desired-state.js';
import type { Host } from '../support/netns.js';
import { Topology } from '../support/netns.js';
import { sample, startProxyProcess, type ProxyProcess } from '../support/proxy-process.js';
import { runClient, startServer } from '../support/traffic.js';

const TLS_TOOL = fileURLToPath(new URL('../support/proxy-tls-tool.mjs', import.meta.url));
const BLACKHOLE = '10.99.0.1'; // routed to b1, which does not forward: SYNs vanish

let topo: Topology;
let client: Host;
let mb: Host;
let b1: Host;
let b2: Host;
let mbAddr: string;
let b1Addr: string;
let b2Addr: string;
let certDir: string;
let proxy: ProxyProcess | undefined;

function run(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: ${err}`))));
  });
}

/** A self-signed certificate for `dns` (its own trust anchor). */
async function cert(name: string, dns: string): Promise<void> {
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${dns.replace('*', 'wild')}`, '-addext', `subjectAltName=DNS:${dns}`], certDir);
}

function tlsTool(host: Host, args: string[]): { lines: AsyncIterable<string>; done: Promise<Record<string, unknown>[]> } {
  const child = host.spawn(process.execPath, [TLS_TOOL, ...args]);
  const events: Record<string, unknown>[] = [];
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const rl = createInterface({ input: child.stdout! });
  rl.on('line', (l) => events.push(JSON.parse(l) as Record<string, unknown>));
  const done = new Promise<Record<string, unknown>[]>((resolve, reject) =>
    child.on('exit', (code) => (code === 0 ? resolve(events) : reject(new Error(`tls tool ${args[0]} exited ${code}: ${err} ${JSON.stringify(events)}`)))),
  );
  return { lines: rl, done };
}

async function tlsServe(host: Host, port: number, name: string, certName: string): Promise<void> {
  const t = tlsTool(host, ['serve', '--port', String(port), '--cert', join(certDir, `${certName}.crt`), '--key', join(certDir, `${certName}.key`), '--name', name]);
  t.done.catch(() => undefined); // killed at the end
  for await (const line of t.lines) if (line.includes('listening')) return;
}

async function tlsConnect(servername: string, ca: string, port: number): Promise<Record<string, unknown>> {
  const events = await tlsTool(client, ['connect', '--host', mbAddr, '--port', String(port), '--servername', servername, '--ca', join(certDir, `${ca}.crt`), '--send', '300000']).done;
  return events[0]!;
}

const cluster = (name: string, endpoints: Array<[string, number]>, extra: Partial<DesiredCluster> = {}): DesiredCluster => ({
  name,
  lbPolicy: 'round_robin',
  connectTimeoutMs: 1000,
  endpoints: endpoints.map(([address, port]) => ({ address, port, weight: 1, health: 'healthy' })),
  ...extra,
});
const chain = (clusterName: string, serverNames: string[] = [], extra: Partial<DesiredChain> = {}): DesiredChain => ({
  name: serverNames.length ? `route-${clusterName}` : 'default',
  serverNames,
  cluster: clusterName,
  mode: 'userspace',
  statPrefix: clusterName,
  idleTimeoutMs: 0,
  maxConnectAttempts: 1,
  ...extra,
});
const listener = (name: string, port: number, chains: DesiredChain[], extra: Partial<DesiredListener> = {}): DesiredListener => ({
  name,
  address: '0.0.0.0',
  ports: [{ start: port, end: port }],
  mode: 'userspace',
  sniInspection: false,
  chains,
  dropRules: [],
  ...extra,
});

async function waitFor(what: string, cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  topo = await Topology.create({
    label: 'proxy',
    hosts: ['client', 'mb', 'b1', 'b2'],
    links: [
      { a: 'client', b: 'mb' },
      { a: 'mb', b: 'b1' },
      { a: 'mb', b: 'b2' },
    ],
  });
  [client, mb, b1, b2] = ['client', 'mb', 'b1', 'b2'].map((h) => topo.host(h)) as [Host, Host, Host, Host];
  mbAddr = topo.iface('mb', 'client').ipv4;
  b1Addr = topo.iface('b1', 'mb').ipv4;
  b2Addr = topo.iface('b2', 'mb').ipv4;
  await mb.exec('ip', ['route', 'add', `${BLACKHOLE}/32`, 'via', b1Addr]);
  certDir = mkdtempSync(join(tmpdir(), 'exds-proxy-certs-'));
  await cert('one', 'one.sni.test');
  await cert('two', '*.two.test');
  await tlsServe(b1, 8443, 'one', 'one');
  await tlsServe(b2, 8443, 'two', 'two');
}, 60_000);

afterAll(async () => {
  await proxy?.stop().catch(() => undefined);
  await topo?.destroy();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

describe('embedded proxy in a middlebox namespace', () => {
  it('routes real TLS clients by SNI to two clusters, and other clients to the fallback', async () => {
    const fallback = await startServer(b2, { port: 9001, send: 1000, waitFirst: true });
    const state: DesiredState = {
      clusters: [cluster('one', [[b1Addr, 8443]]), cluster('two', [[b2Addr, 8443]]), cluster('fallback', [[b2Addr, 9001]])],
      listeners: [listener('sni', 443, [chain('one', ['one.sni.test']), chain('two', ['*.two.test']), chain('fallback')], { sniInspection: true })],
    };
    proxy = await startProxyProcess(mb, { state });
    expect(proxy.results).toEqual([{ name: 'sni', ok: true }]);

    const one = await tlsConnect('one.sni.test', 'one', 443);
    expect(one).toMatchObject({ name: 'one', authorized: true, sent: 300000, echoed: 300000, echoOk: true });
    const two = await tlsConnect('api.two.test', 'two', 443);
    expect(two).toMatchObject({ name: 'two', authorized: true, echoOk: true });
    // Plain TCP on the SNI port goes to the fallback cluster.
    const [plain] = await runClient(client, { host: mbAddr, port: 443, send: 5000 });
    const [served] = await fallback.done;
    expect(plain!.recv).toBe(1000);
    expect(plain!.sentSha).toBe(served!.recvSha);
    expect(plain!.recvSha).toBe(served!.sentSha);

    const m = await proxy.metrics();
    expect(sample(m, 'exds_proxy_sni_total', { listener: 'sni', outcome: 'sni_found' })).toBe(2);
    expect(sample(m, 'exds_proxy_sni_total', { listener: 'sni', outcome: 'not_tls' })).toBe(1);
    // Every line of a connection carries its id.
    const lines = await proxy.logLines('"connection closed"', 3);
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(JSON.parse(l)).toHaveProperty('conn');
    await proxy.stop();
    proxy = undefined;
  });

  it('balances round robin across two backends, bytes intact both ways', async () => {
    const s1 = await startServer(b1, { port: 9000, conns: 5, send: 20000 });
    const s2 = await startServer(b2, { port: 9000, conns: 5, send: 20000 });
    proxy = await startProxyProcess(mb, { state: { clusters: [cluster('rr', [[b1Addr, 9000], [b2Addr, 9000]])], listeners: [listener('rr', 4444, [chain('rr')])] } });
    const results = await runClient(client, { host: mbAddr, port: 4444, conns: 10, send: 30000 });
    const served = [...(await s1.done), ...(await s2.done)];
    expect(served).toHaveLength(10); // each backend took exactly its 5
    for (const r of results) {
      expect(r.recv).toBe(20000);
      expect(served.some((s) => s.recvSha === r.sentSha && s.sentSha === r.recvSha)).toBe(true);
    }
    const st = await proxy.stats();
    expect(st.clusters[0]!.endpoints.map((e) => e.selected)).toEqual([5, 5]);
    await proxy.stop();
    proxy = undefined;
  });

  it('gives up on an endpoint after connect_timeout and retries the next one', async () => {
    const s2 = await startServer(b2, { port: 9100, conns: 6, send: 100 });
    const state: DesiredState = {
      clusters: [cluster('slow', [[BLACKHOLE, 9100], [b2Addr, 9100]], { connectTimeoutMs: 300 })],
      listeners: [listener('retry', 4445, [chain('slow', [], { maxConnectAttempts: 2 })])],
    };
    proxy = await startProxyProcess(mb, { state });
    const started = Date.now();
    const results = await runClient(client, { host: mbAddr, port: 4445, conns: 6, send: 100 });
    await s2.done;
    for (const r of results) expect(r.recv).toBe(100);
    const m = await proxy.metrics();
    const timeouts = sample(m, 'exds_proxy_connect_failures_total', { cluster: 'slow', reason: 'timeout' });
    expect(timeouts).toBeGreaterThanOrEqual(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(timeouts * 300);
    expect(proxy.logs()).toMatch(/"reason":"timeout".*"upstream connect attempt failed"/);
    await proxy.stop();
    proxy = undefined;
  });

  it('health checks take a stopped backend out of rotation and bring it back after it restarts', async () => {
    const serve = (h: Host) => startServer(h, { port: 9200, conns: 100_000, send: 10 });
    (await serve(b1)).done.catch(() => undefined); // killed below
    (await serve(b2)).done.catch(() => undefined);
    const hc = { intervalMs: 200, timeoutMs: 200, unhealthyThreshold: 2, healthyThreshold: 2 };
    proxy = await startProxyProcess(mb, { state: { clusters: [cluster('hc', [[b1Addr, 9200], [b2Addr, 9200]], { healthCheck: hc })], listeners: [listener('hc', 4446, [chain('hc')])] } });
    const p = proxy;
    const health = async () => (await p.stats()).clusters[0]!.endpoints.map((e) => e.activeHealth).join(',');
    const selected = async () => (await p.stats()).clusters[0]!.endpoints.map((e) => e.selected);
    await waitFor('both backends healthy', async () => (await health()) === 'healthy,healthy');

    await b1.killAll();
    await waitFor('b1 unhealthy', async () => (await health()) === 'unhealthy,healthy', 5000);
    const before = await selected();
    const during = await runClient(client, { host: mbAddr, port: 4446, conns: 10, send: 10 });
    for (const r of during) expect(r.recv).toBe(10); // one attempt each: none went to the dead backend
    const after = await selected();
    expect([after[0]! - before[0]!, after[1]! - before[1]!]).toEqual([0, 10]);
    const m = await p.metrics();
    expect(sample(m, 'exds_endpoint_healthy', { cluster: 'hc', endpoint: `${b1Addr}:9200` })).toBe(0);
    expect(sample(m, 'exds_health_transitions_total', { cluster: 'hc', endpoint: `${b1Addr}:9200`, to: 'unhealthy' })).toBe(1);
    expect(p.logs()).toMatch(/endpoint failed its health check/);

    (await serve(b1)).done.catch(() => undefined);
    await waitFor('b1 healthy again', async () => (await health()) === 'healthy,healthy', 5000);
    const back = await selected();
    await runClient(client, { host: mbAddr, port: 4446, conns: 10, send: 10 });
    const end = await selected();
    expect(end[0]! - back[0]!).toBe(5);
    expect(sample(await p.metrics(), 'exds_endpoint_healthy', { cluster: 'hc', endpoint: `${b1Addr}:9200` })).toBe(1);
    await p.stop();
    proxy = undefined;
    await b1.killAll();
    await b2.killAll();
  });

  it('reports a listener that cannot bind while the others keep serving', async () => {
    const s = await startServer(b1, { port: 9300, conns: 1, send: 10 });
    proxy = await startProxyProcess(mb, {
      state: {
        clusters: [cluster('ok', [[b1Addr, 9300]])],
        listeners: [listener('ghost', 5000, [chain('ok')], { address: '10.123.45.67' }), listener('fine', 5001, [chain('ok')])],
      },
    });
    expect(proxy.results[0]).toEqual({ name: 'ghost', ok: false, error: 'listener "ghost": address 10.123.45.67 is not configured on this node (EADDRNOTAVAIL); add it to an interface or listen on 0.0.0.0 / ::' });
    expect(proxy.results[1]).toEqual({ name: 'fine', ok: true });
    const [r] = await runClient(client, { host: mbAddr, port: 5001, send: 10 });
    expect(r!.recv).toBe(10);
    await s.done;
    await proxy.stop();
    proxy = undefined;
  });
});
