// IPv4/IPv6 addresses and CIDR prefixes as the model uses them: parsing, canonical text, and the
// overlap tests that listener and drop rule validation need. Pure; no sockets.
import { isIPv4, isIPv6 } from 'node:net';

export type IpFamily = 4 | 6;

export interface ParsedIp {
  family: IpFamily;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
}

export function parseIp(text: string): ParsedIp | undefined {
  if (isIPv4(text)) return { family: 4, bytes: Uint8Array.from(text.split('.').map(Number)) };
  if (isIPv6(text)) return { family: 6, bytes: ipv6Bytes(text) };
  return undefined;
}

function ipv6Bytes(text: string): Uint8Array {
  let s = text;
  const out = new Uint8Array(16);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const v4 = s.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const b = (v4[1] as string).split('.').map(Number) as [number, number, number, number];
    s = s.slice(0, -(v4[1] as string).length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? (s.split('::') as [string, string]) : [s, undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  return out;
}

/** True for 0.0.0.0 and ::, the addresses that listen on every address of their family. */
export function isUnspecified(ip: ParsedIp): boolean {
  return ip.bytes.every((b) => b === 0);
}

export function ipEquals(a: ParsedIp, b: ParsedIp): boolean {
  return a.family === b.family && a.bytes.every((v, i) => v === b.bytes[i]);
}

export function formatIp(ip: ParsedIp): string {
  if (ip.family === 4) return Array.from(ip.bytes).join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((ip.bytes[i] as number) << 8) | (ip.bytes[i + 1] as number));
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Two listening addresses conflict on a port when they are equal or when one of them is the
 * unspecified address of the same family. 0.0.0.0 and :: do not conflict with each other: Envoy
 * binds "::" with IPV6_V6ONLY unless ipv4_compat is set, which we never set.
 */
export function listenAddressesOverlap(a: ParsedIp, b: ParsedIp): boolean {
  if (a.family !== b.family) return false;
  return isUnspecified(a) || isUnspecified(b) || ipEquals(a, b);
}

export interface ParsedCidr {
  ip: ParsedIp;
  prefixLen: number;
}

/** Parses "a.b.c.d/n" or "x::/n"; a bare address is a host prefix (/32 or /128). */
export function parseCidr(text: string): { cidr: ParsedCidr } | { error: string } {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addr);
  if (!ip) return { error: `"${addr}" is not an IPv4 or IPv6 address` };
  const max = ip.family === 4 ? 32 : 128;
  let prefixLen = max;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) return { error: `prefix length "/${lenText}" is not between /0 and /${max} for an IPv${ip.family} address` };
    prefixLen = Number(lenText);
  }
  const masked = maskBytes(ip.bytes, prefixLen);
  if (!masked.every((v, i) => v === ip.bytes[i])) {
    const suggestion = `${formatIp({ family: ip.family, bytes: masked })}/${prefixLen}`;
    return { error: `"${text}" has host bits set beyond /${prefixLen}; did you mean ${suggestion}?` };
  }
  return { cidr: { ip, prefixLen } };
}

function maskBytes(bytes: Uint8Array, prefixLen: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefixLen - i * 8));
    out[i] = (bytes[i] as number) & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

export function formatCidr(c: ParsedCidr): string {
  return `${formatIp(c.ip)}/${c.prefixLen}`;
}
