import { describe, expect, it } from 'vitest';
import { ruleEntries } from '../../src/agent/bpf/datapath-firewall.js';
import { expandPorts } from '../../src/agent/bpf/datapath-steer.js';
import { verifierTail } from '../../src/agent/bpf/errors.js';
import { bytesToIp, ipToBytes, parseCidr } from '../../src/agent/bpf/ip-bytes.js';
import { sumValues } from '../../src/agent/bpf/map.js';
import { defineStruct } from '../../src/agent/bpf/struct-codec.js';

describe('struct codec', () => {
  const S = defineStruct('s', [
    ['a', 'u8'],
    ['b', 'u64'],
    ['c', 'be16'],
    ['_pad', 'u8'],
    ['d', { bytes: 3 }],
    ['e', 'i32'],
  ] as const);

  it('lays fields out with C alignment and trailing padding', () => {
    expect(S.fields.map((f) => [f.name, f.offset, f.size])).toEqual([
      ['a', 0, 1],
      ['b', 8, 8],
      ['c', 16, 2],
      ['_pad', 18, 1],
      ['d', 19, 3],
      ['e', 24, 4],
    ]);
    expect(S.size).toBe(32);
  });

  it('round-trips values, zero-fills padding, writes network order where asked', () => {
    const v = { a: 7, b: 0xfedcba9876543210n, c: 0x1234, d: new Uint8Array([1, 2, 3]), e: -5 };
    const buf = S.encode(v);
    expect(buf.readUInt16BE(16)).toBe(0x1234);
    expect(buf[18]).toBe(0);
    expect(S.decode(buf)).toEqual({ a: 7, b: 0xfedcba9876543210n, c: 0x1234, d: Buffer.from([1, 2, 3]), e: -5 });
  });

  it('refuses out-of-range and missing fields, naming them', () => {
    expect(() => S.encode({ a: 256, b: 0n, c: 0, d: new Uint8Array(3), e: 0 })).toThrow(/struct s: field a must be 0..255/);
    expect(() => S.encode({ a: 1, b: -1n, c: 0, d: new Uint8Array(3), e: 0 })).toThrow(/field b must be a u64/);
    expect(() => S.encode({ a: 1, b: 0n, c: 0, d: new Uint8Array(2), e: 0 })).toThrow(/field d must be 3 bytes/);
    expect(() => S.encode({ a: 1, b: 0n, c: 0, d: new Uint8Array(3) } as never)).toThrow(/field e is missing/);
    expect(() => S.decode(Buffer.alloc(8))).toThrow(/need 32 bytes/);
  });

  it('sums per-CPU values field by field', () => {
    expect(sumValues([{ x: 1n, y: 2 }, { x: 3n, y: 4 }, { x: 5n, y: 6 }])).toEqual({ x: 9n, y: 12 });
  });
});

describe('addresses and CIDRs as 16 bytes', () => {
  it('maps IPv4 into IPv6 and back, and compresses IPv6 text', () => {
    expect(Buffer.from(ipToBytes('10.1.2.3')).toString('hex')).toBe('00000000000000000000ffff0a010203');
    expect(bytesToIp(ipToBytes('10.1.2.3'))).toBe('10.1.2.3');
    expect(bytesToIp(ipToBytes('fd00:e0:1::2'))).toBe('fd00:e0:1::2');
    expect(bytesToIp(ipToBytes('::ffff:192.0.2.1'))).toBe('192.0.2.1');
    expect(bytesToIp(ipToBytes('2001:db8:0:0:1:0:0:1'))).toBe('2001:db8::1:0:0:1');
    expect(bytesToIp(ipToBytes('::'))).toBe('::');
    expect(() => ipToBytes('10.1.2')).toThrow(/not an IPv4 or IPv6 address/);
  });

  it('parses CIDRs into the 128-bit space and clears host bits', () => {
    expect(parseCidr('192.168.3.77/24')).toMatchObject({ prefixLen: 120, family: 4, text: '192.168.3.0/24' });
    expect(parseCidr('fd00::1/64')).toMatchObject({ prefixLen: 64, family: 6, text: 'fd00::/64' });
    expect(parseCidr('10.0.0.1')).toMatchObject({ prefixLen: 128, text: '10.0.0.1/32' });
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/prefix length must be 0..32/);
    expect(() => parseCidr('fd00::/129')).toThrow(/0..128/);
    expect(() => parseCidr('nope/8')).toThrow(/"nope" is not an IPv4 or IPv6 address/);
  });
});

describe('drop-rule entries', () => {
  it('makes one LPM entry per rule and port, port first in the key', () => {
    const e = ruleEntries([{ cidr: '192.168.3.0/24' }, { cidr: 'fd00::/64', ports: [443, 8443] }]);
    expect(e.map((x) => [x.key.prefixlen, x.key.port_be, x.index])).toEqual([
      [16 + 120, 0, 0],
      [16 + 64, 443, 1],
      [16 + 64, 8443, 1],
    ]);
  });

  it('names the rule that is wrong', () => {
    expect(() => ruleEntries([{ cidr: '10.0.0.0/8' }, { cidr: '10.0.0.0/8', ports: [0.5] }])).toThrow(/drop rule 2 \(10.0.0.0\/8\): port 0.5 is not 1-65535/);
    expect(() => ruleEntries([{ cidr: '10.0.0.0/8' }, { cidr: '10.9.9.9/8' }])).toThrow(/drop rule 2 \(10.9.9.9\/8\) repeats rule 1/);
  });
});

describe('port specs', () => {
  it('expands ports and ranges, sorted and without duplicates', () => {
    expect(expandPorts([7003, '7001', ' 7005 - 7007 ', 7006])).toEqual([7001, 7003, 7005, 7006, 7007]);
  });
  it('refuses what is not a port', () => {
    expect(() => expandPorts(['http'])).toThrow(/"http" is not a port or a port range/);
    expect(() => expandPorts([0])).toThrow(/within 1-65535/);
  });
});

describe('verifier log tail', () => {
  it('keeps the last lines, bounded, and says how much it left out', () => {
    const log = Array.from({ length: 500 }, (_, i) => `${i}: (bf) r1 = r2`).join('\n') + '\ninvalid access to packet\nprocessed 501 insns\0garbage';
    const tail = verifierTail(log);
    expect(tail).toMatch(/^… \(472 earlier lines omitted\)\n/);
    expect(tail.endsWith('invalid access to packet\nprocessed 501 insns')).toBe(true);
    expect(tail.length).toBeLessThan(4100);
  });
});
