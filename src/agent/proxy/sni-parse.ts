// Pure TLS ClientHello inspection, the embedded proxy's tls_inspector: given the bytes a client
// sent so far, say whether they are (the start of) a TLS ClientHello and, once it is complete,
// which server name it asks for. Nothing here consumes bytes: the caller keeps everything it read
// and forwards it upstream first.
//
// Wire format: RFC 8446 §5.1 (records), §4 and §4.1.2 (handshake, ClientHello), RFC 6066 §3
// (server_name), RFC 7301 §3.1 (ALPN), draft-ietf-tls-esni (encrypted_client_hello 0xfe0d: the
// outer ClientHello's server_name is the client-facing server's public name, which is what a
// middlebox routes on).

/** Largest ClientHello handshake body we inspect (bytes after the 4-byte handshake header). */
export const MAX_CLIENT_HELLO = 16 * 1024;

/**
 * Most bytes we read before giving up: the largest ClientHello, its handshake header, and the
 * record headers of a hello split over up to 64 records. A hello spread thinner is treated as
 * too large rather than buffered without bound.
 */
export const MAX_INSPECT_BYTES = MAX_CLIENT_HELLO + 4 + 64 * 5;

const RECORD_HEADER = 5;
const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const MAX_RECORD_PLAINTEXT = 1 << 14; // RFC 8446 §5.1: TLSPlaintext.length <= 2^14
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_ECH = 0xfe0d;
const NAME_TYPE_HOST = 0;

export interface ClientHelloInfo {
  kind: 'tls';
  /** The host_name of the server_name extension, lower-cased, without a trailing dot. */
  serverName?: string;
  /** ALPN protocol names offered, in order. */
  alpn: string[];
  /** The hello carries encrypted_client_hello: serverName is the outer (public) name. */
  ech: boolean;
  /** Bytes of input up to and including the record that completed the ClientHello. */
  consumed: number;
}

export type ClientHelloResult =
  | ClientHelloInfo
  /** A prefix of a valid ClientHello: read more. */
  | { kind: 'incomplete' }
  /** Not TLS at all (plaintext protocol, SSLv2-compatible hello): route without a server name. */
  | { kind: 'not_tls'; reason: string }
  /** Starts like TLS but breaks the format. */
  | { kind: 'malformed'; reason: string }
  /** Larger than MAX_CLIENT_HELLO, or spread over more than MAX_INSPECT_BYTES of records. */
  | { kind: 'too_large'; reason: string };

/**
 * Inspects the bytes a client sent so far. Call again with the longer buffer while the result is
 * 'incomplete'; every other result is final for that connection.
 */
