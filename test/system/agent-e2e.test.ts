// The node agent end to end: the control plane and the agent run as real processes in a
// middlebox namespace, between client namespaces and two backend namespaces. Config goes in
// through the REST API; traffic goes through each mode (user space, SKB splice with sk_lookup
// steered ports, XDP splice) with SHA-256 equal on both ends; endpoint changes reach new
// connections within a second; SNI routes to two clusters with real TLS; a listener on a missing
// interface is NACKed with the reason (GET /v1/nodes shows it) while the others serve; health
// checks take a stopped backend out and bring it back; a drop rule drops at XDP and is counted.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentProcess } from '../support/agent-process.js';
import { bpfTestEnv, type BpfTestEnv } from '../support/bpf-env.js';
import { killAllControlPlanes, startControlPlane, writeTokenFile, type ControlPlaneProcess } from '../support/control-plane-process.js';
import { Topology, type Host } from '../support/netns.js';
import { NsApi } from '../support/ns-http.js';
import { sample } from '../support/proxy-process.js';
import { startListener, tcpProbe } from '../support/tcp-probe.js';
import { runClient, startServer } from '../support/traffic.js';

const MB = 1 << 20;
const TLS_TOOL = fileURLToPath(new URL('../support/proxy-tls-tool.mjs', import.meta.url));

let topo: Topology;
let env: BpfTestEnv;
let dataDir: string;
let tokenFile: { file: string; token: string };
let cp: ControlPlaneProcess;
let agent: AgentProcess;
let api: NsApi;
let client: Host;
let c2: Host;
let mb: Host;
let s1: Host;
let s2: Host;
let mbAddr: string;
let mbAddrC2: string;
let s1Addr: string;
let s2Addr: string;
const stops: Array<() => Promise<void>> = [];

interface NodeTypeView {
  typeUrl: string;
  acked: { version: string } | null;
  lastNack: { version: string; message: string } | null;
}
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';

async function waitFor(what: string, cond: () => Promise<boolean>, ms = 15_000, stepMs = 100): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

async function nodeTypes(): Promise<NodeTypeView[]> {
  const r = await api.request<{ items: Array<{ node: { id: string } | null; types: NodeTypeView[] }> }>('GET', '/v1/nodes');
  return r.items.find((i) => i.node?.id === 'mb-1')?.types ?? [];
}

/** Applies a change through the API and waits until the agent ACKed the resulting LDS/CDS/EDS versions. */
async function applied(revision: number): Promise<void> {
  await waitFor(`the agent to ACK revision ${revision}`, async () => {
    const types = await nodeTypes();
    return types.length >= 3 && types.every((t) => t.acked !== null && Number(t.acked.version) >= 0) && types.some((t) => t.acked?.version === String(revision));
  });
}

