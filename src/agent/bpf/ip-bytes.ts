// IP addresses and CIDRs as the 16 network-order bytes our BPF maps use: IPv6 as is, IPv4 mapped
// into IPv6 (::ffff:a.b.c.d), so one key layout serves both families. Pure code.
import { isIPv4, isIPv6 } from 'node:net';

export const V4_MAPPED_PREFIX = 96;

function ipv4Bytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

/** 16 bytes for an IPv4 or IPv6 address text. */
export function ipToBytes(ip: string): Uint8Array {
  const out = new Uint8Array(16);
  if (isIPv4(ip)) {
    out[10] = 0xff;
    out[11] = 0xff;
    out.set(ipv4Bytes(ip), 12);
    return out;
  }
  const zone = ip.indexOf('%');
  const text = zone >= 0 ? ip.slice(0, zone) : ip;
  if (!isIPv6(text)) throw new Error(`"${ip}" is not an IPv4 or IPv6 address`);
  // An embedded dotted quad (::ffff:1.2.3.4) becomes its two hex groups first.
  const body = text.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`,
  );
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const dbl = body.indexOf('::');
  let groups: number[];
  if (dbl >= 0) {
    const head = parse(body.slice(0, dbl));
    const tail = parse(body.slice(dbl + 2));
    groups = [...head, ...new Array<number>(Math.max(0, 8 - head.length - tail.length)).fill(0), ...tail];
  } else {
    groups = parse(body);
  }
  if (groups.length !== 8) throw new Error(`"${ip}" is not a valid IPv6 address`);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

export function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Text form of 16 address bytes (IPv4-mapped ones as dotted quad). */
export function bytesToIp(b: Uint8Array): string {
  if (b.length !== 16) throw new Error(`an address is 16 bytes, got ${b.length}`);
  if (isV4Mapped(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  // compress the longest run of zero groups (RFC 5952)
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export interface Cidr {
  /** Network address, 16 bytes, host bits cleared. */
  addr: Uint8Array;
  /** Prefix length in the 128-bit space (IPv4 /24 is 96 + 24 = 120). */
  prefixLen: number;
  family: 4 | 6;
  /** Canonical text, e.g. 192.168.3.0/24. */
  text: string;
}

/** Parses "a.b.c.d/n", "x::/n" or a bare address (host route). */
export function parseCidr(text: string): Cidr {
  const [ip, lenText, ...rest] = text.trim().split('/');
  if (!ip || rest.length > 0) throw new Error(`"${text}" is not a CIDR (expected address/prefix)`);
  const family = isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : undefined;
  if (!family) throw new Error(`"${text}" is not a CIDR: "${ip}" is not an IPv4 or IPv6 address`);
  const max = family === 4 ? 32 : 128;
  const len = lenText === undefined ? max : Number(lenText);
  if (!/^\d+$/.test(lenText ?? String(max)) || !Number.isInteger(len) || len < 0 || len > max) {
    throw new Error(`"${text}" is not a CIDR: prefix length must be 0..${max}`);
  }
  const addr = ipToBytes(ip);
  const prefixLen = family === 4 ? V4_MAPPED_PREFIX + len : len;
  for (let bit = prefixLen; bit < 128; bit++) addr[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { addr, prefixLen, family, text: `${bytesToIp(addr)}/${len}` };
}
