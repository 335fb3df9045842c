// Pure Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
// Load Balancer", NSDI 2016, §3.4; the same table Katran builds): every host walks its own
// permutation of a prime-sized table and claims free slots in turns until the table is full.
// A lookup is one array read. Removing one of N hosts moves about 1/N of the keys, and the table
// is a pure function of the host set, so every agent builds the same one.
//
// Weights: each round, a host earns its weight in credit and takes a turn for every `maxWeight`
// of credit, so a host of half the largest weight claims a slot every other round and ends with
// about half as many slots.
import type { LbPolicy } from '../desired-state.js';
import { murmur3 } from './lb-hash.js';
import type { LbHost, LoadBalancer, PickContext } from './lb.js';

export const MAGLEV_DEFAULT_TABLE_SIZE = 65537;
const OFFSET_SEED = 0x9e3779b9;
const SKIP_SEED = 0x7f4a7c15;

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/**
 * The lookup table: entry i is the index (into `hosts`) that owns slot i. Hosts are identified
 * by their key, so the table does not depend on the order of `hosts`.
 */
export function buildMaglevTable(hosts: readonly Pick<LbHost, 'key' | 'weight'>[], size = MAGLEV_DEFAULT_TABLE_SIZE): Int32Array {
  if (!isPrime(size)) throw new Error(`maglev table size ${size} is not a prime; use a prime such as 65537`);
  if (hosts.length > size) throw new Error(`maglev: ${hosts.length} hosts do not fit a table of ${size} slots`);
  const table = new Int32Array(size).fill(-1);
  if (hosts.length === 0) return table;
  // Claim in key order: the result must not depend on how the caller ordered the hosts.
  const order = hosts.map((h, i) => ({ i, key: h.key, weight: h.weight })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const n = order.length;
  const pos = new Float64Array(n);
  const skip = new Float64Array(n);
  const credit = new Float64Array(n);
  let maxWeight = 0;
  for (const [j, h] of order.entries()) {
    if (!(h.weight > 0)) throw new Error(`maglev: host ${h.key} has weight ${h.weight}; weights must be positive`);
    pos[j] = murmur3(h.key, OFFSET_SEED) % size;
    skip[j] = (murmur3(h.key, SKIP_SEED) % (size - 1)) + 1;
    maxWeight = Math.max(maxWeight, h.weight);
  }
  let filled = 0;
  while (filled < size) {
    for (let j = 0; j < n && filled < size; j++) {
      credit[j]! += order[j]!.weight;
      if (credit[j]! < maxWeight) continue;
      credit[j]! -= maxWeight;
      // Next slot of this host's permutation that nobody owns yet.
      let p = pos[j]!;
      while (table[p] !== -1) p = (p + skip[j]!) % size;
      table[p] = order[j]!.i;
      pos[j] = (p + skip[j]!) % size;
      filled++;
    }
  }
  return table;
}

export class MaglevLoadBalancer implements LoadBalancer {
  readonly policy: LbPolicy = 'maglev';
  readonly table: Int32Array;

  constructor(
    readonly hosts: readonly LbHost[],
    readonly tableSize = MAGLEV_DEFAULT_TABLE_SIZE,
  ) {
    this.table = buildMaglevTable(hosts, tableSize);
  }

  pick(ctx?: PickContext): LbHost | undefined {
    if (this.hosts.length === 0) return undefined;
    const hash = ctx?.hash ?? 0;
    const slot = hash % this.tableSize;
    const owner = this.hosts[this.table[slot]!]!;
    const exclude = ctx?.exclude;
    if (!exclude || !exclude.has(owner.key) || exclude.size >= this.hosts.length) return owner;
    // A retry: walk the table from the key's slot to the next host not tried yet. Deterministic,
    // so the same client lands on the same fallback host from any agent.
    for (let i = 1; i < this.tableSize; i++) {
      const h = this.hosts[this.table[(slot + i) % this.tableSize]!]!;
      if (!exclude.has(h.key)) return h;
    }
    return owner;
  }
}