function run(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: ${err}`))));
  });
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

const config = () => ({
  listeners: [
    { name: 'plain', address: '0.0.0.0', port: 7001, mode: 'userspace', cluster: 'one' },
    { name: 'skb', address: '0.0.0.0', ports: [7002, '7100-7102'], mode: 'skb', cluster: 'bulk' },
    { name: 'xdp', address: '0.0.0.0', port: 7003, mode: 'xdp', interface: 'eth0', cluster: 'bulk' },
    { name: 'user', address: '0.0.0.0', port: 7004, mode: 'userspace', cluster: 'bulk' },
    {
      name: 'tls',
      address: '0.0.0.0',
      port: 7005,
      mode: 'userspace',
      routes: [
        { serverNames: ['a.test'], cluster: 'tls-a' },
        { serverNames: ['b.test'], cluster: 'tls-b' },
      ],
    },
    { name: 'tls-skb', address: '0.0.0.0', port: 7007, mode: 'skb', routes: [{ serverNames: ['b.test'], cluster: 'tls-b' }] },
    { name: 'hc', address: '0.0.0.0', port: 7006, mode: 'userspace', cluster: 'hc' },
  ],
  clusters: [
    { name: 'one', connectTimeout: '1s', endpoints: [{ address: s1Addr, port: 9101 }] },
    { name: 'bulk', connectTimeout: '1s', endpoints: [{ address: s1Addr, port: 9500 }] },
    { name: 'tls-a', endpoints: [{ address: s1Addr, port: 9443 }] },
    { name: 'tls-b', endpoints: [{ address: s2Addr, port: 9443 }] },
    {
      name: 'hc',
      connectTimeout: '300ms',
      healthCheck: { interval: '300ms', timeout: '200ms', unhealthyThreshold: 1, healthyThreshold: 1 },
      endpoints: [
        { address: s1Addr, port: 9201 },
        { address: s2Addr, port: 9202 },
      ],
    },
  ],
});

beforeAll(async () => {
  topo = await Topology.create({
    label: 'agent',
    hosts: ['client', 'mb', 's1', 's2', 'c2'],
    links: [
      { a: 'client', b: 'mb' },
      { a: 'mb', b: 's1' },
      { a: 'mb', b: 's2' },
      { a: 'c2', b: 'mb' },
    ],
    gateways: { client: 'mb', s1: 'mb', s2: 'mb', c2: 'mb' },
    routers: ['mb'],
  });
  [client, mb, s1, s2, c2] = ['client', 'mb', 's1', 's2', 'c2'].map((h) => topo.host(h)) as [Host, Host, Host, Host, Host];
  // XDP splice redirects frames: receivers need GRO and senders full checksums (KERNEL-NOTES.md).
  for (const h of [client, s1, s2, c2]) await h.exec('ethtool', ['-K', 'eth0', 'tx', 'off', 'gro', 'on']);
  mbAddr = topo.iface('mb', 'client').ipv4;
  mbAddrC2 = topo.iface('mb', 'c2').ipv4;
  s1Addr = topo.iface('s1', 'mb').ipv4;
  s2Addr = topo.iface('s2', 'mb').ipv4;
  env = bpfTestEnv('agent-e2e');
  dataDir = mkdtempSync(join(tmpdir(), 'exds-agent-e2e-'));
  tokenFile = writeTokenFile(dataDir);
  cp = await startControlPlane({ dataDir, tokenFile, host: mb });
  api = new NsApi(mb, cp.apiUrl, cp.token);
  agent = await startAgent(mb, { controlPlane: `127.0.0.1:${cp.xdsPort}`, nodeId: 'mb-1', pinRoot: env.pins.root, cgroup: env.cgroup });
  // Backends that answer "port <n>" (for routing checks), and TLS servers named s1 and s2.
  for (const [h, port] of [
    [s1, 9101],
    [s1, 9201],
    [s2, 9202],
  ] as const) {
    const l = await startListener(h, { port });
    stops.push(l.stop);
  }
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'tls.key', '-out', 'tls.crt', '-days', '1', '-subj', '/CN=test', '-addext', 'subjectAltName=DNS:a.test,DNS:b.test'], dataDir);
  for (const [h, name] of [
    [s1, 's1'],
    [s2, 's2'],
  ] as const) {
    const t = tlsTool(h, ['serve', '--port', '9443', '--cert', join(dataDir, 'tls.crt'), '--key', join(dataDir, 'tls.key'), '--name', name]);
    t.done.catch(() => undefined); // killed at the end
    for await (const line of t.lines) if (line.includes('listening')) break;
  }
  const put = await api.request<{ revision: number }>('PUT', '/v1/config', config());
  await agent.waitReady();
  await applied(put.revision);
}, 120_000);

afterAll(async () => {
  for (const s of stops) await s().catch(() => undefined);
  await agent?.kill('SIGKILL');
  await killAllControlPlanes();
  await topo?.destroy();
  env?.cleanup();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('agent with the control plane', () => {
  it('reports itself as the xDS node with its interfaces, kernel and attach types', async () => {
    const r = await api.request<{ items: Array<{ node: { id: string; metadata: Record<string, any> }; protocol: string }> }>('GET', '/v1/nodes'); // eslint-disable-line @typescript-eslint/no-explicit-any
    const me = r.items.find((i) => i.node?.id === 'mb-1')!;
    expect(me.protocol).toBe('delta');
    expect(me.node.metadata['proxy']).toBe('embedded');
    expect(me.node.metadata['attach_types']).toEqual(expect.arrayContaining(['cgroup_sock', 'sk_lookup', 'sk_skb', 'tc', 'xdp']));
    expect((me.node.metadata['interfaces'] as Array<{ name: string; addresses: string[] }>).find((i) => i.name === 'eth0')!.addresses).toContain(`${mbAddr}/24`);
    expect(me.node.metadata['kernel']).toMatch(/^\d+\.\d+/);
  });

  it('carries traffic intact through each mode: user space, SKB splice (a steered port too) and XDP splice', async () => {
    const cases: Array<{ listener: string; port: number; path: 'userspace' | 'skb' | 'xdp' }> = [
      { listener: 'user', port: 7004, path: 'userspace' },
      { listener: 'skb', port: 7002, path: 'skb' },
      { listener: 'skb', port: 7101, path: 'skb' },
      { listener: 'xdp', port: 7003, path: 'xdp' },
    ];
    for (const c of cases) {
      const srv = await startServer(s1, { port: 9500, send: 20 * MB, waitFirst: true });
      const [cl] = await runClient(client, { host: mbAddr, port: c.port, send: 20 * MB });
      const [sv] = await srv.done;
      expect([c.port, cl!.recv, sv!.recv]).toEqual([c.port, 20 * MB, 20 * MB]);
      expect(cl!.sentSha).toBe(sv!.recvSha);
      expect(sv!.sentSha).toBe(cl!.recvSha);
    }
    await waitFor('the XDP pair to end', async () => sample(await agent.metrics(), 'exds_proxy_connections_total', { listener: 'xdp', path: 'xdp' }) === 1);
    const m = await agent.metrics();
    expect(sample(m, 'exds_proxy_connections_total', { listener: 'user', path: 'userspace' })).toBe(1);
    expect(sample(m, 'exds_proxy_connections_total', { listener: 'skb', path: 'skb' })).toBe(2);
    expect(sample(m, 'exds_proxy_fallbacks_total', { listener: 'skb' })).toBe(0);
    expect(sample(m, 'exds_proxy_fallbacks_total', { listener: 'xdp' })).toBe(0);
    expect(sample(m, 'exds_spliced_bytes_total', { path: 'skb' })).toBeGreaterThan(60 * MB);
    expect(sample(m, 'exds_spliced_bytes_total', { path: 'xdp' })).toBeGreaterThan(30 * MB);
    expect(sample(m, 'exds_datapath_attached', { datapath: 'xdp', interface: 'eth0' })).toBe(1);
    expect(sample(m, 'exds_datapath_attached', { datapath: 'xdp', interface: 'eth1' })).toBe(1);
    expect(sample(m, 'exds_datapath_attached', { datapath: 'skb' })).toBe(1);
    expect(sample(m, 'exds_datapath_attached', { datapath: 'steer' })).toBe(1);
    expect(sample(m, 'exds_xds_connected')).toBe(1);
  }, 120_000);

  it('sends new connections to the new endpoints within a second of an API change', async () => {
    expect((await tcpProbe(client, mbAddr, 7001)).reply).toBe('port 9101');
    const l = await startListener(s2, { port: 9102 });
    stops.push(l.stop);
    const put = await api.request<{ revision: number }>('PUT', '/v1/clusters/one/endpoints', [{ address: s2Addr, port: 9102 }]);
    const changed = Date.now();
    let firstNew = 0;
    await waitFor(
      'a connection on the new endpoint',
      async () => {
        const r = await tcpProbe(client, mbAddr, 7001);
        if (r.reply === 'port 9102') firstNew = Date.now();
        return firstNew > 0;
      },
      5000,
      0,
    );
    expect(firstNew - changed).toBeLessThan(1000);
    for (let i = 0; i < 4; i++) expect((await tcpProbe(client, mbAddr, 7001)).reply).toBe('port 9102');
    await applied(put.revision);
  }, 30_000);

  const tlsConnect = async (servername: string, port: number) =>
    (await tlsTool(client, ['connect', '--host', mbAddr, '--port', String(port), '--servername', servername, '--ca', join(dataDir, 'tls.crt'), '--send', '300000']).done)[0];

  it('routes by SNI to two clusters with real TLS clients and servers', async () => {
    for (const [name, server] of [
      ['a.test', 's1'],
      ['b.test', 's2'],
      ['a.test', 's1'],
      ['b.test', 's2'],
    ] as const) {
      expect(await tlsConnect(name, 7005)).toMatchObject({ event: 'done', name: server, authorized: true, echoOk: true, sent: 300000 });
    }
    const m = await agent.metrics();
    expect(sample(m, 'exds_proxy_sni_total', { listener: 'tls', outcome: 'sni_found' })).toBe(4);
    expect(sample(m, 'exds_proxy_connections_total', { listener: 'tls', path: 'userspace' })).toBe(4);
  }, 60_000);

  it('splices an SNI-routed TLS connection with SKB after the ClientHello was read in user space', async () => {
    for (let i = 0; i < 3; i++) expect(await tlsConnect('b.test', 7007)).toMatchObject({ event: 'done', name: 's2', authorized: true, echoOk: true, sent: 300000 });
    const m = await agent.metrics();
    expect(sample(m, 'exds_proxy_sni_total', { listener: 'tls-skb', outcome: 'sni_found' })).toBe(3);
    expect(sample(m, 'exds_proxy_connections_total', { listener: 'tls-skb' })).toBe(3);
  }, 60_000);

  it('NACKs a listener on a missing interface with the reason, shown by GET /v1/nodes, while the others serve', async () => {
    const put = await api.request<{ revision: number }>('PUT', '/v1/listeners/bad', { name: 'bad', address: '0.0.0.0', port: 7009, mode: 'xdp', interface: 'eth9', cluster: 'one' });
    let nack: NodeTypeView['lastNack'] = null;
    await waitFor('the NACK in /v1/nodes', async () => {
      nack = (await nodeTypes()).find((t) => t.typeUrl === LDS)?.lastNack ?? null;
      return nack?.version === String(put.revision);
    });
    expect(nack!.message).toMatch(/^listener "bad": interface "eth9" not found on node mb-1 \(have: .*eth0.*\)/);
    expect((await tcpProbe(client, mbAddr, 7001)).outcome).toBe('connected');
    expect((await tcpProbe(client, mbAddr, 7009)).outcome).toBe('refused');
    const m = await agent.metrics();
    expect(sample(m, 'exds_listener_applied', { listener: 'bad' })).toBe(0);
    expect(sample(m, 'exds_listener_applied', { listener: 'plain' })).toBe(1);
    expect(sample(m, 'exds_xds_nacks_total', { type: 'Listener' })).toBeGreaterThanOrEqual(1);
    const status = await agent.status();
    expect(status['listeners'].find((l: { name: string }) => l.name === 'bad')).toMatchObject({ ok: false, error: expect.stringContaining('eth9') });
    // Removing it is a version the agent ACKs.
    const del = await api.request<{ revision: number }>('DELETE', '/v1/listeners/bad');
    await waitFor('the ACK after the removal', async () => (await nodeTypes()).find((t) => t.typeUrl === LDS)?.acked?.version === String(del.revision));
  }, 30_000);

  it('takes a stopped backend out with health checks and brings it back when it returns', async () => {
    const healthy = async (port: number) => sample(await agent.metrics(), 'exds_endpoint_healthy', { cluster: 'hc', endpoint: `${port === 9201 ? s1Addr : s2Addr}:${port}` });
    await waitFor('both endpoints healthy', async () => (await healthy(9201)) === 1 && (await healthy(9202)) === 1);
    const replies = async (n: number) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push((await tcpProbe(client, mbAddr, 7006)).reply);
      return out;
    };
    expect(new Set(await replies(4))).toEqual(new Set(['port 9201', 'port 9202']));
    const s2Listener = stops.splice(2, 1)[0]!; // the 9202 backend
    await s2Listener();
    await waitFor('s2 unhealthy', async () => (await healthy(9202)) === 0);
    expect(await replies(4)).toEqual(['port 9201', 'port 9201', 'port 9201', 'port 9201']);
    const back = await startListener(s2, { port: 9202 });
    stops.push(back.stop);
    await waitFor('s2 healthy again', async () => (await healthy(9202)) === 1);
    expect(new Set(await replies(4))).toEqual(new Set(['port 9201', 'port 9202']));
  }, 60_000);

  it('drops traffic from a blocked CIDR at XDP, counts it per rule, and lets other traffic pass', async () => {
    const c2Net = `${topo.iface('c2', 'mb').ipv4.split('.').slice(0, 3).join('.')}.0/24`;
    expect((await tcpProbe(c2, mbAddrC2, 7001)).outcome).toBe('connected');
    const post = await api.request<{ revision: number }>('POST', '/v1/drop-rules', { name: 'blocked', cidr: c2Net, listeners: ['plain'] });
    await applied(post.revision);
    await waitFor('the drop rule on eth3', async () => sample(await agent.metrics(), 'exds_datapath_attached', { datapath: 'firewall', interface: 'eth3' }) === 1);
    expect((await tcpProbe(c2, mbAddrC2, 7001, { timeoutMs: 700 })).outcome).toBe('timeout');
    // Only the listener's port is blocked, and only for that CIDR.
    expect((await tcpProbe(c2, mbAddrC2, 7006)).reply).toMatch(/^port 92\d\d$/);
    expect((await tcpProbe(client, mbAddr, 7001)).outcome).toBe('connected');
    const m = await agent.metrics();
    expect(sample(m, 'exds_drop_packets_total', { interface: 'eth3', rule: 'blocked' })).toBeGreaterThanOrEqual(1);
    expect(sample(m, 'exds_drop_bytes_total', { interface: 'eth3', rule: 'blocked' })).toBeGreaterThan(0);
    // The user-space check never saw these connections: XDP dropped their SYNs.
    expect(sample(m, 'exds_proxy_denied_total', { listener: 'plain' })).toBe(0);
    // XDP splice holds eth0's slot: the rule is not attached there.
    expect(sample(m, 'exds_datapath_attached', { datapath: 'firewall', interface: 'eth0' })).toBe(0);
    const del = await api.request<{ revision: number }>('DELETE', '/v1/drop-rules/blocked');
    await applied(del.revision);
    await waitFor('the rule detached', async () => sample(await agent.metrics(), 'exds_datapath_attached', { datapath: 'firewall', interface: 'eth3' }) === 0);
    expect((await tcpProbe(c2, mbAddrC2, 7001)).outcome).toBe('connected');
  }, 60_000);
  it('keeps serving the last config while the control plane is away, and reconnects when it is back', async () => {
    const { xdsPort, apiPort } = cp;
    expect((await cp.stop()).code).toBe(0);
    await waitFor('the stream to drop', async () => sample(await agent.metrics(), 'exds_xds_connected') === 0);
    expect((await tcpProbe(client, mbAddr, 7001)).outcome).toBe('connected');
    expect((await agent.get('/readyz')).status).toBe(200);
    cp = await startControlPlane({ dataDir, tokenFile, host: mb, xdsPort, apiPort });
    await waitFor('the agent to reconnect', async () => sample(await agent.metrics(), 'exds_xds_connected') === 1, 40_000, 250);
    const status = await agent.status();
    expect(status['xds']).toMatchObject({ connected: true, protocol: 'delta' });
    expect((await tcpProbe(client, mbAddr, 7001)).outcome).toBe('connected');
  }, 60_000);
});
