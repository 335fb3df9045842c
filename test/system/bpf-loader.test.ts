import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroup2Mount } from '../../src/agent/bpf/cgroup.js';
import { SkbDatapath } from '../../src/agent/bpf/datapath-skb.js';
import { PairState } from '../../src/agent/bpf/layout-skb.js';
import { BpfError } from '../../src/agent/bpf/errors.js';
import { bpfFdInfo, tcAttach, tcDetach, tcHookDestroy, tcQuery } from '../../src/agent/bpf/link.js';
import { BpfMap, MapType, PerCpuMap, TypedMap } from '../../src/agent/bpf/map.js';
import { possibleCpus } from '../../src/agent/bpf/map.js';
import { ifIndex, withNetns } from '../../src/agent/bpf/netns.js';
import { BpfObject } from '../../src/agent/bpf/object.js';
import { bpfObjectPath } from '../../src/agent/bpf/objects.js';
import { listPins } from '../../src/agent/bpf/pins.js';
import { defineStruct, U32, U64 } from '../../src/agent/bpf/struct-codec.js';
import { ipToBytes } from '../../src/agent/bpf/ip-bytes.js';
import { bpfTestEnv, type BpfTestEnv } from '../support/bpf-env.js';
import { Topology } from '../support/netns.js';
import { tcpProbe, startListener } from '../support/tcp-probe.js';

