import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { XdpDatapath, XdpMaps, type XdpConnValue, type XdpKeyValue } from '../../src/agent/bpf/datapath-xdp.js';
import { ipToBytes } from '../../src/agent/bpf/ip-bytes.js';
import { FwdStats, XDP_META_MAGIC, XdpConn, XdpEvent, XdpFlag, XdpKey, XdpMeta, XdpState, XdpStats } from '../../src/agent/bpf/layout-xdp.js';
import { PerCpuMap } from '../../src/agent/bpf/map.js';
import { withNetns } from '../../src/agent/bpf/netns.js';
import { BpfObject, type BpfProgram } from '../../src/agent/bpf/object.js';
import { bpfObjectPath } from '../../src/agent/bpf/objects.js';
import { listPins, PinLayout, removePinTree } from '../../src/agent/bpf/pins.js';
import { U32 } from '../../src/agent/bpf/struct-codec.js';
import { blankConn } from '../../src/agent/proxy/xdp-pairing.js';
import { Topology, type Iface } from '../support/netns.js';
import { add32, buildFrame, decodeFrame, type FrameSpec, type TcpOption } from '../support/xdp-packets.js';

// The XDP splice program, the TC egress guard and the minimal forwarder on crafted packets
// (BPF_PROG_TEST_RUN, run inside a namespace so that bpf_fib_lookup has routes and neighbours).
// Every rewritten frame is checked with checksums computed from scratch in TypeScript.
const XDP_DROP = 1;
const XDP_PASS = 2;
const XDP_REDIRECT = 4;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

