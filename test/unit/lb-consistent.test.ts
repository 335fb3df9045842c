// maglev and ring_hash: tables are pure functions of the host set, weights are honoured, and an
// endpoint change moves only about the share of keys it must (Maglev paper §3.4, §5.3).
import { describe, expect, it } from 'vitest';
import { murmur3, sourceIpHash } from '../../src/agent/proxy/lb-hash.js';
import { buildMaglevTable, isPrime, MaglevLoadBalancer } from '../../src/agent/proxy/lb-maglev.js';
import { buildRing, RingHashLoadBalancer } from '../../src/agent/proxy/lb-ring-hash.js';
import { createLoadBalancer, hostKey, type LbHost, type LoadBalancer } from '../../src/agent/proxy/lb.js';

const host = (i: number, weight = 1): LbHost => ({ key: hostKey(`10.1.0.${i}`, 9092), address: `10.1.0.${i}`, port: 9092, weight });
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
/** 100k distinct client addresses, hashed as the proxy hashes them. */
const keys = Array.from({ length: 100_000 }, (_, i) => sourceIpHash(`172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`));

function assign(lb: LoadBalancer): string[] {
  return keys.map((hash) => lb.pick({ hash })!.key);
}
function shares(a: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const k of a) m.set(k, (m.get(k) ?? 0) + 1 / a.length);
  return m;
}

describe('murmur3', () => {
  it('matches the reference vectors of MurmurHash3_x86_32', () => {
    expect(murmur3('', 0)).toBe(0);
    expect(murmur3('', 1)).toBe(0x514e28b7);
    expect(murmur3('', 0xffffffff)).toBe(0x81f16f39);
    expect(murmur3(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0)).toBe(0x76293b50);
    expect(murmur3(Buffer.from([0x21, 0x43, 0x65, 0x87]), 0)).toBe(0xf55b516b);
    expect(murmur3(Buffer.from([0x21, 0x43, 0x65]), 0)).toBe(0x7e4a8634);
    expect(murmur3(Buffer.from([0x21, 0x43]), 0)).toBe(0xa0f7b07a);
    expect(murmur3(Buffer.from([0x21]), 0)).toBe(0x72661cf4);
    expect(murmur3('Hello, world!', 1234)).toBe(0xfaf6cdb3);
    expect(murmur3('The quick brown fox jumps over the lazy dog', 0x9747b28c)).toBe(0x2fa826cd);
  });

  it('hashes an IPv4-mapped client like the plain IPv4 address', () => {
    expect(sourceIpHash('::ffff:10.0.0.1')).toBe(sourceIpHash('10.0.0.1'));
  });
});

