// round_robin, random and least_request: weight distributions with fixed seeds and enough
// samples that the bounds hold by a wide margin, rotation order, and retries avoiding hosts.
import { describe, expect, it } from 'vitest';
import { EdfScheduler } from '../../src/agent/proxy/lb-edf.js';
import { createLoadBalancer, hostKey, seededRng, type LbHost, type LoadBalancer } from '../../src/agent/proxy/lb.js';

const hosts = (...weights: number[]): LbHost[] => weights.map((weight, i) => ({ key: hostKey(`10.0.0.${i + 1}`, 80), address: `10.0.0.${i + 1}`, port: 80, weight }));

function counts(lb: LoadBalancer, n: number): Map<string, number> {
  const c = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const h = lb.pick()!;
    c.set(h.key, (c.get(h.key) ?? 0) + 1);
  }
  return c;
}

describe('EDF scheduler', () => {
  it('rotates equal weights in insertion order and spreads heavy entries through a round', () => {
    const s = new EdfScheduler<string>();
    s.add('a', 1);
    s.add('b', 1);
    s.add('c', 1);
    expect(Array.from({ length: 6 }, () => s.pickAndReschedule(() => 1))).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
    const w = new EdfScheduler<string>();
    w.add('x', 1);
    w.add('y', 3);
    const seq = Array.from({ length: 8 }, () => w.pickAndReschedule((i) => (i === 'x' ? 1 : 3)));
    expect(seq.filter((v) => v === 'y')).toHaveLength(6);
    expect(seq.slice(0, 4).filter((v) => v === 'x')).toHaveLength(1);
  });

  it('refuses weights that are not positive', () => {
    expect(() => new EdfScheduler<string>().add('a', 0)).toThrow(/positive/);
  });
});

describe('round_robin', () => {
  it('rotates through equal hosts, starting at a random point', () => {
    const lb = createLoadBalancer('round_robin', hosts(1, 1, 1), { rng: seededRng(1) });
    const seq = Array.from({ length: 6 }, () => lb.pick()!.key);
    expect(seq.slice(3)).toEqual(seq.slice(0, 3));
    expect(new Set(seq.slice(0, 3)).size).toBe(3);
    const c = counts(lb, 3000);
    expect([...c.values()]).toEqual([1000, 1000, 1000]);
  });

  it('honours weights exactly over whole rounds, spread within each round', () => {
    const lb = createLoadBalancer('round_robin', hosts(1, 2, 3), { rng: seededRng(2) });
    const c = counts(lb, 6000);
    expect(c.get('10.0.0.1:80')! / 1000).toBeCloseTo(1, 2);
    expect(c.get('10.0.0.2:80')! / 1000).toBeCloseTo(2, 2);
    expect(c.get('10.0.0.3:80')! / 1000).toBeCloseTo(3, 2);
    // Smooth: in every window of 6 picks the weight-3 host appears 2-4 times, never in a burst of 6.
    const seq = Array.from({ length: 600 }, () => lb.pick()!.key);
    for (let i = 0; i + 6 <= seq.length; i += 6) {
      const n = seq.slice(i, i + 6).filter((k) => k === '10.0.0.3:80').length;
      expect(n).toBeGreaterThanOrEqual(2);
      expect(n).toBeLessThanOrEqual(4);
    }
  });

  it('avoids hosts a retry already tried, unless every host was', () => {
    const lb = createLoadBalancer('round_robin', hosts(1, 5, 1), { rng: seededRng(3) });
    const tried = new Set(['10.0.0.2:80']);
    for (let i = 0; i < 100; i++) expect(lb.pick({ exclude: tried })!.key).not.toBe('10.0.0.2:80');
    const all = new Set(hosts(1, 1, 1).map((h) => h.key));
    expect(lb.pick({ exclude: all })).toBeDefined();
  });

  it('has nothing to pick without hosts', () => {
    expect(createLoadBalancer('round_robin', []).pick()).toBeUndefined();
  });
});

describe('random', () => {
  it('picks in proportion to weight (100k seeded samples, ±1%)', () => {
    const lb = createLoadBalancer('random', hosts(1, 3, 6), { rng: seededRng(4) });
    const c = counts(lb, 100_000);
    expect(c.get('10.0.0.1:80')! / 100_000).toBeGreaterThan(0.09);
    expect(c.get('10.0.0.1:80')! / 100_000).toBeLessThan(0.11);
    expect(c.get('10.0.0.2:80')! / 100_000).toBeGreaterThan(0.29);
    expect(c.get('10.0.0.2:80')! / 100_000).toBeLessThan(0.31);
    expect(c.get('10.0.0.3:80')! / 100_000).toBeGreaterThan(0.59);
    expect(c.get('10.0.0.3:80')! / 100_000).toBeLessThan(0.61);
  });

  it('avoids tried hosts', () => {
    const lb = createLoadBalancer('random', hosts(1, 1000), { rng: seededRng(5) });
    for (let i = 0; i < 200; i++) expect(lb.pick({ exclude: new Set(['10.0.0.2:80']) })!.key).toBe('10.0.0.1:80');
  });
});

describe('least_request', () => {
  it('samples two hosts and takes the less loaded one', () => {
    const active = new Map([
      ['10.0.0.1:80', 0],
      ['10.0.0.2:80', 10],
      ['10.0.0.3:80', 10],
    ]);
    const lb = createLoadBalancer('least_request', hosts(1, 1, 1), { rng: seededRng(6), activeRequests: (k) => active.get(k) ?? 0 });
    const c = counts(lb, 30_000);
    // The idle host wins whenever it is one of the two samples: 1 - (2/3)^2 = 0.556.
    const share = c.get('10.0.0.1:80')! / 30_000;
    expect(share).toBeGreaterThan(0.53);
    expect(share).toBeLessThan(0.58);
  });

  it('keeps load even as connections accumulate', () => {
    const active = new Map<string, number>();
    const lb = createLoadBalancer('least_request', hosts(1, 1, 1, 1), { rng: seededRng(7), activeRequests: (k) => active.get(k) ?? 0 });
    for (let i = 0; i < 400; i++) {
      const h = lb.pick()!;
      active.set(h.key, (active.get(h.key) ?? 0) + 1);
    }
    const v = [...active.values()];
    // Power of two choices keeps the gap at O(log log n); plain random would drift by ~sqrt(n).
    expect(Math.max(...v) - Math.min(...v)).toBeLessThanOrEqual(6);
  });

  it('weights by weight / (active + 1) when weights differ', () => {
    const active = new Map<string, number>();
    const lb = createLoadBalancer('least_request', hosts(1, 3), { rng: seededRng(8), activeRequests: (k) => active.get(k) ?? 0 });
    expect([...counts(lb, 4000).values()].sort((a, b) => a - b)).toEqual([1000, 3000]);
    active.set('10.0.0.2:80', 5); // 3 / 6 = 0.5 < 1: the light host now gets more
    const c = counts(lb, 3000);
    expect(c.get('10.0.0.1:80')!).toBeGreaterThan(c.get('10.0.0.2:80')!);
  });

  it('avoids tried hosts', () => {
    const lb = createLoadBalancer('least_request', hosts(1, 1, 1), { rng: seededRng(9), activeRequests: () => 0 });
    for (let i = 0; i < 200; i++) expect(lb.pick({ exclude: new Set(['10.0.0.1:80', '10.0.0.3:80']) })!.key).toBe('10.0.0.2:80');
  });
});
