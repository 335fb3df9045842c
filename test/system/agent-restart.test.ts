// The agent's kernel state outlives the agent: kill -9 in the middle of a 200 MB XDP-spliced
// transfer, start it again, and the transfer completes intact while the new agent adopts the
// pinned maps and links (the kernel's own count of programs at every hook is the same before and
// after: nothing attached twice). The same for a 200 MB SKB-spliced transfer each way: the splice
// keeper holds its sockets, so kill -9 of the agent does not close them, and the keeper exits
// once the flow ended, leaving the SKB maps empty. Then --proxy=envoy on the same pins: programs and maps for an
// Envoy, no listening sockets; and --detach-on-exit leaves nothing behind.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkbMaps } from '../../src/agent/bpf/datapath-skb.js';
import { XdpMaps } from '../../src/agent/bpf/datapath-xdp.js';
import { BpfMap, TypedMap } from '../../src/agent/bpf/map.js';
import { SteerKey, SteerVal } from '../../src/agent/bpf/layout-steer.js';
import { listPins } from '../../src/agent/bpf/pins.js';
import { startAgent, type AgentProcess } from '../support/agent-process.js';
import { attachments } from '../support/bpf-attachments.js';
import { bpfTestEnv, type BpfTestEnv } from '../support/bpf-env.js';
import { killAllControlPlanes, startControlPlane, writeTokenFile, type ControlPlaneProcess } from '../support/control-plane-process.js';
import { Topology, type Host } from '../support/netns.js';
import { NsApi } from '../support/ns-http.js';
import { sample } from '../support/proxy-process.js';
import { tcpProbe } from '../support/tcp-probe.js';
import { runClient, startServer } from '../support/traffic.js';

const MB = 1 << 20;
let topo: Topology;
let env: BpfTestEnv;
let dataDir: string;
let cp: ControlPlaneProcess;
let agent: AgentProcess | undefined;
let client: Host;
let mb: Host;
let server: Host;
let mbAddr: string;
/** Every splice keeper an agent of this file forked (afterAll kills what is left of them). */
const keeperPids = new Set<number>();
const allLogs: string[] = [];

