// Pure ketama-style consistent hash ring (Envoy's RING_HASH policy): each host places points on
// a 32-bit ring in proportion to its weight; a key goes to the first point at or after its hash
// (wrapping). Unlike Envoy, which scales every host's point count to a minimum ring size (so a
// removal reshuffles the survivors' points), the lightest host places a fixed `pointsPerHost`
// and the others as many times more as their weight: removing a host moves only its own keys,
// unless it was the lightest. At most `maxSize` points; every host at least one.
import type { LbPolicy } from '../desired-state.js';
import { murmur3 } from './lb-hash.js';
import type { LbHost, LoadBalancer, PickContext } from './lb.js';

const POINT_SEED = 0x2545f491;
/** Hosts per ring: 2^21, so hash (32 bits) and rank fit one float64 exactly. */
const OWNER_SPAN = 1 << 21;

export interface Ring {
  /** Sorted point hashes. */
  points: Uint32Array;
  /** owners[i]: index into hosts of the host that placed points[i]. */
  owners: Int32Array;
}

export function buildRing(hosts: readonly Pick<LbHost, 'key' | 'weight'>[], pointsPerHost = 256, maxSize = 8 * 1024 * 1024): Ring {
  if (!(pointsPerHost >= 1) || !(maxSize >= 1)) throw new Error(`ring_hash: points per host (${pointsPerHost}) and ring size (${maxSize}) must be at least 1`);
  if (hosts.length === 0) return { points: new Uint32Array(0), owners: new Int32Array(0) };
  // Place points in key order so the ring does not depend on the order of `hosts`.
  const order = hosts.map((h, i) => ({ i, key: h.key, weight: h.weight })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  if (order.length > OWNER_SPAN) throw new Error(`ring_hash: ${order.length} hosts exceed the ${OWNER_SPAN} this ring supports`);
  const minWeight = Math.min(...order.map((h) => h.weight));
  const relative = order.map((h) => h.weight / minWeight);
  const units = relative.reduce((a, b) => a + b, 0);
  // Fewer points per weight unit only when the ring would exceed maxSize.
  const perUnit = Math.max(1e-9, Math.min(pointsPerHost, maxSize / units));
  const counts = relative.map((r) => Math.max(1, Math.floor(r * perUnit)));
  const n = counts.reduce((a, b) => a + b, 0);
  // One float per point, hash * OWNER_SPAN + rank: a numeric sort orders by hash, ties by key.
  const packed = new Float64Array(n);
  let k = 0;
  for (const [rank, h] of order.entries()) {
    for (let j = 0; j < counts[rank]!; j++) packed[k++] = murmur3(`${h.key}_${j}`, POINT_SEED) * OWNER_SPAN + rank;
  }
  packed.sort();
  const points = new Uint32Array(n);
  const owners = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = packed[i]!;
    const rank = v % OWNER_SPAN;
    points[i] = (v - rank) / OWNER_SPAN;
    owners[i] = order[rank]!.i;
  }
  return { points, owners };
}

export class RingHashLoadBalancer implements LoadBalancer {
  readonly policy: LbPolicy = 'ring_hash';
  readonly ring: Ring;

  constructor(
    readonly hosts: readonly LbHost[],
    opts: { pointsPerHost: number; maxSize: number },
  ) {
    this.ring = buildRing(hosts, opts.pointsPerHost, opts.maxSize);
  }

  pick(ctx?: PickContext): LbHost | undefined {
    const { points, owners } = this.ring;
    if (points.length === 0) return undefined;
    const hash = (ctx?.hash ?? 0) >>> 0;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    const start = lo % points.length;
    const owner = this.hosts[owners[start]!]!;
    const exclude = ctx?.exclude;
    if (!exclude || !exclude.has(owner.key) || exclude.size >= this.hosts.length) return owner;
    for (let i = 1; i < points.length; i++) {
      const h = this.hosts[owners[(start + i) % points.length]!]!;
      if (!exclude.has(h.key)) return h;
    }
    return owner;
  }
}
