// Crafted Ethernet/IPv4/TCP frames for BPF_PROG_TEST_RUN tests and benchmarks, and their
// decoding. Checksums are computed here from scratch over the whole header and payload
// (RFC 1071), independent of the incremental updates the BPF programs make, so a test can
// check a rewritten frame against the truth.

export type TcpOption =
  | { kind: 'nop' }
  | { kind: 'eol' }
  | { kind: 'mss'; value: number }
  | { kind: 'ws'; shift: number }
  | { kind: 'sackok' }
  | { kind: 'ts'; tsval: number; tsecr: number }
  | { kind: 'sack'; blocks: Array<[number, number]> }
  /** Arbitrary bytes, for malformed options. */
  | { kind: 'raw'; bytes: number[] };

export interface FrameSpec {
  srcMac?: string;
  dstMac?: string;
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  seq: number;
  ack?: number;
  flags?: { syn?: boolean; ack?: boolean; fin?: boolean; rst?: boolean; psh?: boolean };
  window?: number;
  options?: TcpOption[];
  payload?: number | Buffer;
  ttl?: number;
  ipId?: number;
  /** IPv4 flags/fragment offset word (host order), e.g. 0x2000 (MF) or 0x0010 (offset 16*8). */
  fragWord?: number;
  /** IP options bytes (padded to 4). */
  ipOptions?: number[];
  /** Force these header fields to (wrong) values after building. */
  override?: { ihl?: number; doff?: number; ipCheck?: number; tcpCheck?: number; totLen?: number };
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

function ip4(addr: string): Buffer {
  const parts = addr.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${addr}`);
  return Buffer.from(parts);
}

export function optionBytes(opts: TcpOption[]): Buffer {
  const out: number[] = [];
  const u32 = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
  for (const o of opts) {
    switch (o.kind) {
      case 'nop':
        out.push(1);
        break;
      case 'eol':
        out.push(0);
        break;
      case 'mss':
        out.push(2, 4, o.value >> 8, o.value & 255);
        break;
      case 'ws':
        out.push(3, 3, o.shift);
        break;
      case 'sackok':
        out.push(4, 2);
        break;
      case 'ts':
        out.push(8, 10, ...u32(o.tsval), ...u32(o.tsecr));
        break;
      case 'sack':
        out.push(5, 2 + 8 * o.blocks.length);
        for (const [l, r] of o.blocks) out.push(...u32(l), ...u32(r));
        break;
      case 'raw':
        out.push(...o.bytes);
        break;
    }
  }
  while (out.length % 4 !== 0) out.push(0);
  return Buffer.from(out);
}

/** RFC 1071 one's-complement sum of data, folded, not inverted. */
export function onesSum(data: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < data.length; i += 2) sum += data.readUInt16BE(i);
  if (data.length % 2 === 1) sum += data[data.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

export function checksum(data: Buffer, initial = 0): number {
  return ~onesSum(data, initial) & 0xffff;
}

function pseudoSum(src: Buffer, dst: Buffer, tcpLen: number): number {
  const ph = Buffer.alloc(12);
  src.copy(ph, 0);
  dst.copy(ph, 4);
  ph[9] = 6;
  ph.writeUInt16BE(tcpLen, 10);
  return onesSum(ph);
}

export function buildFrame(s: FrameSpec): Buffer {
  const opts = optionBytes(s.options ?? []);
  const payload = typeof s.payload === 'number' ? Buffer.from(Array.from({ length: s.payload }, (_, i) => (i * 7 + 3) & 255)) : (s.payload ?? Buffer.alloc(0));
  const ipOpts = Buffer.from(s.ipOptions ?? []);
  if (ipOpts.length % 4 !== 0) throw new Error('IP options must be a multiple of 4 bytes');
  const ipHdrLen = 20 + ipOpts.length;
  const tcpHdrLen = 20 + opts.length;
  const frame = Buffer.alloc(14 + ipHdrLen + tcpHdrLen + payload.length);
  macBytes(s.dstMac ?? '02:00:00:00:00:02').copy(frame, 0);
  macBytes(s.srcMac ?? '02:00:00:00:00:01').copy(frame, 6);
  frame.writeUInt16BE(0x0800, 12);
  const ip = frame.subarray(14, 14 + ipHdrLen);
  ip[0] = 0x40 | (ipHdrLen / 4);
  ip.writeUInt16BE(ipHdrLen + tcpHdrLen + payload.length, 2);
  ip.writeUInt16BE(s.ipId ?? 0x1234, 4);
  ip.writeUInt16BE(s.fragWord ?? 0x4000, 6); // DF
  ip[8] = s.ttl ?? 64;
  ip[9] = 6;
  ip4(s.saddr).copy(ip, 12);
  ip4(s.daddr).copy(ip, 16);
  ipOpts.copy(ip, 20);
  ip.writeUInt16BE(checksum(ip), 10);
  const tcp = frame.subarray(14 + ipHdrLen);
  tcp.writeUInt16BE(s.sport, 0);
  tcp.writeUInt16BE(s.dport, 2);
  tcp.writeUInt32BE(s.seq >>> 0, 4);
  tcp.writeUInt32BE((s.ack ?? 0) >>> 0, 8);
  const f = s.flags ?? { ack: true };
  tcp[12] = (tcpHdrLen / 4) << 4;
  tcp[13] = (f.fin ? 1 : 0) | (f.syn ? 2 : 0) | (f.rst ? 4 : 0) | (f.psh ? 8 : 0) | (f.ack ? 16 : 0);
  tcp.writeUInt16BE(s.window ?? 512, 14);
  opts.copy(tcp, 20);
  payload.copy(tcp, tcpHdrLen);
  tcp.writeUInt16BE(checksum(tcp, pseudoSum(ip4(s.saddr), ip4(s.daddr), tcp.length)), 16);
  const o = s.override ?? {};
  if (o.ihl !== undefined) ip[0] = 0x40 | o.ihl;
  if (o.totLen !== undefined) ip.writeUInt16BE(o.totLen, 2);
  if (o.doff !== undefined) tcp[12] = o.doff << 4;
  if (o.ipCheck !== undefined) ip.writeUInt16BE(o.ipCheck, 10);
  if (o.tcpCheck !== undefined) tcp.writeUInt16BE(o.tcpCheck, 16);
  return frame;
}

export interface DecodedFrame {
  dstMac: string;
  srcMac: string;
  saddr: string;
  daddr: string;
  ttl: number;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  options: TcpOption[];
  payload: Buffer;
  /** The IPv4 header checksum verifies (independent full computation). */
  ipChecksumOk: boolean;
  /** The TCP checksum verifies over pseudo-header, header and payload. */
  tcpChecksumOk: boolean;
}

function macText(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export function parseOptions(b: Buffer): TcpOption[] {
  const out: TcpOption[] = [];
  for (let i = 0; i < b.length; ) {
    const kind = b[i]!;
    if (kind === 0) {
      out.push({ kind: 'eol' });
      break;
    }
    if (kind === 1) {
      out.push({ kind: 'nop' });
      i++;
      continue;
    }
    const len = b[i + 1] ?? 0;
    if (len < 2 || i + len > b.length) {
      out.push({ kind: 'raw', bytes: [...b.subarray(i)] });
      break;
    }
    const body = b.subarray(i + 2, i + len);
    if (kind === 8 && len === 10) out.push({ kind: 'ts', tsval: body.readUInt32BE(0), tsecr: body.readUInt32BE(4) });
    else if (kind === 5) {
      const blocks: Array<[number, number]> = [];
      for (let j = 0; j + 8 <= body.length; j += 8) blocks.push([body.readUInt32BE(j), body.readUInt32BE(j + 4)]);
      out.push({ kind: 'sack', blocks });
    } else if (kind === 2 && len === 4) out.push({ kind: 'mss', value: body.readUInt16BE(0) });
    else if (kind === 3 && len === 3) out.push({ kind: 'ws', shift: body[0]! });
    else if (kind === 4 && len === 2) out.push({ kind: 'sackok' });
    else out.push({ kind: 'raw', bytes: [...b.subarray(i, i + len)] });
    i += len;
  }
  return out;
}

export function decodeFrame(frame: Buffer): DecodedFrame {
  if (frame.readUInt16BE(12) !== 0x0800) throw new Error('not an IPv4 frame');
  const ip = frame.subarray(14);
  const ihl = (ip[0]! & 15) * 4;
  const totLen = ip.readUInt16BE(2);
  const tcp = frame.subarray(14 + ihl, 14 + totLen);
  const doff = (tcp[12]! >> 4) * 4;
  const src = Buffer.from(ip.subarray(12, 16));
  const dst = Buffer.from(ip.subarray(16, 20));
  return {
    dstMac: macText(frame.subarray(0, 6)),
    srcMac: macText(frame.subarray(6, 12)),
    saddr: [...src].join('.'),
    daddr: [...dst].join('.'),
    ttl: ip[8]!,
    sport: tcp.readUInt16BE(0),
    dport: tcp.readUInt16BE(2),
    seq: tcp.readUInt32BE(4),
    ack: tcp.readUInt32BE(8),
    flags: tcp[13]!,
    window: tcp.readUInt16BE(14),
    options: parseOptions(Buffer.from(tcp.subarray(20, doff))),
    payload: Buffer.from(tcp.subarray(doff)),
    ipChecksumOk: onesSum(Buffer.from(ip.subarray(0, ihl))) === 0xffff,
    tcpChecksumOk: onesSum(Buffer.from(tcp), pseudoSum(src, dst, tcp.length)) === 0xffff,
  };
}

/** a + b modulo 2^32 (sequence and timestamp arithmetic). */
export function add32(a: number, b: number): number {
  return (a + b) >>> 0;
}