describe('XDP splice program (BPF_PROG_TEST_RUN)', () => {
  let topo: Topology;
  let root: string;
  let xdpObj: BpfObject;
  let guardObj: BpfObject;
  let fwdObj: BpfObject;
  let maps: XdpMaps;
  let prog: BpfProgram;
  let guard: BpfProgram;
  let ns: string;
  let toC: Iface; // middlebox interface facing the client
  let toS: Iface; // middlebox interface facing the server
  let cIf: Iface;
  let sIf: Iface;

  // Client C:40000 -> proxy M1 (toC.ipv4):4444; proxy M2 (toS.ipv4):50000 -> server S:9000.
  let c2sKey: XdpKeyValue;
  let s2cKey: XdpKeyValue;
  const SEQ_C2S = 0x1000_0000;
  const SEQ_S2C = 0xfffff000; // wraps
  const TS_C2S = 500_000;
  const TS_S2C = 0x8000_0010;

  const active = (over: Partial<XdpConnValue> = {}): [XdpConnValue, XdpConnValue] => {
    const base = blankConn(XdpState.ACTIVE, { idleMs: 60_000, ownerId: 7, nowNs: process.hrtime.bigint() });
    return [
      {
        ...base,
        flags: XdpFlag.TS,
        new_saddr: ipToBytes(toS.ipv4),
        new_daddr: ipToBytes(sIf.ipv4),
        new_sport_be: 50000,
        new_dport_be: 9000,
        seq_delta: SEQ_C2S,
        ack_delta: -SEQ_S2C >>> 0,
        tsval_delta: TS_C2S,
        tsecr_delta: -TS_S2C >>> 0,
        ...over,
      },
      {
        ...base,
        flags: XdpFlag.TS,
        new_saddr: ipToBytes(toC.ipv4),
        new_daddr: ipToBytes(cIf.ipv4),
        new_sport_be: 4444,
        new_dport_be: 40000,
        seq_delta: SEQ_S2C,
        ack_delta: -SEQ_C2S >>> 0,
        tsval_delta: TS_S2C,
        tsecr_delta: -TS_C2S >>> 0,
      },
    ];
  };
  const pair = (over: Partial<XdpConnValue> = {}) => {
    const [c2s, s2c] = active(over);
    maps.put(c2sKey, c2s);
    maps.put(s2cKey, s2c);
  };
  const fromClient = (over: Partial<FrameSpec> = {}): FrameSpec => ({
    saddr: cIf.ipv4,
    daddr: toC.ipv4,
    sport: 40000,
    dport: 4444,
    seq: 1000,
    ack: 2000,
    options: [{ kind: 'nop' }, { kind: 'nop' }, { kind: 'ts', tsval: 111, tsecr: 222 }],
    payload: 100,
    ...over,
  });
  const fromServer = (over: Partial<FrameSpec> = {}): FrameSpec => ({
    saddr: sIf.ipv4,
    daddr: toS.ipv4,
    sport: 9000,
    dport: 50000,
    seq: 7000,
    ack: 8000,
    options: [{ kind: 'nop' }, { kind: 'nop' }, { kind: 'ts', tsval: 333, tsecr: 444 }],
    payload: 0,
    ...over,
  });
  const xdpCtx = (frame: Buffer, ifindex: number) => {
    const ctx = Buffer.alloc(24); // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    ctx.writeUInt32LE(frame.length, 4);
    ctx.writeUInt32LE(ifindex, 12);
    return ctx;
  };
  const run = (p: BpfProgram, frame: Buffer, ingress?: number) =>
    withNetns(ns, () => p.testRun({ data: frame, ...(ingress ? { ctx: xdpCtx(frame, ingress) } : {}) }));
  const stats = () => maps.counters();

  beforeAll(async () => {
    topo = await Topology.create({
      label: 'xdpu',
      hosts: ['mb', 'c', 's'],
      links: [
        { a: 'mb', b: 'c' },
        { a: 'mb', b: 's' },
      ],
      routers: ['mb'],
    });
    ns = topo.host('mb').nsPath;
    toC = topo.iface('mb', 'c');
    toS = topo.iface('mb', 's');
    cIf = topo.iface('c', 'mb');
    sIf = topo.iface('s', 'mb');
    const mb = topo.host('mb');
    await mb.exec('ip', ['neigh', 'replace', cIf.ipv4, 'lladdr', cIf.mac, 'dev', toC.name, 'nud', 'permanent']);
    await mb.exec('ip', ['neigh', 'replace', sIf.ipv4, 'lladdr', sIf.mac, 'dev', toS.name, 'nud', 'permanent']);
    // A test run may name a veth as its ingress device only once the veth has NAPI (GRO on).
    await mb.exec('ethtool', ['-K', toC.name, 'gro', 'on']);
    root = join('/sys/fs/bpf/ebpf-xds-test', `xdpu-${process.pid}-${Date.now().toString(36)}`);
    const dir = join(root, 'xdp');
    mkdirSync(dir, { recursive: true });
    new PinLayout(root); // checks that the root is on bpffs
    xdpObj = BpfObject.load(bpfObjectPath('xdp_splice'), { pinDir: dir });
    guardObj = BpfObject.load(bpfObjectPath('tc_splice'), { pinDir: dir });
    fwdObj = BpfObject.load(bpfObjectPath('xdp_fwd'));
    maps = XdpMaps.fromObject(xdpObj);
    prog = xdpObj.program('exds_xdp_splice');
    guard = guardObj.program('exds_tc_splice_guard');
    withNetns(ns, () => {
      for (const i of [toC.ifindex, toS.ifindex]) {
        const k = U32.encode({ v: i });
        xdpObj.map('xdp_tx_ports').update(k, k);
        fwdObj.map('fwd_tx_ports').update(k, k);
      }
    });
    c2sKey = { saddr: ipToBytes(cIf.ipv4), daddr: ipToBytes(toC.ipv4), sport_be: 40000, dport_be: 4444 };
    s2cKey = { saddr: ipToBytes(sIf.ipv4), daddr: ipToBytes(toS.ipv4), sport_be: 9000, dport_be: 50000 };
  });

  afterAll(async () => {
    guardObj?.close();
    xdpObj?.close();
    fwdObj?.close();
    if (root) removePinTree(root);
    await topo?.destroy();
  });

  beforeEach(() => {
    maps.conns.clear();
    maps.stats.updateAll({ v: 0 }, XdpStats.decode(Buffer.alloc(XdpStats.size)));
  });

  it('mirrors the C layouts in its codecs (BTF sizes and offsets)', () => {
    for (const [obj, codec] of [
      [xdpObj, XdpKey],
      [xdpObj, XdpConn],
      [xdpObj, XdpStats],
      [guardObj, XdpConn],
      [fwdObj, FwdStats],
    ] as const) {
      const btf = obj.btfStruct(codec.name);
      expect(btf, codec.name).toBeDefined();
      expect(btf!.size, codec.name).toBe(codec.size);
      expect(btf!.members.map((m) => [m.name, m.offset])).toEqual(codec.fields.map((f) => [f.name, f.offset]));
    }
  });

  it('rewrites a client segment into the server connection: tuple, seq/ack, TS, MACs, checksums', () => {
    pair();
    const r = run(prog, buildFrame(fromClient()));
    expect(r.retval).toBe(XDP_REDIRECT);
    const f = decodeFrame(r.dataOut);
    expect(f.ipChecksumOk && f.tcpChecksumOk).toBe(true);
    expect([f.saddr, f.daddr, f.sport, f.dport]).toEqual([toS.ipv4, sIf.ipv4, 50000, 9000]);
    expect(f.seq).toBe(add32(1000, SEQ_C2S));
    expect(f.ack).toBe(add32(2000, -SEQ_S2C));
    expect(f.options).toContainEqual({ kind: 'ts', tsval: 111 + TS_C2S, tsecr: add32(222, -TS_S2C) });
    expect([f.srcMac, f.dstMac]).toEqual([toS.mac, sIf.mac]); // from bpf_fib_lookup
    expect(f.payload).toEqual(decodeFrame(buildFrame(fromClient())).payload);
    const st = stats();
    expect(st.spliced_packets).toBe(1n);
    expect(st.spliced_bytes).toBe(BigInt(r.dataOut.length));
    const e = maps.get(c2sKey)!;
    expect([e.packets, e.bytes]).toEqual([1n, BigInt(r.dataOut.length)]);
  });

  it('translates the other direction with sequence numbers that wrap around 2^32', () => {
    pair();
    const r = run(prog, buildFrame(fromServer({ seq: 0x2000, ack: 0xffff_fff0, payload: 1448 })));
    expect(r.retval).toBe(XDP_REDIRECT);
    const f = decodeFrame(r.dataOut);
    expect(f.ipChecksumOk && f.tcpChecksumOk).toBe(true);
    expect([f.saddr, f.daddr, f.sport, f.dport]).toEqual([toC.ipv4, cIf.ipv4, 4444, 40000]);
    expect(f.seq).toBe(add32(0x2000, SEQ_S2C));
    expect(f.ack).toBe(add32(0xffff_fff0, -SEQ_C2S));
    expect(f.options).toContainEqual({ kind: 'ts', tsval: add32(333, TS_S2C), tsecr: add32(444, -TS_C2S) });
  });

  it('shifts every SACK edge, D-SACK included, by the acknowledgment offset', () => {
    pair();
    const ack = 50_000;
    const blocks: Array<[number, number]> = [
      [ack - 1448, ack], // D-SACK: below the cumulative ACK (RFC 2883)
      [ack + 2896, ack + 4344],
      [ack + 5792, ack + 7240],
    ];
    const r = run(prog, buildFrame(fromClient({ ack, payload: 0, options: [{ kind: 'nop' }, { kind: 'nop' }, { kind: 'ts', tsval: 5, tsecr: 6 }, { kind: 'nop' }, { kind: 'nop' }, { kind: 'sack', blocks }] })));
    expect(r.retval).toBe(XDP_REDIRECT);
    const f = decodeFrame(r.dataOut);
    expect(f.tcpChecksumOk).toBe(true);
    const shift = (x: number) => add32(x, -SEQ_S2C);
    expect(f.ack).toBe(shift(ack));
    expect(f.options).toContainEqual({ kind: 'sack', blocks: blocks.map(([l, r2]) => [shift(l), shift(r2)]) });
  });

  it('finds TS options in any order and at odd offsets, translates each one, and keeps a zero TSecr', () => {
    pair();
    const opts: TcpOption[] = [
      { kind: 'sack', blocks: [[10, 20]] },
      { kind: 'nop' },
      { kind: 'ts', tsval: 0xffff_ffff, tsecr: 0 }, // odd offset; TSval wraps; TSecr 0 = nothing to echo
      { kind: 'ws', shift: 3 },
      { kind: 'ts', tsval: 77, tsecr: 88 },
      { kind: 'eol' },
    ];
    const r = run(prog, buildFrame(fromClient({ options: opts, payload: 33 })));
    expect(r.retval).toBe(XDP_REDIRECT);
    const f = decodeFrame(r.dataOut);
    expect(f.ipChecksumOk && f.tcpChecksumOk).toBe(true);
    expect(f.options.filter((o) => o.kind === 'ts')).toEqual([
      { kind: 'ts', tsval: add32(0xffff_ffff, TS_C2S), tsecr: 0 },
      { kind: 'ts', tsval: 77 + TS_C2S, tsecr: add32(88, -TS_S2C) },
    ]);
    expect(f.options).toContainEqual({ kind: 'sack', blocks: [[add32(10, -SEQ_S2C), add32(20, -SEQ_S2C)]] });
    expect(f.options).toContainEqual({ kind: 'ws', shift: 3 });
  });

  it('rescales the window when the legs announced different window scales, clamping at 65535', () => {
    const cases: Array<[number, number, number, number]> = [
      // window in, wscale_in, wscale_out, window out
      [65535, 0, 7, 511],
      [1000, 7, 0, 65535],
      [1000, 2, 4, 250],
      [3, 0, 2, 0],
    ];
    for (const [win, wIn, wOut, want] of cases) {
      pair({ flags: XdpFlag.TS | XdpFlag.RESCALE, wscale_in: wIn, wscale_out: wOut });
      const f = decodeFrame(run(prog, buildFrame(fromClient({ window: win }))).dataOut);
      expect(f.window, `${win} << ${wIn} >> ${wOut}`).toBe(want);
      expect(f.tcpChecksumOk).toBe(true);
    }
    pair(); // same scales: the window passes as is
    expect(decodeFrame(run(prog, buildFrame(fromClient({ window: 1234 }))).dataOut).window).toBe(1234);
  });

  it('sends a one-armed splice back out of the interface it came in on (devmap redirect, not XDP_TX)', () => {
    // Both peers behind the client-facing interface: the rewritten packet leaves where it came in.
    pair({ new_daddr: ipToBytes(cIf.ipv4), new_saddr: ipToBytes(toC.ipv4) });
    const r = run(prog, buildFrame(fromClient()), toC.ifindex);
    expect(r.retval).toBe(XDP_REDIRECT);
    const f = decodeFrame(r.dataOut);
    expect([f.srcMac, f.dstMac]).toEqual([toC.mac, cIf.mac]);
    expect(f.tcpChecksumOk).toBe(true);
  });

  it('passes non-TCP, non-IP and untracked traffic untouched', () => {
    pair();
    const udp = buildFrame(fromClient());
    udp[14 + 9] = 17; // protocol UDP (checksums do not matter: it must pass as is)
    const arp = Buffer.alloc(60);
    arp.writeUInt16BE(0x0806, 12);
    const untracked = buildFrame(fromClient({ sport: 40001 }));
    for (const frame of [udp, arp, untracked]) {
      const r = run(prog, frame);
      expect(r.retval).toBe(XDP_PASS);
      expect(r.dataOut).toEqual(frame);
    }
    expect(stats().spliced_packets).toBe(0n);
  });

  it('passes IP fragments of a tracked tuple untouched and counts them', () => {
    pair();
    const first = buildFrame(fromClient({ fragWord: 0x2000 })); // MF
    const later = buildFrame(fromClient({ fragWord: 0x0010 })); // offset 128 bytes: no TCP header
    for (const frame of [first, later]) {
      const r = run(prog, frame);
      expect(r.retval).toBe(XDP_PASS);
      expect(r.dataOut).toEqual(frame);
    }
    expect(stats().pass_fragment).toBe(1n);
    expect(stats().spliced_packets).toBe(0n);
  });

  it('passes malformed headers untouched: bad IHL, bad data offset, truncated or wrong-length options', () => {
    pair();
    const badIhl = buildFrame(fromClient({ override: { ihl: 4 } }));
    const doffTooBig = buildFrame(fromClient({ payload: 0, override: { doff: 15 } }));
    const doffTooSmall = buildFrame(fromClient({ override: { doff: 3 } }));
    const truncated = buildFrame(fromClient({ payload: 10, options: [{ kind: 'nop' }, { kind: 'raw', bytes: [8, 10, 0, 0, 0, 1] }, { kind: 'eol' }] }));
    const overrun = buildFrame(fromClient({ options: [{ kind: 'raw', bytes: [3, 9, 7, 0] }] }));
    const tsWrongLen = buildFrame(fromClient({ options: [{ kind: 'raw', bytes: [8, 6, 0, 0, 0, 1] }, { kind: 'nop' }, { kind: 'nop' }] }));
    const zeroLen = buildFrame(fromClient({ options: [{ kind: 'raw', bytes: [30, 0, 1, 1] }] }));
    const shortTotLen = buildFrame(fromClient({ override: { totLen: 30 } }));
    // Looks like Linux's NOP NOP TS NOP NOP SACK layout, but the SACK length is not 2 + 8n.
    const sackBadLen = buildFrame(fromClient({ options: [{ kind: 'nop' }, { kind: 'nop' }, { kind: 'ts', tsval: 1, tsecr: 2 }, { kind: 'nop' }, { kind: 'nop' }, { kind: 'raw', bytes: [5, 14, ...new Array<number>(12).fill(7)] }] }));
    for (const frame of [badIhl, doffTooBig, doffTooSmall, truncated, overrun, tsWrongLen, zeroLen, shortTotLen, sackBadLen]) {
      const r = run(prog, frame);
      expect(r.retval).toBe(XDP_PASS);
      expect(r.dataOut).toEqual(frame);
    }
    const st = stats();
    expect(st.pass_unparsed).toBe(3n); // IHL, data offset too big / too small
    expect(st.pass_malformed).toBe(6n); // option lengths, TS length, zero length, IP length below the headers, SACK length
    expect(st.spliced_packets).toBe(0n);
  });

  it('LEARN passes to the stack and keeps the newest TSval in serial-number order', () => {
    const learn = blankConn(XdpState.LEARN, { idleMs: 1000, ownerId: 0, nowNs: 0n });
    maps.put(c2sKey, learn);
    const ts = (tsval: number) => run(prog, buildFrame(fromClient({ options: [{ kind: 'nop' }, { kind: 'nop' }, { kind: 'ts', tsval, tsecr: 1 }] })));
    expect(ts(0xffff_fff0).retval).toBe(XDP_PASS);
    expect(maps.get(c2sKey)!.tsval_last).toBe(0xffff_fff0);
    ts(5); // newer: wrapped past 2^32
    ts(0xffff_ff00); // older: ignored
    const e = maps.get(c2sKey)!;
    expect(e.tsval_last).toBe(5);
    expect(e.events & XdpEvent.TS_SEEN).toBeTruthy();
    expect(e.last_seen_ns).toBeGreaterThan(0n);
    expect(stats().learned).toBe(3n);
    const plain = buildFrame(fromClient());
    expect(run(prog, plain).dataOut).toEqual(plain); // untouched
  });

  it('HOLD drops what would change the sockets (data, FIN) and passes pure ACKs and RST', () => {
    maps.put(c2sKey, blankConn(XdpState.HOLD, { idleMs: 1000, ownerId: 0, nowNs: 0n }));
    expect(run(prog, buildFrame(fromClient({ payload: 10 }))).retval).toBe(XDP_DROP);
    expect(run(prog, buildFrame(fromClient({ payload: 0, flags: { ack: true, fin: true } }))).retval).toBe(XDP_DROP);
    expect(run(prog, buildFrame(fromClient({ payload: 0, options: [{ kind: 'nop' }, { kind: 'nop' }, { kind: 'ts', tsval: 500, tsecr: 1 }] }))).retval).toBe(XDP_PASS);
    expect(run(prog, buildFrame(fromClient({ payload: 0, flags: { rst: true } }))).retval).toBe(XDP_PASS);
    const st = stats();
    expect([st.hold_dropped, st.hold_passed]).toEqual([2n, 2n]);
    expect(maps.get(c2sKey)!.tsval_last).toBe(500); // still learning
  });

  it('removes the pair after both FINs and the last ACK, forwarding each of them', () => {
    pair();
    // C sends FIN with 10 bytes: its FIN takes sequence number 1000 + 10 (client space).
    expect(run(prog, buildFrame(fromClient({ seq: 1000, payload: 10, flags: { ack: true, fin: true } }))).retval).toBe(XDP_REDIRECT);
    expect(maps.get(c2sKey)!.events & XdpEvent.FIN).toBeTruthy();
    const s2c = maps.get(s2cKey)!;
    expect(s2c.events & XdpEvent.PEER_FIN).toBeTruthy();
    expect(s2c.fin_ack).toBe(add32(1011, SEQ_C2S)); // the ACK S must send, in S's space
    // S acknowledges an earlier byte only: nothing changes.
    run(prog, buildFrame(fromServer({ ack: add32(1010, SEQ_C2S) })));
    expect(maps.get(s2cKey)!.events & XdpEvent.PEER_FIN_ACKED).toBe(0);
    // S acknowledges C's FIN and sends its own FIN in the same segment.
    expect(run(prog, buildFrame(fromServer({ seq: 7000, ack: add32(1011, SEQ_C2S), flags: { ack: true, fin: true } }))).retval).toBe(XDP_REDIRECT);
    expect(maps.get(c2sKey)!.events & XdpEvent.FIN_ACKED).toBeTruthy();
    expect(maps.count()).toBe(2);
    // C's last ACK acknowledges S's FIN (client space: 7001 + SEQ_S2C): forwarded, then both go.
    const last = run(prog, buildFrame(fromClient({ seq: 1011, ack: add32(7001, SEQ_S2C), payload: 0 })));
    expect(last.retval).toBe(XDP_REDIRECT);
    expect(decodeFrame(last.dataOut).ack).toBe(7001);
    expect(maps.count()).toBe(0);
    const st = stats();
    expect([st.fins, st.closed_fin]).toEqual([2n, 1n]);
  });

  it('forwards an RST and removes the pair at once; a SYN on a spliced tuple removes the stale pair', () => {
    pair();
    const r = run(prog, buildFrame(fromServer({ flags: { rst: true }, options: [] })));
    expect(r.retval).toBe(XDP_REDIRECT);
    expect(decodeFrame(r.dataOut).flags & 4).toBe(4);
    expect(maps.count()).toBe(0);
    pair();
    const syn = buildFrame(fromClient({ flags: { syn: true }, payload: 0 }));
    const r2 = run(prog, syn);
    expect(r2.retval).toBe(XDP_PASS);
    expect(r2.dataOut).toEqual(syn);
    expect(maps.count()).toBe(0);
    const st = stats();
    expect([st.closed_rst, st.closed_syn]).toEqual([1n, 1n]);
  });

  it('drops, untouched and counted, what it cannot route: no route, egress not allowed', () => {
    const frame = buildFrame(fromClient());
    pair({ new_daddr: ipToBytes('198.51.100.1') }); // no route in the namespace
    const r = run(prog, frame);
    expect(r.retval).toBe(XDP_DROP);
    expect(r.dataOut).toEqual(frame);
    pair();
    const k = U32.encode({ v: toS.ifindex });
    withNetns(ns, () => xdpObj.map('xdp_tx_ports').delete(k));
    try {
      expect(run(prog, frame).retval).toBe(XDP_DROP);
    } finally {
      withNetns(ns, () => xdpObj.map('xdp_tx_ports').update(k, k));
    }
    const st = stats();
    expect([st.drop_fib, st.drop_egress, st.spliced_packets]).toEqual([1n, 1n, 0n]);
  });

  it('hands a packet whose next hop is unresolved to the TC neighbour path, rewritten and tagged', () => {
    const unresolved = sIf.ipv4.replace(/\d+$/, '77'); // on-link, never resolved
    pair({ new_daddr: ipToBytes(unresolved) });
    const frame = buildFrame(fromClient());
    const r = run(prog, frame);
    expect(r.retval).toBe(XDP_PASS);
    // data_out starts at the XDP metadata: magic and egress ifindex, then the frame.
    expect(XdpMeta.decode(r.dataOut)).toEqual({ magic: XDP_META_MAGIC, ifindex: toS.ifindex });
    const f = decodeFrame(r.dataOut.subarray(XdpMeta.size));
    expect([f.daddr, f.seq, f.ipChecksumOk, f.tcpChecksumOk]).toEqual([unresolved, add32(1000, SEQ_C2S), true, true]);
    expect([f.srcMac, f.dstMac]).toEqual(['02:00:00:00:00:01', '02:00:00:00:00:02']); // left for the kernel to fill in
    expect(maps.get(c2sKey)!.events & XdpEvent.NO_NEIGH).toBeTruthy();
    const st = stats();
    expect([st.neigh_slowpath, st.spliced_packets, st.drop_no_neigh]).toEqual([1n, 1n, 0n]);
  });

  it('counts a spliced segment without a timestamp when the pair uses timestamps', () => {
    pair();
    const f = decodeFrame(run(prog, buildFrame(fromClient({ options: [] }))).dataOut);
    expect(f.tcpChecksumOk).toBe(true);
    expect(stats().ts_missing).toBe(1n);
  });

  it('sweeps pairs and lone entries idle longer than their idle_ms, and nothing else', () => {
    const now = process.hrtime.bigint();
    const [c2s, s2c] = active();
    maps.put(c2sKey, { ...c2s, idle_ms: 1000, last_seen_ns: now - 5_000_000_000n });
    maps.put(s2cKey, { ...s2c, idle_ms: 1000, last_seen_ns: now });
    const learnKey = { ...c2sKey, sport_be: 40001 };
    const freshKey = { ...c2sKey, sport_be: 40002 };
    maps.put(learnKey, blankConn(XdpState.LEARN, { idleMs: 1000, ownerId: 0, nowNs: now - 2_000_000_000n }));
    maps.put(freshKey, blankConn(XdpState.LEARN, { idleMs: 1000, ownerId: 0, nowNs: now }));
    expect(maps.sweepIdle(now)).toBe(3); // the stale direction takes its pair along
    expect(maps.conns.keys().map((k) => k.sport_be)).toEqual([40002]);
  });

  it('TC egress guard drops what the local stack sends on an ACTIVE tuple, and nothing else', () => {
    // What M1's own socket would send to C: the reverse of the c2s key.
    const fromM1 = buildFrame({ saddr: toC.ipv4, daddr: cIf.ipv4, sport: 4444, dport: 40000, seq: 1, ack: 1, flags: { ack: true, fin: true } });
    const other = buildFrame({ saddr: toC.ipv4, daddr: cIf.ipv4, sport: 4444, dport: 40001, seq: 1, ack: 1 });
    maps.put(c2sKey, blankConn(XdpState.HOLD, { idleMs: 1000, ownerId: 0, nowNs: 0n }));
    expect(guard.testRun({ data: fromM1 }).retval).toBe(TC_ACT_OK); // HOLD: the sockets still drain
    pair();
    expect(guard.testRun({ data: fromM1 }).retval).toBe(TC_ACT_SHOT);
    expect(guard.testRun({ data: other }).retval).toBe(TC_ACT_OK);
    expect(stats().guard_dropped).toBe(1n);
  });

  it('attach refuses an interface without IPv4 forwarding or an unknown one, and leaves nothing behind', () => {
    // Host c routes nothing (forwarding off): bpf_fib_lookup would drop every spliced packet.
    const pins = new PinLayout(join(root, 'attach-refused'));
    expect(() => XdpDatapath.attach({ pins, interfaces: ['eth0'], netns: topo.host('c').nsPath })).toThrow(
      /interface "eth0" has IPv4 forwarding off; .*sysctl -w net\.ipv4\.conf\.eth0\.forwarding=1/,
    );
    expect(() => XdpDatapath.attach({ pins, interfaces: ['eth9'], netns: ns })).toThrow(/interface "eth9" not found in this network namespace/);
    expect(listPins(pins.root)).toEqual([]); // nothing loaded, nothing pinned
    removePinTree(pins.root);
  });

  it('minimal forwarder: routes, decrements TTL with a valid checksum, rewrites MACs; passes local traffic', () => {
    const fwd = fwdObj.program('exds_xdp_fwd');
    const fstats = new PerCpuMap(fwdObj.map('fwd_stats'), U32, FwdStats);
    const through = buildFrame({ ...fromClient(), daddr: sIf.ipv4, ttl: 64 });
    const r = run(fwd, through);
    expect(r.retval).toBe(XDP_REDIRECT);
    const f = decodeFrame(r.dataOut);
    expect([f.ttl, f.ipChecksumOk, f.tcpChecksumOk, f.dstMac, f.srcMac]).toEqual([63, true, true, sIf.mac, toS.mac]);
    const local = buildFrame(fromClient()); // to the middlebox itself
    expect(run(fwd, local).retval).toBe(XDP_PASS);
    const keep = run(fwdObj.program('exds_xdp_fwd_keep_ttl'), through);
    expect(decodeFrame(keep.dataOut).ttl).toBe(64);
    const s = fstats.lookupSum({ v: 0 })!;
    expect([s.forwarded, s.passed]).toEqual([2n, 1n]);
  });
});
