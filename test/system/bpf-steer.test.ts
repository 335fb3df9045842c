import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SteerDatapath } from '../../src/agent/bpf/datapath-steer.js';
import { bpfTestEnv, type BpfTestEnv } from '../support/bpf-env.js';
import { Topology } from '../support/netns.js';
import { startListener, tcpProbe } from '../support/tcp-probe.js';

// sk_lookup steering in a listener's namespace: connections to three extra ports and to every
// port of a range land on the one listening socket, over IPv4 and IPv6; other ports do not.
describe('sk_lookup port steering', () => {
  let topo: Topology;
  let env: BpfTestEnv;
  let steer: SteerDatapath;
  let listener: Awaited<ReturnType<typeof startListener>>;

  beforeAll(async () => {
    env = bpfTestEnv('steer');
    topo = await Topology.create({ label: 'steer', hosts: ['client', 'mb'], links: [{ a: 'client', b: 'mb' }] });
    steer = SteerDatapath.attach({ pins: env.pins, netns: topo.host('mb').nsPath });
    listener = await startListener(topo.host('mb'), { pins: env.pins.steer, slot: 3 });
  });

  afterAll(async () => {
    try {
      await listener?.stop();
      steer?.detach();
    } finally {
      await topo?.destroy();
      env?.cleanup();
    }
  });

  it('brings three ports and a range to one listener, IPv4 and IPv6', async () => {
    steer.setPorts(3, [7001, 7002, '7003', '7100-7104']);
    expect(steer.portsOf(3)).toEqual([7001, 7002, 7003, 7100, 7101, 7102, 7103, 7104]);
    const before = steer.counters();
    const mb = topo.iface('mb', 'client');
    for (const addr of [mb.ipv4, mb.ipv6]) {
      for (const port of [7001, 7002, 7003, 7100, 7102, 7104]) {
        const r = await tcpProbe(topo.host('client'), addr, port);
        // the listener answers with the port the client dialled: one socket, many ports
        expect(r, `${addr} port ${port}`).toEqual({ outcome: 'connected', reply: `port ${port}` });
      }
      // its own port still works; a port nobody claims is refused as usual
      expect((await tcpProbe(topo.host('client'), addr, listener.port)).reply).toBe(`port ${listener.port}`);
      expect((await tcpProbe(topo.host('client'), addr, 7105)).outcome).toBe('refused');
    }
    const after = steer.counters();
    expect(Number(after.assigned - before.assigned)).toBeGreaterThanOrEqual(12);
    expect(after.assign_errors).toBe(0n);
  });

  it('stops steering ports taken away, and refuses a port another listener claims', async () => {
    steer.setPorts(3, [7001]);
    expect(steer.portsOf(3)).toEqual([7001]);
    expect((await tcpProbe(topo.host('client'), topo.iface('mb', 'client').ipv4, 7002)).outcome).toBe('refused');
    expect(() => steer.setPorts(4, [7001])).toThrow(/7001 already lead to listener slot 3/);
    expect(() => steer.setPorts(3, ['70000'])).toThrow(/within 1-65535/);
    expect(() => steer.setPorts(3, ['7005-7001'])).toThrow(/start at or below its end/);
    expect(steer.portsOf(3)).toEqual([7001]); // bad input changed nothing
  });

  it('counts a steered port whose slot holds no socket, and lets the kernel decide', async () => {
    steer.setPorts(9, [7300]);
    const before = steer.counters();
    expect((await tcpProbe(topo.host('client'), topo.iface('mb', 'client').ipv4, 7300)).outcome).toBe('refused');
    expect(steer.counters().no_socket - before.no_socket).toBeGreaterThanOrEqual(1n);
  });
});