export function parseClientHello(input: Uint8Array): ClientHelloResult {
  if (input.length === 0) return { kind: 'incomplete' };
  const first = input[0]!;
  if (first !== CONTENT_HANDSHAKE) {
    // An SSLv2-compatible hello starts with a 2-byte length whose high bit is set, then type 1
    // (RFC 5246 appendix E.2). It cannot carry extensions, so never a server name.
    if ((first & 0x80) !== 0 && (input.length < 3 || input[2] === 1)) return { kind: 'not_tls', reason: 'SSLv2-compatible ClientHello (no extensions, so no server name)' };
    return { kind: 'not_tls', reason: `first byte 0x${hex2(first)} is not a TLS handshake record (0x16)` };
  }

  // Reassemble the handshake layer from as many records as have fully arrived.
  const fragments: Uint8Array[] = [];
  let handshakeLen = 0;
  let helloLen: number | undefined;
  let off = 0;
  for (;;) {
    if (helloLen !== undefined && handshakeLen >= 4 + helloLen) break;
    if (off >= MAX_INSPECT_BYTES) return { kind: 'too_large', reason: `no complete ClientHello within the first ${MAX_INSPECT_BYTES} bytes` };
    if (input.length - off < RECORD_HEADER) {
      // Check what we have of the next header so non-TLS input is refused early.
      return checkPartialRecordHeader(input, off) ?? incomplete(input);
    }
    const type = input[off]!;
    const major = input[off + 1]!;
    const len = (input[off + 3]! << 8) | input[off + 4]!;
    if (type !== CONTENT_HANDSHAKE) {
      return off === 0
        ? { kind: 'not_tls', reason: `record type ${type} is not handshake` }
        : { kind: 'malformed', reason: `record of type ${type} before the ClientHello was complete` };
    }
    if (major !== 3) return off === 0 ? { kind: 'not_tls', reason: `record version ${major}.${input[off + 2]} is not TLS (3.x)` } : { kind: 'malformed', reason: `record version ${major}.${input[off + 2]} is not 3.x` };
    if (len === 0) return { kind: 'malformed', reason: 'zero-length handshake record (RFC 8446 §5.1 forbids it)' };
    if (len > MAX_RECORD_PLAINTEXT) return { kind: 'malformed', reason: `record length ${len} exceeds 2^14` };
    if (input.length - off - RECORD_HEADER < len) {
      // Partial record: its bytes may already reveal a wrong message type or an oversized hello.
      const partial = input.subarray(off + RECORD_HEADER);
      const early = checkHandshakeHeader(concat([...fragments, partial], handshakeLen + partial.length));
      if (early && early.kind !== 'incomplete') return early;
      return incomplete(input);
    }
    fragments.push(input.subarray(off + RECORD_HEADER, off + RECORD_HEADER + len));
    handshakeLen += len;
    off += RECORD_HEADER + len;
    if (helloLen === undefined && handshakeLen >= 4) {
      const hs = concat(fragments, handshakeLen);
      const early = checkHandshakeHeader(hs);
      if (early && early.kind !== 'incomplete') return early;
      helloLen = (hs[1]! << 16) | (hs[2]! << 8) | hs[3]!;
    }
  }
  const hs = concat(fragments, handshakeLen);
  const body = hs.subarray(4, 4 + helloLen);
  // Bytes after the ClientHello in the same record would be a second handshake message, which a
  // client must not send before the server's reply; tolerate them (they are forwarded anyway).
  return parseHelloBody(body, off);
}

function incomplete(input: Uint8Array): ClientHelloResult {
  return input.length >= MAX_INSPECT_BYTES ? { kind: 'too_large', reason: `no complete ClientHello within the first ${MAX_INSPECT_BYTES} bytes` } : { kind: 'incomplete' };
}

function checkPartialRecordHeader(input: Uint8Array, off: number): ClientHelloResult | undefined {
  const avail = input.length - off;
  if (avail >= 1 && input[off] !== CONTENT_HANDSHAKE) {
    return off === 0 ? { kind: 'not_tls', reason: 'not a TLS handshake record' } : { kind: 'malformed', reason: `record of type ${input[off]} before the ClientHello was complete` };
  }
  if (avail >= 2 && input[off + 1] !== 3) {
    return off === 0 ? { kind: 'not_tls', reason: `record version ${input[off + 1]}.x is not TLS (3.x)` } : { kind: 'malformed', reason: `record version ${input[off + 1]}.x is not 3.x` };
  }
  return undefined;
}

/** Validates the 4-byte handshake header as soon as its bytes are there. */
function checkHandshakeHeader(hs: Uint8Array): ClientHelloResult | undefined {
  if (hs.length < 1) return undefined;
  if (hs[0] !== HANDSHAKE_CLIENT_HELLO) return { kind: 'malformed', reason: `first handshake message has type ${hs[0]}, not ClientHello (1)` };
  if (hs.length < 4) return undefined;
  const helloLen = (hs[1]! << 16) | (hs[2]! << 8) | hs[3]!;
  if (helloLen > MAX_CLIENT_HELLO) return { kind: 'too_large', reason: `ClientHello of ${helloLen} bytes exceeds the ${MAX_CLIENT_HELLO}-byte inspection limit` };
  return undefined;
}

class Reader {
  off = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly what: string,
  ) {}
  need(n: number, field: string): void {
    if (this.buf.length - this.off < n) throw new HelloError(`${this.what}: ${field} needs ${n} bytes, ${this.buf.length - this.off} left`);
  }
  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.off++]!;
  }
  u16(field: string): number {
    this.need(2, field);
    const v = (this.buf[this.off]! << 8) | this.buf[this.off + 1]!;
    this.off += 2;
    return v;
  }
  bytes(n: number, field: string): Uint8Array {
    this.need(n, field);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  get left(): number {
    return this.buf.length - this.off;
  }
}

class HelloError extends Error {}

