// The reconciler's pure planning (drop rules per interface, listener ids and slots, XDP
// interfaces, SKB ports, interface resolution, the Node) and its listener semantics with a fake
// proxy and no kernel work: a failed listener fails alone with an error naming it and the
// reason, and its previous version keeps serving.
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { kernelVersion, type AttachProbe } from '../../src/agent/attach-probe.js';
import { PinLayout } from '../../src/agent/bpf/pins.js';
import type { DesiredCluster, DesiredListener, DesiredState } from '../../src/agent/desired-state.js';
import { interfacesForAddress, resolveInterface, type NetInterface } from '../../src/agent/interfaces.js';
import { ListenerIds, slotKey } from '../../src/agent/listener-ids.js';
import { agentVersion, nodeInfo } from '../../src/agent/node-info.js';
import type { ListenerApplyResult } from '../../src/agent/proxy/proxy.js';
import { compileDropRules } from '../../src/agent/reconcile-firewall.js';
import { expandRanges } from '../../src/agent/reconcile-skb.js';
import { needsSteering } from '../../src/agent/reconcile-steer.js';
import { xdpInterfacesByListener } from '../../src/agent/reconcile-xdp.js';
import { Reconciler, type ListenerServer } from '../../src/agent/reconciler.js';
import { silentLogger } from '../../src/util/log.js';

const iface = (name: string, index: number, addresses: string[], extra: Partial<NetInterface> = {}): NetInterface => ({ name, index, up: true, loopback: false, addresses, ...extra });
const LO = iface('lo', 1, ['127.0.0.1/8', '::1/128'], { loopback: true });
const IFACES = [LO, iface('eth0', 2, ['10.0.0.1/24']), iface('eth1', 3, ['10.0.1.1/24', 'fd00::1/64']), iface('eth2', 4, [], { up: false })];

function listener(name: string, extra: Partial<DesiredListener> = {}): DesiredListener {
  const mode = extra.mode ?? 'userspace';
  return {
    name,
    address: '0.0.0.0',
    ports: [{ start: 7000, end: 7000 }],
    mode,
    sniInspection: false,
    dropRules: [],
    chains: [{ name: 'default', serverNames: [], cluster: 'c', mode, statPrefix: 'p', idleTimeoutMs: 0, maxConnectAttempts: 1, ...(extra.interface ? { interface: extra.interface } : {}) }],
    ...extra,
  };
}

describe('drop rules per interface', () => {
  it('goes to the interfaces holding the listener address, limited to its ports, and stays in user space where XDP splice owns the slot', () => {
    const a = listener('a', {
      ports: [{ start: 7000, end: 7000 }, { start: 8000, end: 8002 }],
      dropRules: [
        { name: 'all', cidr: '192.168.3.0/24', ports: [] },
        { name: 'some', cidr: '2001:db8::/32', ports: [{ start: 22, end: 22 }, { start: 8001, end: 8009 }] },
        { name: 'none', cidr: '10.9.0.0/16', ports: [{ start: 22, end: 22 }] },
      ],
    });
    const b = listener('b', { address: '10.0.1.1', ports: [{ start: 9000, end: 9000 }], dropRules: [{ name: 'all', cidr: '192.168.3.0/24', ports: [] }] });
    const fw = compileDropRules([a, b], IFACES, new Set(['eth0']));
    // 0.0.0.0: every up interface but loopback (eth2 is down); eth0 belongs to XDP splice.
    expect([...fw.rules.keys()]).toEqual(['eth1']);
    expect(fw.rules.get('eth1')).toEqual([
      { name: 'all', cidr: '192.168.3.0/24', ports: [7000, 8000, 8001, 8002, 9000] },
      { name: 'some', cidr: '2001:db8::/32', ports: [8001, 8002] },
    ]);
    expect(fw.userspaceOnly.get('eth0')).toMatch(/XDP splice owns the XDP slot of "eth0"/);
  });

  it('gives a (CIDR, port) entry to the first rule in order when two rules overlap', () => {
    const l = listener('a', {
      dropRules: [
        { name: 'zeta', cidr: '192.168.3.0/24', ports: [] },
        { name: 'alpha', cidr: '192.168.3.0/24', ports: [{ start: 7000, end: 7000 }] },
      ],
    });
    expect(compileDropRules([l], IFACES, new Set()).rules.get('eth0')).toEqual([{ name: 'alpha', cidr: '192.168.3.0/24', ports: [7000] }]);
  });
});