describe('maglev', () => {
  it('needs a prime table size', () => {
    expect(isPrime(65537)).toBe(true);
    expect(isPrime(65536)).toBe(false);
    expect(() => buildMaglevTable([host(1)], 65536)).toThrow(/not a prime/);
  });

  it('fills the table with equal shares for equal weights', () => {
    const hs = range(7).map((i) => host(i));
    const table = buildMaglevTable(hs);
    const per = new Array<number>(7).fill(0);
    for (const v of table) per[v]!++;
    expect(per.reduce((a, b) => a + b)).toBe(65537);
    // Hosts take turns, so shares differ by at most one slot.
    expect(Math.max(...per) - Math.min(...per)).toBeLessThanOrEqual(1);
  });

  it('gives slots in proportion to weight', () => {
    const hs = [host(1, 1), host(2, 2), host(3, 5)];
    const table = buildMaglevTable(hs);
    const per = [0, 0, 0];
    for (const v of table) per[v]!++;
    expect(per[0]! / 65537).toBeCloseTo(1 / 8, 2);
    expect(per[1]! / 65537).toBeCloseTo(2 / 8, 2);
    expect(per[2]! / 65537).toBeCloseTo(5 / 8, 2);
  });

  it('does not depend on the order the hosts come in', () => {
    const hs = range(9).map((i) => host(i, 1 + (i % 3)));
    const a = new MaglevLoadBalancer(hs);
    const b = new MaglevLoadBalancer([...hs].reverse());
    expect(assign(a)).toEqual(assign(b));
  });

  it('moves about 1/N of the keys when one of N hosts goes, and restores them when it returns', () => {
    const hs = range(10).map((i) => host(i));
    const before = assign(new MaglevLoadBalancer(hs));
    const removed = hs[3]!.key;
    const after = assign(new MaglevLoadBalancer(hs.filter((h) => h.key !== removed)));
    let moved = 0;
    let movedOthers = 0;
    let others = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] !== after[i]) moved++;
      if (before[i] !== removed) {
        others++;
        if (before[i] !== after[i]) movedOthers++;
      }
      expect(after[i]).not.toBe(removed);
    }
    // The removed host's ~10% must move; of the others, Maglev disturbs only a few percent.
    expect(moved / keys.length).toBeGreaterThan(0.09);
    expect(moved / keys.length).toBeLessThan(0.16);
    expect(movedOthers / others).toBeLessThan(0.03);
    expect(assign(new MaglevLoadBalancer(hs))).toEqual(before);
  });

  it('moves about 1/(N+1) of the keys when a host is added', () => {
    const hs = range(10).map((i) => host(i));
    const before = assign(new MaglevLoadBalancer(hs));
    const after = assign(new MaglevLoadBalancer([...hs, host(11)]));
    const moved = before.filter((k, i) => k !== after[i]).length / keys.length;
    expect(moved).toBeGreaterThan(0.08);
    expect(moved).toBeLessThan(0.15);
  });

  it('sends a retry to the next host along the table, the same one every time', () => {
    const lb = new MaglevLoadBalancer(range(4).map((i) => host(i)));
    const first = lb.pick({ hash: keys[0]! })!;
    const retry = lb.pick({ hash: keys[0]!, exclude: new Set([first.key]) })!;
    expect(retry.key).not.toBe(first.key);
    expect(lb.pick({ hash: keys[0]!, exclude: new Set([first.key]) })!.key).toBe(retry.key);
  });

  it('builds a 65537-slot table for 100 hosts quickly', () => {
    const started = performance.now();
    new MaglevLoadBalancer(range(100).map((i) => ({ ...host(i), key: `10.2.${i}.1:80` })));
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('ring_hash', () => {
  it('spreads keys roughly evenly and by weight', () => {
    const even = shares(assign(createLoadBalancer('ring_hash', range(4).map((i) => host(i)))));
    for (const s of even.values()) {
      expect(s).toBeGreaterThan(0.17);
      expect(s).toBeLessThan(0.33);
    }
    const weighted = shares(assign(createLoadBalancer('ring_hash', [host(1, 1), host(2, 3)])));
    expect(weighted.get(host(2).key)!).toBeGreaterThan(0.67);
    expect(weighted.get(host(2).key)!).toBeLessThan(0.83);
  });

  it('places points by weight, within the ring size, at least one per host', () => {
    expect(buildRing(range(3).map((i) => host(i))).points.length).toBe(768);
    expect(buildRing([host(1, 2), host(2, 6)], 100).points.length).toBe(400);
    const skewed = buildRing([host(1, 1), host(2, 100_000)], 256, 1000);
    expect(skewed.points.length).toBeLessThanOrEqual(1001);
    expect(new Set(skewed.owners).size).toBe(2);
  });

  it('moves only the removed host\'s keys, and restores them', () => {
    // Equal weights: the survivors keep their points, so none of their keys move.
    const hs = range(5).map((i) => host(i));
    const before = assign(new RingHashLoadBalancer(hs, { pointsPerHost: 256, maxSize: 1 << 23 }));
    const removed = hs[2]!.key;
    const after = assign(new RingHashLoadBalancer(hs.filter((h) => h.key !== removed), { pointsPerHost: 256, maxSize: 1 << 23 }));
    for (let i = 0; i < keys.length; i++) if (before[i] !== removed) expect(after[i]).toBe(before[i]);
    expect(assign(new RingHashLoadBalancer([...hs].reverse(), { pointsPerHost: 256, maxSize: 1 << 23 }))).toEqual(before);
  });

  it('sends a retry to the next host along the ring', () => {
    const lb = createLoadBalancer('ring_hash', range(3).map((i) => host(i)));
    const first = lb.pick({ hash: keys[5]! })!;
    expect(lb.pick({ hash: keys[5]!, exclude: new Set([first.key]) })!.key).not.toBe(first.key);
  });
});
