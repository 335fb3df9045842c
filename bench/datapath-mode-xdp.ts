// The XDP modes of bench/datapath.ts (picked up through its mode registry): XDP splice, and the
// minimal XDP forwarder that is its reference. On veth, attaching any XDP program costs the
// peers GSO/GRO aggregation (KERNEL-NOTES.md), so the fair limit for XDP splice is an XDP
// forwarder, not kernel routing; both run with the same interface settings: the client and
// server send complete checksums (tx checksum offload off: a partial checksum does not survive
// an XDP redirect) and receive with GRO on (NAPI, which veth needs to take redirected frames).
// Both settings are restored after each run.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { XdpDatapath } from '../src/agent/bpf/datapath-xdp.js';
import { FwdStats } from '../src/agent/bpf/layout-xdp.js';
import { attachPinned, type AttachedLink } from '../src/agent/bpf/link.js';
import { PerCpuMap } from '../src/agent/bpf/map.js';
import { ifIndex, withNetns } from '../src/agent/bpf/netns.js';
import { BpfObject } from '../src/agent/bpf/object.js';
import { bpfObjectPath } from '../src/agent/bpf/objects.js';
import { removePinTree } from '../src/agent/bpf/pins.js';
import { U32 } from '../src/agent/bpf/struct-codec.js';
import type { Host } from '../test/support/netns.js';
import { startXdpProxy } from '../test/support/xdp-proxy.js';
import { fmtBytes, type BenchTopology, type DatapathMode, type ModeInstance } from './datapath-modes.js';

const MB_IFS = ['eth0', 'eth1'];

/** Sets tx checksum offload off and GRO on for eth0 of the given hosts; returns the undo. */
async function prepareEnds(hosts: Host[]): Promise<() => Promise<void>> {
  const undo: Array<() => Promise<unknown>> = [];
  for (const h of hosts) {
    const k = await h.exec('ethtool', ['-k', 'eth0']);
    const tx = /^tx-checksumming: (on|off)/m.exec(k)?.[1] ?? 'on';
    const gro = /^generic-receive-offload: (on|off)/m.exec(k)?.[1] ?? 'off';
    await h.exec('ethtool', ['-K', 'eth0', 'tx', 'off', 'gro', 'on']);
    undo.push(() => h.exec('ethtool', ['-K', 'eth0', 'tx', tx, 'gro', gro]));
  }
  return async () => {
    for (const u of undo) await u();
  };
}

const xdpForwarder: DatapathMode = {
  id: 'xdp-fwd',
  label: 'minimal XDP forwarder',
  description:
    'no proxy: an XDP program on both middlebox interfaces routes every packet itself (bpf_fib_lookup, TTL, MAC rewrite, devmap redirect); the XDP limit on veth. Client and server send complete checksums and receive with GRO',
  async start(t: BenchTopology, port: number): Promise<ModeInstance> {
    const restore = await prepareEnds([t.client, t.server]);
    const dir = join(t.env.pins.root, 'bench-xdp-fwd');
    mkdirSync(dir, { recursive: true });
    const obj = BpfObject.load(bpfObjectPath('xdp_fwd'));
    const links: AttachedLink[] = [];
    try {
      withNetns(t.mb.nsPath, () => {
        for (const name of MB_IFS) {
          const ifindex = ifIndex(name);
          const k = U32.encode({ v: ifindex });
          obj.map('fwd_tx_ports').update(k, k);
          links.push(attachPinned(obj.program('exds_xdp_fwd'), { kind: 'xdp', ifindex, ifname: name }, join(dir, `link_${name}`)));
        }
      });
    } catch (e) {
      for (const l of links) l.detach();
      obj.close();
      removePinTree(dir);
      await restore();
      throw e;
    }
    const stats = new PerCpuMap(obj.map('fwd_stats'), U32, FwdStats);
    return {
      host: t.serverAddr,
      port,
      async notes() {
        const s = stats.lookupSum({ v: 0 })!;
        return `forwarded ${s.forwarded} packets in XDP, passed ${s.passed}`;
      },
      async stop() {
        for (const l of links) l.detach();
        obj.close();
        removePinTree(dir);
        await restore();
      },
    };
  },
};

const xdpSplice: DatapathMode = {
  id: 'xdp-splice',
  label: 'XDP splice',
  description:
    'the splice proxy fixture forwards the first bytes in user space, then pairs the connections in XDP (bpf/xdp_splice.bpf.c): every later packet is rewritten and redirected without the middlebox TCP stack; a connection that ends before it could be paired is copied in user space (counted in the notes). Same interface settings as the XDP forwarder',
  async start(t: BenchTopology, port: number): Promise<ModeInstance> {
    const restore = await prepareEnds([t.client, t.server]);
    let dp: XdpDatapath | undefined;
    try {
      dp = XdpDatapath.attach({ pins: t.env.pins, interfaces: MB_IFS, netns: t.mb.nsPath });
      const proxy = await startXdpProxy(t.mb, { upstream: `${t.serverAddr}:${port}`, maps: XdpDatapath.dirOf(t.env.pins) });
      const before = dp.counters();
      const datapath = dp;
      // The fixture reports a connection once it has ended (for a spliced one: once XDP removed
      // its pair); wait until the reports stop coming and no pair is left.
      const settle = async () => {
        for (let quiet = 0, seen = -1, i = 0; quiet < 6 && i < 200; i++) {
          await new Promise((r) => setTimeout(r, 50));
          quiet = proxy.conns.length === seen && datapath.maps.count() === 0 ? quiet + 1 : 0;
          seen = proxy.conns.length;
        }
      };
      return {
        host: t.mbAddr,
        port: proxy.port,
        async notes() {
          await settle();
          const c = datapath.counters();
          const modes = proxy.conns.reduce<Record<string, number>>((acc, x) => ({ ...acc, [x.mode]: (acc[x.mode] ?? 0) + 1 }), {});
          const user = proxy.conns.reduce((a, x) => a + x.userBytes.downstreamToUpstream + x.userBytes.upstreamToDownstream, 0);
          return `spliced ${fmtBytes(Number(c.spliced_bytes - before.spliced_bytes))} in XDP, ${fmtBytes(user)} copied in user space; connections by path ${JSON.stringify(modes)}`;
        },
        async stop() {
          await settle();
          await proxy.stop();
          datapath.detach();
          await restore();
        },
      };
    } catch (e) {
      dp?.detach();
      await restore();
      throw e;
    }
  },
};

export const modes: DatapathMode[] = [xdpForwarder, xdpSplice];