describe('listener ids', () => {
  it('keeps ids stable, takes over recovered slots, reuses freed ones and reports a full table', () => {
    const ids = new ListenerIds(3);
    const k = (name: string, port: number) => ({ name, key: slotKey('0.0.0.0', port) });
    expect(ids.assign([k('a', 1), k('b', 2)], new Map([[slotKey('0.0.0.0', 2), 2]])).ids).toEqual(new Map([['a', 0], ['b', 2]]));
    expect(ids.assign([k('b', 2), k('c', 3), k('a', 1)]).ids).toEqual(new Map([['a', 0], ['b', 2], ['c', 1]]));
    // a leaves, d takes its slot; e finds none.
    const r = ids.assign([k('b', 2), k('c', 3), k('d', 4), k('e', 5)]);
    expect(r.ids).toEqual(new Map([['b', 2], ['c', 1], ['d', 0]]));
    expect(r.full).toEqual(['e']);
  });
});

describe('datapath plans', () => {
  it('puts XDP splice on the chains interfaces and on the egress interfaces of their endpoints', () => {
    const clusters = new Map<string, DesiredCluster>([['c', { name: 'c', lbPolicy: 'round_robin', connectTimeoutMs: 1000, endpoints: [{ address: '10.0.1.9', port: 1, weight: 1, health: 'healthy' }, { address: '10.5.5.5', port: 1, weight: 1, health: 'healthy' }] }]]);
    const x = listener('x', { mode: 'xdp', interface: { name: 'eth0' } });
    const plan = xdpInterfacesByListener([x, listener('u')], clusters, new Map([['x', ['eth0']]]), new Map([['10.0.1.9', 'eth1'], ['10.5.5.5', undefined]]));
    expect(plan).toEqual(new Map([['x', ['eth0', 'eth1']]]));
  });

  it('expands port ranges and steers listeners with more than one port', () => {
    const s = listener('s', { mode: 'skb', ports: [{ start: 7002, end: 7002 }, { start: 7100, end: 7102 }] });
    expect(expandRanges([{ start: 5, end: 7 }, { start: 6, end: 6 }])).toEqual([5, 6, 7]);
    expect([needsSteering(s), needsSteering(listener('u')), needsSteering(listener('r', { ports: [{ start: 1, end: 2 }] }))]).toEqual([true, false, true]);
  });

  it('resolves interfaces by name or index and names what the node has when it cannot', () => {
    expect(resolveInterface({ name: 'eth1' }, IFACES, 'n1')).toEqual({ iface: IFACES[2] });
    expect(resolveInterface({ index: 2 }, IFACES, 'n1')).toEqual({ iface: IFACES[1] });
    expect(resolveInterface({ name: 'eth9' }, IFACES, 'n1')).toEqual({ error: 'interface "eth9" not found on node n1 (have: lo, eth0, eth1, eth2)' });
    expect(resolveInterface({ index: 9 }, IFACES, 'n1')).toEqual({ error: expect.stringMatching(/^interface index 9 not found on node n1 \(have: lo=1, eth0=2, eth1=3, eth2=4\)/) });
    expect(interfacesForAddress('fd00::1', IFACES).map((i) => i.name)).toEqual(['eth1']);
  });

  it('presents the node with its interfaces, kernel, attach types and version', () => {
    const probe: AttachProbe = { supported: ['sk_lookup', 'xdp'], missing: {}, kernel: '6.18.44-x' };
    expect(nodeInfo({ nodeId: 'mb-1', cluster: 'edge', proxy: 'embedded', interfaces: [IFACES[1]!], probe })).toEqual({
      id: 'mb-1',
      cluster: 'edge',
      user_agent_name: 'ebpf-xds-agent',
      user_agent_version: agentVersion(),
      metadata: { agent_version: agentVersion(), proxy: 'embedded', kernel: '6.18.44-x', attach_types: ['sk_lookup', 'xdp'], interfaces: [{ name: 'eth0', index: 2, addresses: ['10.0.0.1/24'] }] },
    });
    expect(kernelVersion('6.18.44-fc')).toEqual([6, 18]);
    expect(kernelVersion('bogus')).toEqual([0, 0]);
  });
});

/** A proxy stand-in: records what it is asked to serve and fails the listener versions it is told to. */
class FakeServer implements ListenerServer {
  applied: DesiredState[] = [];
  refuse = new Map<DesiredListener, string>();
  async apply(state: DesiredState): Promise<ListenerApplyResult[]> {
    this.applied.push(state);
    return state.listeners.map((l) => (this.refuse.has(l) ? { name: l.name, ok: false, error: this.refuse.get(l)! } : { name: l.name, ok: true }));
  }
  served(): Map<string, DesiredListener> {
    return new Map((this.applied[this.applied.length - 1]?.listeners ?? []).map((l) => [l.name, l]));
  }
}

