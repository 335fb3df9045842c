// Pure hashing for the consistent load balancers: MurmurHash3 (x86, 32-bit) over UTF-8 text.
// Every agent must compute the same tables from the same endpoints, so the hash is fixed and
// seeded explicitly, never process-random.

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** MurmurHash3_x86_32 of the UTF-8 bytes of `text` (or of raw bytes). Unsigned 32-bit result. */
export function murmur3(input: string | Uint8Array, seed = 0): number {
  const data = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  const len = data.length;
  const blocks = len & ~3;
  let h = seed >>> 0;
  for (let i = 0; i < blocks; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = len & 3;
  if (tail > 0) {
    let k = 0;
    if (tail === 3) k ^= data[blocks + 2]! << 16;
    if (tail >= 2) k ^= data[blocks + 1]! << 8;
    k ^= data[blocks]!;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Seed of the per-connection key hash (hash_policy source_ip). */
export const SOURCE_IP_SEED = 0x5eed1e55;

/** The hash of a client address for maglev / ring_hash (hash_policy: source_ip). */
export function sourceIpHash(address: string): number {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return murmur3(m ? m[1]! : address.toLowerCase(), SOURCE_IP_SEED);
}