function parseHelloBody(body: Uint8Array, consumed: number): ClientHelloResult {
  try {
    const r = new Reader(body, 'ClientHello');
    const major = r.u8('legacy_version');
    r.u8('legacy_version');
    if (major !== 3) return { kind: 'malformed', reason: `ClientHello legacy_version ${major}.x is not 3.x` };
    r.bytes(32, 'random');
    const sidLen = r.u8('legacy_session_id length');
    if (sidLen > 32) return { kind: 'malformed', reason: `legacy_session_id of ${sidLen} bytes (at most 32)` };
    r.bytes(sidLen, 'legacy_session_id');
    const csLen = r.u16('cipher_suites length');
    if (csLen < 2 || csLen % 2 !== 0) return { kind: 'malformed', reason: `cipher_suites length ${csLen} is not a positive even number` };
    r.bytes(csLen, 'cipher_suites');
    const cmLen = r.u8('legacy_compression_methods length');
    if (cmLen < 1) return { kind: 'malformed', reason: 'no compression methods' };
    r.bytes(cmLen, 'legacy_compression_methods');
    const info: ClientHelloInfo = { kind: 'tls', alpn: [], ech: false, consumed };
    // TLS 1.0-1.2 hellos may end here: no extensions, so no server name.
    if (r.left === 0) return info;
    const extLen = r.u16('extensions length');
    if (extLen !== r.left) return { kind: 'malformed', reason: `extensions length ${extLen} does not match the ${r.left} bytes left in the ClientHello` };
    const seen = new Set<number>();
    while (r.left > 0) {
      const type = r.u16('extension type');
      const data = r.bytes(r.u16('extension length'), `extension ${type}`);
      if (seen.has(type)) return { kind: 'malformed', reason: `extension ${type} appears twice (RFC 8446 §4.2)` };
      seen.add(type);
      if (type === EXT_SERVER_NAME) {
        const name = parseServerName(data);
        if (name !== undefined) info.serverName = name;
      } else if (type === EXT_ALPN) {
        info.alpn = parseAlpn(data);
      } else if (type === EXT_ECH) {
        info.ech = true;
      }
    }
    return info;
  } catch (e) {
    if (e instanceof HelloError) return { kind: 'malformed', reason: e.message };
    throw e;
  }
}

/** RFC 6066 §3: ServerNameList; at most one host_name. Unknown name types are skipped. */
function parseServerName(data: Uint8Array): string | undefined {
  const r = new Reader(data, 'server_name');
  const listLen = r.u16('server_name_list length');
  if (listLen !== r.left || listLen === 0) throw new HelloError(`server_name: list length ${listLen} does not match the ${r.left} bytes of the extension`);
  let host: string | undefined;
  while (r.left > 0) {
    const nameType = r.u8('name_type');
    const name = r.bytes(r.u16('name length'), 'name');
    if (nameType !== NAME_TYPE_HOST) continue;
    if (host !== undefined) throw new HelloError('server_name: more than one host_name');
    host = hostName(name);
  }
  return host;
}

function hostName(raw: Uint8Array): string {
  if (raw.length === 0 || raw.length > 255) throw new HelloError(`server_name: host_name of ${raw.length} bytes (1-255)`);
  let s = '';
  for (const b of raw) {
    // Letters, digits, '-', '.', '_' (seen in the wild), '*' never: a DNS name, not a pattern.
    const ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2e || b === 0x5f;
    if (!ok) throw new HelloError(`server_name: host_name has byte 0x${hex2(b)}, not a DNS name character`);
    s += String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 32 : b);
  }
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s.length === 0 || s.startsWith('.') || s.includes('..')) throw new HelloError(`server_name: "${s}" has an empty label`);
  return s;
}

function parseAlpn(data: Uint8Array): string[] {
  const r = new Reader(data, 'application_layer_protocol_negotiation');
  const listLen = r.u16('protocol_name_list length');
  if (listLen !== r.left) throw new HelloError(`ALPN: list length ${listLen} does not match the ${r.left} bytes of the extension`);
  const out: string[] = [];
  while (r.left > 0) {
    const n = r.u8('protocol name length');
    if (n === 0) throw new HelloError('ALPN: empty protocol name');
    out.push(Buffer.from(r.bytes(n, 'protocol name')).toString('latin1'));
  }
  return out;
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p.subarray(0, Math.min(p.length, total - o)), o);
    o += p.length;
    if (o >= total) break;
  }
  return out;
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, '0');
}