/** Alive and not a zombie (an orphaned keeper is reaped by whatever PID 1 is here). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function keepersOf(logs: string): number[] {
  return [...logs.matchAll(/"keeperPid":(\d+),"msg":"splice keeper forked"/g)].map((m) => Number(m[1]));
}

const agentOpts = (extra: Partial<Parameters<typeof startAgent>[1]> = {}) => ({ controlPlane: `127.0.0.1:${cp.xdsPort}`, nodeId: 'mb-r', pinRoot: env.pins.root, cgroup: env.cgroup, ...extra });

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  topo = await Topology.create({
    label: 'agentrs',
    hosts: ['client', 'mb', 'server'],
    links: [
      { a: 'client', b: 'mb' },
      { a: 'mb', b: 'server' },
    ],
    gateways: { client: 'mb', server: 'mb' },
    routers: ['mb'],
  });
  [client, mb, server] = ['client', 'mb', 'server'].map((h) => topo.host(h)) as [Host, Host, Host];
  for (const h of [client, server]) await h.exec('ethtool', ['-K', 'eth0', 'tx', 'off', 'gro', 'on']);
  mbAddr = topo.iface('mb', 'client').ipv4;
  env = bpfTestEnv('agent-restart');
  dataDir = mkdtempSync(join(tmpdir(), 'exds-agent-restart-'));
  cp = await startControlPlane({ dataDir, tokenFile: writeTokenFile(dataDir), host: mb });
  const api = new NsApi(mb, cp.apiUrl, cp.token);
  await api.request('PUT', '/v1/config', {
    listeners: [
      { name: 'xdp', address: '0.0.0.0', port: 7003, mode: 'xdp', interface: 'eth0', cluster: 'bulk' },
      { name: 'skb', address: '0.0.0.0', ports: [7002, '7100-7102'], mode: 'skb', cluster: 'bulk' },
    ],
    clusters: [{ name: 'bulk', connectTimeout: '1s', endpoints: [{ address: topo.iface('server', 'mb').ipv4, port: 9500 }] }],
  });
  agent = await startAgent(mb, agentOpts());
  await agent.waitReady();
}, 120_000);

afterAll(async () => {
  await agent?.kill('SIGKILL');
  for (const pid of [...keeperPids, ...keepersOf(agent?.logs() ?? '')]) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await killAllControlPlanes();
  await topo?.destroy();
  env?.cleanup();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('agent restart', () => {
  it('keeps a 200 MB XDP-spliced transfer flowing through kill -9 and restart, and attaches nothing twice', async () => {
    const count = () => attachments(mb, ['eth0', 'eth1'], env.cgroup);
    await waitFor('the datapaths', async () => {
      const m = await agent!.metrics();
      return sample(m, 'exds_datapath_attached', { datapath: 'xdp' }) === 2 && sample(m, 'exds_datapath_attached', { datapath: 'skb' }) === 1;
    });
    const before = await count();
    expect(before).toEqual({
      xdp: { eth0: 1, eth1: 1 },
      tcx: { 'eth0/ingress': 1, 'eth0/egress': 1, 'eth1/ingress': 1, 'eth1/egress': 1 },
      skLookup: 1,
      sockRelease: 1,
    });

    const xdpMaps = XdpMaps.openPinned(join(env.pins.root, 'xdp'));
    try {
      const srv = await startServer(server, { port: 9500, send: 200 * MB, waitFirst: true });
      // The client pauses half-way, long enough for the agent to be gone and back.
      const transfer = runClient(client, { host: mbAddr, port: 7003, send: 200 * MB, pauseMs: 3000 });
      await waitFor('the pair spliced in XDP', () => xdpMaps.counters().spliced_bytes > BigInt(2 * MB));
      const killed = await agent!.kill('SIGKILL');
      expect(killed.signal).toBe('SIGKILL');
      const atKill = xdpMaps.counters().spliced_bytes;
      agent = await startAgent(mb, agentOpts());
      await agent.waitReady();
      const [c] = await transfer;
      const [s] = await srv.done;
      expect([c!.recv, s!.recv]).toEqual([200 * MB, 200 * MB]);
      expect(c!.sentSha).toBe(s!.recvSha);
      expect(s!.sentSha).toBe(c!.recvSha);
      expect([c!.endedBy, s!.endedBy]).toEqual(['fin', 'fin']);
      // The kernel carried the bytes after the kill: no proxy was there to copy them.
      expect(Number(xdpMaps.counters().spliced_bytes - atKill)).toBeGreaterThan(100 * MB);
      await waitFor('the pair to leave the map', () => xdpMaps.count() === 0);
    } finally {
      xdpMaps.close();
    }
    expect(await count()).toEqual(before);
    expect(agent.logs()).toMatch(/"adopted":\["eth0","eth1"\].*"msg":"XDP splice attached"/);
    expect(agent.logs()).toMatch(/"adopted":true.*"msg":"SKB splice datapath adopted from its pins"/);
    // Adopted, never detached and attached again on the way.
    expect(agent.logs()).not.toMatch(/"msg":"(SKB splice detached|sk_lookup steering detached|XDP splice detached)/);
    // The new agent serves new connections.
    expect((await tcpProbe(client, mbAddr, 7101, { timeoutMs: 3000 })).outcome).not.toBe('timeout');
  }, 120_000);

  it('keeps a 200 MB SKB-spliced transfer each way flowing through kill -9 of the agent: the splice keeper holds the sockets, then exits', async () => {
    const count = () => attachments(mb, ['eth0', 'eth1'], env.cgroup);
    const before = await count();
    const skb = SkbMaps.openPinned(env.pins.skb);
    try {
      expect(skb.occupancy()).toEqual({ socks: 0, pairs: 0, sockStats: 0 });
      const srv = await startServer(server, { port: 9500, send: 200 * MB, waitFirst: true });
      // The client pauses half-way, long enough for the agent to be gone and back.
      const transfer = runClient(client, { host: mbAddr, port: 7002, send: 200 * MB, pauseMs: 3000 });
      await waitFor('the pair handed over to the kernel and adopted by the keeper', async () => {
        const m = await agent!.metrics();
        return skb.occupancy().pairs === 2 && sample(m, 'exds_skb_keeper_pairs_total', { outcome: 'keeper' }) === 1 && skb.counters().redirected_bytes > BigInt(4 * MB);
      });
      const [keeper] = keepersOf(agent!.logs());
      expect(keeper).toBeDefined();
      keeperPids.add(keeper!);
      const killed = await agent!.kill('SIGKILL');
      expect(killed.signal).toBe('SIGKILL');
      const atKill = skb.counters().redirected_bytes;
      expect(alive(keeper!)).toBe(true);
      const first = agent!;
      agent = await startAgent(mb, agentOpts());
      await agent.waitReady();
      const [c] = await transfer;
      const [s] = await srv.done;
      expect([c!.recv, s!.recv]).toEqual([200 * MB, 200 * MB]);
      expect(c!.sentSha).toBe(s!.recvSha);
      expect(s!.sentSha).toBe(c!.recvSha);
      expect([c!.endedBy, s!.endedBy]).toEqual(['fin', 'fin']);
      // The client's second 100 MB left after the kill (it pauses half-way): the kernel carried
      // them, no proxy copied them.
      expect(Number(skb.counters().redirected_bytes - atKill)).toBeGreaterThanOrEqual(100 * MB);
      await waitFor('the keeper to exit after its last pair', () => !alive(keeper!));
      await waitFor('the SKB maps to be empty', () => skb.occupancy().socks === 0 && skb.occupancy().pairs === 0 && skb.occupancy().sockStats === 0);
      allLogs.push(first.logs());
    } finally {
      skb.close();
    }
    // The keeper wrote to the stderr it shared with the killed agent.
    const old = allLogs.join('');
    expect(old).toMatch(/"msg":"the agent is gone; the splice keeper carries on with its pairs"/);
    expect(old).toMatch(/"conn":"[^"]+".*"end":"fin","mode":"kernel".*"agent":"gone".*"msg":"spliced pair ended \(splice keeper\)"/);
    expect(old).toMatch(/"msg":"splice keeper exiting: its agent is gone and its last pair ended"/);
    expect(await count()).toEqual(before);
    expect(agent.logs()).not.toMatch(/"msg":"SKB splice detached/);
    // The new agent hands new SKB pairs to a fresh keeper.
    // Both ends hold the connection open past the keeper's 1 s.
    const srv2 = await startServer(server, { port: 9500, send: 8 * MB, waitFirst: true, holdMs: 2000 });
    const [c2] = await runClient(client, { host: mbAddr, port: 7002, send: 8 * MB, pauseMs: 2000 });
    const [s2] = await srv2.done;
    expect([c2!.recv, s2!.recv, c2!.endedBy]).toEqual([8 * MB, 8 * MB, 'fin']);
    expect(c2!.sentSha).toBe(s2!.recvSha);
    expect(s2!.sentSha).toBe(c2!.recvSha);
    expect(sample(await agent.metrics(), 'exds_skb_keeper_pairs_total', { outcome: 'keeper' })).toBe(1);
    const fresh = keepersOf(agent.logs());
    expect(fresh).toHaveLength(1);
    expect(fresh[0]).not.toBe(keepersOf(old)[0]);
    keeperPids.add(fresh[0]!);
    expect(alive(fresh[0]!)).toBe(true);
  }, 120_000);

  it('through the splice keeper, a half-closed SKB-spliced connection stays open the other way and an RST reaches the other side', async () => {
    const closedLines = (end: string) => agent!.logs().split('\n').filter((l) => l.includes('"msg":"connection closed"') && l.includes('"path":"skb"') && l.includes(`"end":"${end}"`)).length;
    const kept = async () => sample(await agent!.metrics(), 'exds_skb_keeper_pairs_total', { outcome: 'keeper' }) ?? 0;
    const [keptBefore, finBefore, resetBefore] = [await kept(), closedLines('fin'), closedLines('reset')];
    // The server answers the client's first byte with 100 kB and, 1.5 s later (the pair went to
    // the keeper after 1 s), its FIN, while the client's 50 MB still flow through the kernel
    // (the client pauses 2.5 s half-way).
    const srv = await startServer(server, { port: 9500, send: 100_000, waitFirst: true, holdMs: 1500 });
    const [c] = await runClient(client, { host: mbAddr, port: 7002, send: 50 * MB, pauseMs: 2500 });
    const [s] = await srv.done;
    expect([c!.recv, s!.recv, c!.endedBy, s!.endedBy]).toEqual([100_000, 50 * MB, 'fin', 'fin']);
    expect(c!.sentSha).toBe(s!.recvSha);
    expect(s!.sentSha).toBe(c!.recvSha);
    // The client resets after 30 MB, past the server's 2 s pause half-way: the server sees the RST.
    const srv2 = await startServer(server, { port: 9500, send: 50 * MB, pauseMs: 2000 });
    const [c2] = await runClient(client, { host: mbAddr, port: 7002, send: MB, rstAfter: 30 * MB });
    const [s2] = await srv2.done;
    expect([c2!.endedBy, s2!.endedBy]).toEqual(['rst-sent', 'rst-received']);
    // Both went through the keeper, and the agent recorded the ends the keeper reported.
    await waitFor('the connection records', () => closedLines('fin') === finBefore + 1 && closedLines('reset') === resetBefore + 1);
    expect(await kept()).toBe(keptBefore + 2);
    const skb = SkbMaps.openPinned(env.pins.skb);
    try {
      await waitFor('the SKB maps to be empty', () => {
        const o = skb.occupancy();
        return o.socks + o.pairs + o.sockStats === 0;
      });
    } finally {
      skb.close();
    }
  }, 60_000);

  it('with --proxy=envoy pins maps and attaches programs for an Envoy, listens on nothing, and --detach-on-exit leaves nothing behind', async () => {
    await agent!.stop();
    agent = await startAgent(mb, agentOpts({ proxy: 'envoy', nodeId: 'mb-envoy', args: ['--detach-on-exit'] }));
    await agent.waitReady();
    expect((await tcpProbe(client, mbAddr, 7002)).outcome).toBe('refused');
    // The SKB splice maps a patched Envoy pairs its sockets in (docs/bpf.md, pairing contract).
    const skb = SkbMaps.openPinned(env.pins.skb);
    try {
      expect(skb.occupancy()).toEqual({ socks: 0, pairs: 0, sockStats: 0 });
    } finally {
      skb.close();
    }
    // The slot a patched Envoy puts its listening socket into: steer_ports[{any, 7002, tcp}].
    const ports = new TypedMap(BpfMap.openPinned(join(env.pins.steer, 'steer_ports')), SteerKey, SteerVal);
    try {
      const entries = ports.entries().filter((e) => e.key.addr.every((b) => b === 0));
      expect(entries.map((e) => e.key.port).sort((a, b) => a - b)).toEqual([7002, 7100, 7101, 7102]);
      expect(new Set(entries.map((e) => e.value.slot)).size).toBe(1);
    } finally {
      ports.raw.close();
    }
    expect(existsSync(join(env.pins.root, 'xdp', 'eth0', 'link_xdp'))).toBe(true);
    const status = await agent.status();
    expect(status['proxy']).toBe('envoy');
    expect(status['proxyStats']).toBeUndefined();

    await agent.stop();
    agent = undefined;
    // Every splice keeper is gone with its agent (none had a pair left).
    await waitFor('the splice keepers to exit', () => [...keeperPids].every((pid) => !alive(pid)));
    expect(listPins(env.pins.root)).toEqual([]);
    expect(await attachments(mb, ['eth0', 'eth1'], env.cgroup)).toEqual({
      xdp: { eth0: 0, eth1: 0 },
      tcx: { 'eth0/ingress': 0, 'eth0/egress': 0, 'eth1/ingress': 0, 'eth1/egress': 0 },
      skLookup: 0,
      sockRelease: 0,
    });
  }, 60_000);
});