// The libbpf loader against the real kernel: pins reused across re-opens, links adopted rather
// than attached twice, complete and idempotent detach, verifier rejections with their log,
// map iteration (batch and key by key), per-CPU sums, tc attachments, BPF_PROG_TEST_RUN.
describe('libbpf loader', () => {
  let env: BpfTestEnv;

  beforeAll(() => {
    env = bpfTestEnv('loader');
  });
  afterAll(() => env?.cleanup());

  it('reuses pinned maps when the object is opened again', () => {
    const dir = join(env.pins.root, 'reuse');
    const a = BpfObject.load(bpfObjectPath('skb_splice'), { pinDir: dir });
    const pairs = a.map('skb_pairs');
    const key = Buffer.from([0x5c, 0x11, 0, 0, 0, 0, 0, 0]);
    const value = Buffer.from([7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    pairs.update(key, value);
    const id = pairs.meta.id ?? BpfMap.openPinned(join(dir, 'skb_pairs')).meta.id;
    a.close();
    const b = BpfObject.load(bpfObjectPath('skb_splice'), { pinDir: dir });
    try {
      expect(b.mapPinPath('skb_pairs')).toBe(join(dir, 'skb_pairs'));
      expect(b.map('skb_pairs').lookup(key)).toEqual(value);
      const pinned = BpfMap.openPinned(join(dir, 'skb_pairs'));
      expect(pinned.meta).toMatchObject({ name: 'skb_pairs', type: MapType.HASH, keySize: 8, valueSize: 16, id });
      pinned.close();
    } finally {
      b.close();
    }
  });

  it('refuses a pinned map that no longer matches, saying what to do', () => {
    const dir = join(env.pins.root, 'mismatch');
    BpfObject.load(bpfObjectPath('skb_splice'), { pinDir: dir }).close();
    let err: unknown;
    try {
      BpfObject.load(bpfObjectPath('skb_splice'), { pinDir: dir, maxEntries: { skb_pairs: 1234 } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfError);
    expect((err as BpfError).message).toMatch(/load BPF object .*skb_splice\.bpf\.o failed/);
    expect((err as BpfError).remedy).toMatch(/unpin the old datapath/);
    expect((err as BpfError).libbpfLog.join('\n')).toMatch(/skb_pairs/);
  });

  it('carries the verifier log tail when the verifier rejects a program', () => {
    let err: BpfError | undefined;
    try {
      BpfObject.load(bpfObjectPath('test/verifier_reject'));
    } catch (e) {
      err = e as BpfError;
    }
    expect(err).toBeInstanceOf(BpfError);
    expect(err!.program).toBe('exds_test_reject');
    expect(err!.code).toBe('EACCES');
    expect(err!.verifierLog).toMatch(/invalid access to packet/);
    expect(err!.verifierTail).toMatch(/invalid access to packet/);
    expect(err!.message).toMatch(/verifier rejected program "exds_test_reject"[\s\S]*invalid access to packet/);
    expect(err!.libbpfLog.some((l) => /failed to load/.test(l))).toBe(true);
  });

  it('names a missing object and how to build it', () => {
    expect(() => BpfObject.load('/nonexistent/x.bpf.o')).toThrow(/open BPF object \/nonexistent\/x\.bpf\.o failed: .*\(ENOENT\)[\s\S]*npm run build:bpf/);
  });

  it('adopts its own pinned links on restart instead of attaching twice, and detaches completely and idempotently', () => {
    const first = SkbDatapath.attach({ pins: env.pins, cgroup: env.cgroup });
    const ids = { release: first.links.release.info()!.id, verdict: first.links.verdict.info()!.id };
    expect(first.links.release.adopted).toBe(false);
    first.maps.pairs.update({ v: 4444n }, { peer_cookie: 5555n, state: PairState.ARMED });
    first.release(); // agent exit: everything stays

    const second = SkbDatapath.attach({ pins: env.pins, cgroup: env.cgroup });
    expect(second.links.release.adopted).toBe(true);
    expect(second.links.verdict.adopted).toBe(true);
    expect(second.links.release.info()!.id).toBe(ids.release);
    expect(second.links.verdict.info()!.id).toBe(ids.verdict);
    // the adopted link now runs the newly loaded program, not the first agent's
    const progId = (name: string) => Number(bpfFdInfo(second.object.program(name).fd)['prog_id']);
    expect(second.links.release.info()!.progId).toBe(progId('exds_skb_release'));
    expect(second.links.verdict.info()!.progId).toBe(progId('exds_skb_verdict'));
    expect(second.maps.pair(4444n)).toEqual({ peer_cookie: 5555n, state: PairState.ARMED }); // map contents survived
    second.maps.forget(4444n);
    const attached = readdirSync(env.pins.skb).sort();
    expect(attached).toEqual(['link_release', 'link_verdict', 'skb_pairs', 'skb_sock_stats', 'skb_socks', 'skb_stats']);

    second.detach();
    expect(existsSync(env.pins.skb)).toBe(false);
    expect(() => second.detach()).not.toThrow();
    expect(() => SkbDatapath.detachPinned(env.pins.skb)).not.toThrow();
  });

  it('refuses the root cgroup unless asked to', () => {
    expect(() => SkbDatapath.attach({ pins: env.pins, cgroup: cgroup2Mount() })).toThrow(/refusing to attach the SKB splice to the root cgroup/);
    expect(existsSync(join(env.pins.skb, 'link_release'))).toBe(false);
    SkbDatapath.detachPinned(env.pins.skb);
  });

  it('iterates maps by batch and key by key, and sums per-CPU values', () => {
    const obj = BpfObject.load(bpfObjectPath('skb_splice'), { pinDir: join(env.pins.root, 'iter') });
    try {
      const Val = defineStruct('exds_skb_pair', [
        ['peer_cookie', 'u64'],
        ['state', 'u32'],
        ['_pad', 'u32'],
      ] as const);
      const pairs = new TypedMap(obj.map('skb_pairs'), U64, Val);
      for (let i = 1n; i <= 3000n; i++) pairs.update({ v: i }, { peer_cookie: i * 2n, state: 1 });
      const viaBatch = pairs.entries();
      const viaKeys = pairs.keys();
      expect(viaBatch).toHaveLength(3000);
      expect(viaKeys).toHaveLength(3000);
      expect(new Set(viaBatch.map((e) => e.key.v))).toEqual(new Set(viaKeys.map((k) => k.v)));
      expect(viaBatch.every((e) => e.value.peer_cookie === e.key.v * 2n)).toBe(true);
      expect(pairs.clear()).toBe(3000);

      const stats = obj.map('skb_stats');
      expect(stats.isPerCpu).toBe(true);
      const Stats = defineStruct('counters', Array.from({ length: stats.meta.valueSize / 8 }, (_, i) => [`c${i}`, 'u64'] as const));
      const per = new PerCpuMap(stats, U32, Stats);
      const one = Object.fromEntries(Stats.fields.map((f) => [f.name, 5n])) as never;
      per.updateAll({ v: 0 }, one);
      const sum = per.lookupSum({ v: 0 }) as Record<string, bigint>;
      expect(sum['c0']).toBe(5n * BigInt(possibleCpus()));
      expect(per.lookupPerCpu({ v: 0 })).toHaveLength(possibleCpus());
    } finally {
      obj.close();
    }
  });

  describe('tc attachments and BPF_PROG_TEST_RUN', () => {
    let topo: Topology;
    beforeAll(async () => {
      topo = await Topology.create({ label: 'ldr', hosts: ['a', 'b'], links: [{ a: 'a', b: 'b' }] });
    });
    afterAll(async () => topo?.destroy());

    it('attaches a tc program through libbpf, replaces it in place, and removes it idempotently', async () => {
      const obj = BpfObject.load(bpfObjectPath('test/tc_count'), { pinDir: join(env.pins.root, 'tc') });
      try {
        const ns = topo.host('b').nsPath;
        const ifname = topo.iface('b', 'a').name;
        const spec = { ifindex: withNetns(ns, () => ifIndex(ifname)), point: 'ingress' as const };
        const first = withNetns(ns, () => tcAttach(obj.program('exds_test_tc'), spec));
        expect(first.createdHook).toBe(true);
        const again = withNetns(ns, () => tcAttach(obj.program('exds_test_tc'), spec)); // a restart: replaces
        expect(again.createdHook).toBe(false);
        expect(withNetns(ns, () => tcQuery(spec))).toBe(again.progId);
        const l = await startListener(topo.host('b'));
        expect((await tcpProbe(topo.host('a'), topo.iface('b', 'a').ipv4, l.port)).outcome).toBe('connected');
        await l.stop();
        const seen = obj.map('tc_seen').lookup(U32.encode({ v: 0 }))!.readBigUInt64LE(0);
        expect(seen).toBeGreaterThan(0n);
        withNetns(ns, () => tcDetach(spec));
        expect(withNetns(ns, () => tcQuery(spec))).toBeUndefined();
        withNetns(ns, () => tcDetach(spec)); // idempotent
        withNetns(ns, () => tcHookDestroy(spec.ifindex));
        expect(await topo.host('b').exec('tc', ['qdisc', 'show', 'dev', ifname])).not.toMatch(/clsact/);
      } finally {
        obj.close();
      }
    });
  });

  it('rewrites addresses, ports, seq and ack with incremental checksums only (BPF_PROG_TEST_RUN)', () => {
    const obj = BpfObject.load(bpfObjectPath('test/csum_selftest'));
    try {
      const Cfg = defineStruct('csum_cfg', [
        ['saddr', { bytes: 16 }],
        ['daddr', { bytes: 16 }],
        ['sport_be', 'be16'],
        ['dport_be', 'be16'],
        ['seq_delta', 'u32'],
        ['ack_delta', 'u32'],
        ['parse_result', 'u32'],
        ['l4_off', 'u32'],
      ] as const);
      const cfgMap = new TypedMap(obj.map('csum_cfg'), U32, Cfg);
      for (const family of [4, 6] as const) {
        for (const payload of [0, 1, 513]) {
          const pkt = buildTcpPacket(family, payload);
          const cfg = {
            saddr: ipBytes(family === 4 ? '10.9.8.7' : 'fd00:aa::7'),
            daddr: ipBytes(family === 4 ? '192.0.2.200' : 'fd00:bb::c8'),
            sport_be: 40000,
            dport_be: 443,
            seq_delta: 0xfffff000, // wraps
            ack_delta: 12345,
            parse_result: 99,
            l4_off: 0,
          };
          cfgMap.update({ v: 0 }, cfg);
          const out = obj.program('exds_test_csum').testRun({ data: pkt, repeat: 1 }).dataOut;
          expect(cfgMap.lookup({ v: 0 })!.parse_result).toBe(0);
          expect(out.length).toBe(pkt.length);
          const v = verifyTcpPacket(out, family);
          expect(v.ipChecksumOk, `IPv${family} header checksum, payload ${payload}`).toBe(true);
          expect(v.tcpChecksumOk, `IPv${family} TCP checksum, payload ${payload}`).toBe(true);
          expect(v.sport).toBe(40000);
          expect(v.dport).toBe(443);
          expect(v.seq).toBe((0x11223344 + 0xfffff000) >>> 0);
          expect(v.ack).toBe((0x55667788 + 12345) >>> 0);
          expect(v.saddr).toEqual(Buffer.from(family === 4 ? cfg.saddr.subarray(12) : cfg.saddr));
        }
      }
    } finally {
      obj.close();
    }
  });

  it('leaves only what tests remove themselves: every pin is under the test root', () => {
    for (const p of listPins(env.pins.root)) expect(p.startsWith(env.pins.root)).toBe(true);
  });
});

// ---- crafted packets, checked with an independent checksum (RFC 1071, computed in full) ------

function ipBytes(ip: string): Uint8Array {
  return ipToBytes(ip);
}

function sum16(buf: Buffer, acc = 0): number {
  for (let i = 0; i + 1 < buf.length; i += 2) acc += buf.readUInt16BE(i);
  if (buf.length % 2) acc += buf[buf.length - 1]! << 8;
  return acc;
}

function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
  return acc;
}

function buildTcpPacket(family: 4 | 6, payload: number): Buffer {
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(family === 4 ? 0x0800 : 0x86dd, 12);
  // TCP header with options: NOP NOP TS, then MSS at an odd place to make it unusual
  const tcp = Buffer.alloc(32);
  tcp.writeUInt16BE(12345, 0);
  tcp.writeUInt16BE(80, 2);
  tcp.writeUInt32BE(0x11223344, 4);
  tcp.writeUInt32BE(0x55667788, 8);
  tcp.writeUInt8(8 << 4, 12);
  tcp.writeUInt8(0x18, 13);
  tcp.writeUInt16BE(501, 14);
  Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]).copy(tcp, 20);
  const data = Buffer.alloc(payload, 0xab);
  const l4 = Buffer.concat([tcp, data]);
  let ip: Buffer;
  let pseudo: Buffer;
  if (family === 4) {
    ip = Buffer.alloc(20);
    ip.writeUInt8(0x45, 0);
    ip.writeUInt16BE(20 + l4.length, 2);
    ip.writeUInt8(64, 8);
    ip.writeUInt8(6, 9);
    Buffer.from([10, 0, 0, 1]).copy(ip, 12);
    Buffer.from([10, 0, 0, 2]).copy(ip, 16);
    ip.writeUInt16BE(0xffff - fold(sum16(ip)), 10);
    pseudo = Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 6]), u16(l4.length)]);
  } else {
    ip = Buffer.alloc(40);
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(l4.length, 4);
    ip.writeUInt8(6, 6);
    ip.writeUInt8(64, 7);
    Buffer.from(ipBytes('fd00::1')).copy(ip, 8);
    Buffer.from(ipBytes('fd00::2')).copy(ip, 24);
    pseudo = Buffer.concat([ip.subarray(8, 40), u32(l4.length), Buffer.from([0, 0, 0, 6])]);
  }
  l4.writeUInt16BE(0xffff - fold(sum16(l4, sum16(pseudo))), 16);
  return Buffer.concat([eth, ip, l4]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function verifyTcpPacket(pkt: Buffer, family: 4 | 6) {
  const ipLen = family === 4 ? 20 : 40;
  const ip = pkt.subarray(14, 14 + ipLen);
  const l4 = pkt.subarray(14 + ipLen);
  const pseudo =
    family === 4 ? Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 6]), u16(l4.length)]) : Buffer.concat([ip.subarray(8, 40), u32(l4.length), Buffer.from([0, 0, 0, 6])]);
  return {
    ipChecksumOk: family === 6 || fold(sum16(ip)) === 0xffff,
    tcpChecksumOk: fold(sum16(l4, sum16(pseudo))) === 0xffff,
    saddr: Buffer.from(family === 4 ? ip.subarray(12, 16) : ip.subarray(8, 24)),
    sport: l4.readUInt16BE(0),
    dport: l4.readUInt16BE(2),
    seq: l4.readUInt32BE(4),
    ack: l4.readUInt32BE(8),
  };
}
