import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirewallDatapath } from '../../src/agent/bpf/datapath-firewall.js';
import { bpfTestEnv, type BpfTestEnv } from '../support/bpf-env.js';
import { Topology } from '../support/netns.js';
import { startListener, tcpProbe } from '../support/tcp-probe.js';

// XDP drop rules on the server's interface: traffic from a blocked CIDR (IPv4, and IPv6 scoped
// to one port) is dropped at XDP and counted per rule; everything else passes untouched.
describe('XDP drop rules', () => {
  let topo: Topology;
  let env: BpfTestEnv;
  let fw: FirewallDatapath;
  const listeners: Array<Awaited<ReturnType<typeof startListener>>> = [];
  let portA = 0;
  let portB = 0;

  beforeAll(async () => {
    env = bpfTestEnv('fw');
    topo = await Topology.create({
      label: 'fw',
      hosts: ['client', 'mb', 'server'],
      links: [
        { a: 'client', b: 'mb' },
        { a: 'mb', b: 'server' },
      ],
      gateways: { client: 'mb', server: 'mb' },
      routers: ['mb'],
    });
    for (const _ of [0, 1]) listeners.push(await startListener(topo.host('server')));
    portA = listeners[0]!.port;
    portB = listeners[1]!.port;
    fw = FirewallDatapath.attach({ pins: env.pins, ifname: topo.iface('server', 'mb').name, netns: topo.host('server').nsPath });
  });

  afterAll(async () => {
    try {
      for (const l of listeners) await l.stop();
      fw?.detach();
    } finally {
      await topo?.destroy();
      env?.cleanup();
    }
  });

  it('drops and counts a blocked IPv4 CIDR and an IPv6 CIDR scoped to one port; the rest passes', async () => {
    const client = topo.iface('client', 'mb');
    fw.setRules([{ cidr: `${client.ipv4.replace(/\.\d+$/, '.0')}/24` }, { cidr: `${client.ipv6.replace(/::1$/, '::')}/64`, ports: [portA] }]);
    const server = topo.iface('server', 'mb');
    const before = fw.counters();

    // IPv4 from the blocked client network: dropped on every port
    expect((await tcpProbe(topo.host('client'), server.ipv4, portA, { timeoutMs: 800 })).outcome).toBe('timeout');
    expect((await tcpProbe(topo.host('client'), server.ipv4, portB, { timeoutMs: 800 })).outcome).toBe('timeout');
    // the same server from the middlebox's own address passes
    expect(await tcpProbe(topo.host('mb'), server.ipv4, portA)).toEqual({ outcome: 'connected', reply: `port ${portA}` });
    // IPv6 from the client: dropped on portA only
    expect((await tcpProbe(topo.host('client'), server.ipv6, portA, { timeoutMs: 800 })).outcome).toBe('timeout');
    expect(await tcpProbe(topo.host('client'), server.ipv6, portB)).toEqual({ outcome: 'connected', reply: `port ${portB}` });

    const counts = fw.counts();
    expect(counts[0]!.packets).toBeGreaterThanOrEqual(2n); // at least one SYN per blocked IPv4 attempt
    expect(counts[0]!.bytes).toBeGreaterThan(counts[0]!.packets * 54n);
    expect(counts[1]!.packets).toBeGreaterThanOrEqual(1n);
    const after = fw.counters();
    expect(after.dropped - before.dropped).toBe(counts[0]!.packets + counts[1]!.packets);
    expect(after.passed).toBeGreaterThan(before.passed);
  });

  it('refuses bad rules without changing the installed ones, and lifts rules that are removed', async () => {
    const installed = fw.counts().map((c) => c.rule);
    expect(() => fw.setRules([{ cidr: '10.0.0.0/33' }])).toThrow(/drop rule 1: .*prefix length must be 0..32/);
    expect(() => fw.setRules([{ cidr: '10.0.0.0/8', ports: [70000] }])).toThrow(/port 70000/);
    expect(() => fw.setRules([{ cidr: '10.0.0.0/8' }, { cidr: '10.1.2.3/8' }])).toThrow(/repeats rule 1/);
    expect(fw.counts().map((c) => c.rule)).toEqual(installed);

    fw.setRules([]);
    expect(fw.rules.count()).toBe(0);
    expect(await tcpProbe(topo.host('client'), topo.iface('server', 'mb').ipv4, portA)).toEqual({ outcome: 'connected', reply: `port ${portA}` });
  });
});