function reconciler(supported: AttachProbe['supported'] = ['cgroup_sock', 'sk_lookup', 'sk_skb', 'sockops', 'tc', 'xdp']): { r: Reconciler; server: FakeServer } {
  const r = new Reconciler({
    // Never touched: these listeners need no kernel datapath and only loopback exists.
    pins: new PinLayout(join('/sys/fs/bpf/ebpf-xds-test', `unit-reconcile-${process.pid}`)),
    nodeId: 'n1',
    mode: 'embedded',
    cgroup: '/nonexistent',
    probe: { supported, missing: { sk_skb: 'the kernel does not load sk_skb programs' }, kernel: '6.18' },
    logger: silentLogger(),
    registry: new Registry(),
    inventory: async () => [LO],
    egress: async () => undefined,
  });
  const server = new FakeServer();
  r.useServer(server);
  return { r, server };
}

describe('reconciler listener semantics', () => {
  const state = (...listeners: DesiredListener[]): DesiredState => ({ listeners, clusters: [] });

  it('fails a listener on a missing interface alone, naming it, the node and the remedy', async () => {
    const { r, server } = reconciler();
    const report = await r.apply(state(listener('a'), listener('x', { mode: 'xdp', interface: { name: 'eth9' } })));
    expect(report.listeners).toEqual([
      { name: 'a', ok: true },
      { name: 'x', ok: false, error: 'listener "x": interface "eth9" not found on node n1 (have: lo); give the listener an interface that exists on this node, or a nodeSelector that leaves this node out', previousServes: false },
    ]);
    expect([...server.served().keys()]).toEqual(['a']);
  });

  it('keeps serving the previous version of a listener whose update the proxy refuses, or that no longer decodes', async () => {
    const { r, server } = reconciler();
    const v1 = listener('b', { ports: [{ start: 7001, end: 7001 }] });
    await r.apply(state(listener('a'), v1));
    const v2 = listener('b', { ports: [{ start: 7002, end: 7002 }] });
    server.refuse.set(v2, 'listener "b": port 7002 on 0.0.0.0 is in use (EADDRINUSE)');
    const report = await r.apply(state(listener('a'), v2));
    expect(report.listeners.find((l) => l.name === 'b')).toEqual({ name: 'b', ok: false, error: 'listener "b": port 7002 on 0.0.0.0 is in use (EADDRINUSE)', previousServes: true });
    server.refuse.clear();
    // The second pass gave the proxy the previous version back.
    expect(server.served().get('b')).toBe(v1);
    // An undecodable listener: its previous version stays.
    const report2 = await r.apply(state(listener('a')), new Map([['b', 'listener "b": network filter "x" is not supported']]));
    expect(report2.listeners.find((l) => l.name === 'b')).toMatchObject({ ok: false, previousServes: true });
    expect(server.served().get('b')).toBe(v1);
    // Removed for good.
    const report3 = await r.apply(state(listener('a')));
    expect(report3.listeners.map((l) => l.name)).toEqual(['a']);
    expect([...server.served().keys()]).toEqual(['a']);
  });

  it('falls back to the previous version before any pass when the update names a missing interface', async () => {
    const { r, server } = reconciler();
    const v1 = listener('b');
    await r.apply(state(listener('a'), v1));
    const applies = server.applied.length;
    const report = await r.apply(state(listener('a'), listener('b', { mode: 'xdp', interface: { name: 'eth9' } })));
    expect(report.listeners.find((l) => l.name === 'b')).toMatchObject({ ok: false, previousServes: true, error: expect.stringContaining('interface "eth9" not found on node n1') });
    // One pass, with v1 in it: no pass ran without "b" (which would detach what it uses, then attach it again).
    expect(server.applied.length).toBe(applies + 1);
    expect(server.served().get('b')).toBe(v1);
  });

  it('refuses an SKB listener where the node cannot load the programs, saying why', async () => {
    const { r } = reconciler(['cgroup_sock', 'sk_lookup', 'sockops', 'tc', 'xdp']);
    const report = await r.apply(state(listener('s', { mode: 'skb' })));
    expect(report.listeners[0]).toMatchObject({ ok: false, error: 'listener "s": SKB splice is not available on node n1: sk_skb: the kernel does not load sk_skb programs' });
    expect(r.status().failed.map((f) => f.name)).toEqual(['s']);
  });
});
