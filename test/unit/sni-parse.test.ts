// The ClientHello parser against real hellos captured from node:tls, crafted hellos (records,
// fragments, extensions, ECH), broken input, and seeded random mutations.
import net from 'node:net';
import tls from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { seededRng } from '../../src/agent/proxy/lb.js';
import { MAX_CLIENT_HELLO, MAX_INSPECT_BYTES, parseClientHello, type ClientHelloResult } from '../../src/agent/proxy/sni-parse.js';

/** Captures the first flight a node:tls client sends (its ClientHello records). */
async function captureHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  const got = new Promise<Buffer>((resolve) => {
    server.on('connection', (sock) => {
      const chunks: Buffer[] = [];
      sock.on('data', (d: Buffer) => {
        chunks.push(d);
        const all = Buffer.concat(chunks);
        if (parseClientHello(all).kind !== 'incomplete' || all.length > 64 * 1024) {
          resolve(all);
          sock.destroy();
        }
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
  client.on('error', () => undefined); // the capture server hangs up
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}

// ---- a small ClientHello builder (RFC 8446 §4.1.2) ----------------------------------------
const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);
const u24 = (n: number) => Buffer.from([n >> 16, (n >> 8) & 255, n & 255]);
const vec16 = (b: Buffer) => Buffer.concat([u16(b.length), b]);
const vec8 = (b: Buffer) => Buffer.concat([Buffer.from([b.length]), b]);
const ext = (type: number, data: Buffer) => Buffer.concat([u16(type), vec16(data)]);
const sniExt = (...names: Array<string | [number, string]>) =>
  ext(
    0,
    vec16(
      Buffer.concat(
        names.map((n) => {
          const [t, s] = typeof n === 'string' ? [0, n] : n;
          return Buffer.concat([Buffer.from([t]), vec16(Buffer.from(s, 'latin1'))]);
        }),
      ),
    ),
  );
const alpnExt = (...protos: string[]) => ext(16, vec16(Buffer.concat(protos.map((p) => vec8(Buffer.from(p))))));

function helloBody(extensions: Buffer[] | undefined, sessionId = Buffer.alloc(32, 7)): Buffer {
  const parts = [Buffer.from([3, 3]), Buffer.alloc(32, 1), vec8(sessionId), vec16(Buffer.from([0x13, 0x01, 0x13, 0x02])), vec8(Buffer.from([0]))];
  if (extensions) parts.push(vec16(Buffer.concat(extensions)));
  return Buffer.concat(parts);
}
const handshake = (body: Buffer, type = 1) => Buffer.concat([Buffer.from([type]), u24(body.length), body]);
/** Frames a handshake byte stream into records of the given sizes (the last size repeats). */
function records(hs: Buffer, sizes: number[] = [16384], version: [number, number] = [3, 1]): Buffer {
  const out: Buffer[] = [];
  let off = 0;
  let i = 0;
  while (off < hs.length) {
    const n = Math.min(sizes[Math.min(i++, sizes.length - 1)]!, hs.length - off);
    out.push(Buffer.from([22, version[0], version[1]]), u16(n), hs.subarray(off, off + n));
    off += n;
  }
  return Buffer.concat(out);
}
const hello = (extensions?: Buffer[], sizes?: number[]) => records(handshake(helloBody(extensions)), sizes);

function expectTls(r: ClientHelloResult): Extract<ClientHelloResult, { kind: 'tls' }> {
  if (r.kind !== 'tls') throw new Error(`expected a ClientHello, got ${JSON.stringify(r)}`);
  return r;
}

/** Every strict prefix is incomplete, the whole is final: what arrives over many TCP reads. */
function expectPrefixesIncomplete(buf: Buffer): void {
  for (let n = 0; n < buf.length; n++) {
    const r = parseClientHello(buf.subarray(0, n));
    if (r.kind !== 'incomplete') throw new Error(`prefix of ${n}/${buf.length} bytes gave ${JSON.stringify(r)}`);
  }
}

describe('ClientHellos captured from node:tls', () => {
  let withSni: Buffer;
  let noSni: Buffer;
  let tls12: Buffer;
  beforeAll(async () => {
    withSni = await captureHello({ servername: 'Kafka1.Server.TEST', ALPNProtocols: ['h2', 'http/1.1'] });
    noSni = await captureHello({}); // connecting to an IP: node sends no server_name
    tls12 = await captureHello({ servername: 'old.server.test', maxVersion: 'TLSv1.2' });
  });

  it('finds the server name (lower-cased) and ALPN', () => {
    const r = expectTls(parseClientHello(withSni));
    expect(r.serverName).toBe('kafka1.server.test');
    expect(r.alpn).toEqual(['h2', 'http/1.1']);
    expect(r.ech).toBe(false);
    expect(r.consumed).toBe(withSni.length);
  });

  it('reports TLS without a server name when the client sends none', () => {
    const r = expectTls(parseClientHello(noSni));
    expect(r.serverName).toBeUndefined();
  });

  it('parses a TLS 1.2-only hello', () => {
    expect(expectTls(parseClientHello(tls12)).serverName).toBe('old.server.test');
  });

  it('waits while the hello arrives one byte at a time', () => {
    expectPrefixesIncomplete(withSni);
    expect(parseClientHello(withSni).kind).toBe('tls');
  });

  it('reassembles the hello when it is split over several TLS records', () => {
    const hs = withSni.subarray(5, 5 + withSni.readUInt16BE(3));
    for (const sizes of [[1], [3], [7, 100], [4, 1, 16384], [hs.length - 1]]) {
      const framed = records(hs, sizes);
      expect(expectTls(parseClientHello(framed)).serverName).toBe('kafka1.server.test');
      expectPrefixesIncomplete(framed);
    }
  });

  it('tolerates what follows the hello (TLS 1.3 early data records)', () => {
    const early = Buffer.concat([withSni, Buffer.from([23, 3, 3, 0, 4, 1, 2, 3, 4])]);
    const r = expectTls(parseClientHello(early));
    expect(r.consumed).toBe(withSni.length);
  });

  it('never throws on seeded random mutations of a real hello', () => {
    const rng = seededRng(42);
    const kinds = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(withSni);
      const flips = 1 + Math.floor(rng() * 4);
      for (let f = 0; f < flips; f++) b[Math.floor(rng() * b.length)] = Math.floor(rng() * 256);
      const cut = rng() < 0.3 ? Math.floor(rng() * b.length) : b.length;
      const r = parseClientHello(b.subarray(0, cut));
      expect(['tls', 'incomplete', 'not_tls', 'malformed', 'too_large']).toContain(r.kind);
      kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1);
    }
    // The mutations reach the deep checks, not just the first byte.
    expect(kinds.get('malformed') ?? 0).toBeGreaterThan(100);
    expect(kinds.get('tls') ?? 0).toBeGreaterThan(100);
  });
});

describe('crafted ClientHellos', () => {
  it('finds the server name among several extensions, wherever it is', () => {
    const r = expectTls(parseClientHello(hello([ext(10, Buffer.from([0, 2, 0, 29])), alpnExt('kafka'), ext(43, Buffer.from([2, 3, 4])), sniExt('b.test')])));
    expect(r.serverName).toBe('b.test');
    expect(r.alpn).toEqual(['kafka']);
  });

  it('takes the outer server name of an ECH hello', () => {
    const echPayload = Buffer.concat([Buffer.from([0]), Buffer.alloc(40, 9)]);
    const r = expectTls(parseClientHello(hello([sniExt('public.ech.test'), ext(0xfe0d, echPayload)])));
    expect(r.serverName).toBe('public.ech.test');
    expect(r.ech).toBe(true);
  });

  it('accepts hellos without extensions (TLS 1.0-1.2) and without SNI', () => {
    expect(expectTls(parseClientHello(hello(undefined))).serverName).toBeUndefined();
    expect(expectTls(parseClientHello(hello([alpnExt('h2')]))).serverName).toBeUndefined();
  });

  it('skips unknown name types and drops a trailing dot', () => {
    expect(expectTls(parseClientHello(hello([sniExt([7, 'whatever'], 'x.test.')]))).serverName).toBe('x.test');
  });

  it('refuses a hello that is larger than the inspection limit, as soon as the header says so', () => {
    const big = hello([sniExt('a.test'), ext(21, Buffer.alloc(MAX_CLIENT_HELLO))]);
    expect(parseClientHello(big).kind).toBe('too_large');
    expect(parseClientHello(big.subarray(0, 9)).kind).toBe('too_large');
    const atLimit = helloBody([sniExt('a.test')]);
    const padded = hello([sniExt('a.test'), ext(21, Buffer.alloc(MAX_CLIENT_HELLO - atLimit.length - 4))]);
    expect(expectTls(parseClientHello(padded)).serverName).toBe('a.test');
  });

  it('gives up on a hello spread over too many records', () => {
    const thin = hello([sniExt('a.test'), ext(21, Buffer.alloc(4000))], [1]);
    expect(thin.length).toBeGreaterThan(MAX_INSPECT_BYTES);
    expect(parseClientHello(thin).kind).toBe('too_large');
  });
});

describe('input that is not a usable ClientHello', () => {
  const cases: Array<[string, Buffer, ClientHelloResult['kind'], RegExp?]> = [
    ['HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), 'not_tls', /0x47/],
    ['SSLv2-compatible hello', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15]), 'not_tls', /SSLv2/],
    ['a record of another type', Buffer.from([23, 3, 3, 0, 1, 0]), 'not_tls'],
    ['a record version that is not 3.x', Buffer.from([22, 2, 0, 0, 4]), 'not_tls'],
    ['a lone non-TLS byte', Buffer.from([0x00]), 'not_tls'],
    ['a zero-length handshake record', Buffer.from([22, 3, 1, 0, 0]), 'malformed', /zero-length/],
    ['a record longer than 2^14', Buffer.from([22, 3, 1, 0x40, 0x01]), 'malformed', /2\^14/],
    ['a ServerHello', records(handshake(helloBody([]), 2)), 'malformed', /type 2/],
    ['the wrong type, visible in a partial record', Buffer.from([22, 3, 1, 0, 100, 2]), 'malformed', /type 2/],
    ['an alert record after the first fragment', Buffer.concat([records(handshake(helloBody([sniExt('a.test')])).subarray(0, 10)), Buffer.from([21, 3, 3, 0, 2, 2, 40])]), 'malformed', /type 21/],
    ['a duplicate extension', hello([sniExt('a.test'), sniExt('b.test')]), 'malformed', /twice/],
    ['two host names', hello([sniExt('a.test', 'b.test')]), 'malformed', /more than one/],
    ['a host name with a NUL byte', hello([sniExt('a\0.test')]), 'malformed', /0x00/],
    ['a host name with an empty label', hello([sniExt('a..test')]), 'malformed', /empty label/],
    ['an empty host name', hello([sniExt('')]), 'malformed'],
    ['a server_name list length that does not match', hello([ext(0, Buffer.from([0, 9, 0, 0, 1, 0x61]))]), 'malformed', /list length/],
    ['extensions that overrun the hello', records(handshake(Buffer.concat([helloBody(undefined), u16(50), u16(0), u16(46)]))), 'malformed'],
    ['an odd cipher suite length', records(handshake(Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32), vec8(Buffer.alloc(0)), vec16(Buffer.from([1, 2, 3])), vec8(Buffer.from([0]))]))), 'malformed', /even/],
    ['a session id longer than 32 bytes', records(handshake(helloBody(undefined, Buffer.alloc(33)))), 'malformed', /session_id/],
    ['no compression methods', records(handshake(Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32), vec8(Buffer.alloc(0)), vec16(Buffer.from([0x13, 1])), vec8(Buffer.alloc(0))]))), 'malformed', /compression/],
    ['a truncated hello body', records(handshake(helloBody([sniExt('a.test')]).subarray(0, 20))), 'malformed', /needs/],
    ['an empty ALPN name', hello([ext(16, vec16(Buffer.from([0])))]), 'malformed', /empty protocol/],
  ];
  for (const [what, input, kind, reason] of cases) {
    it(`${what} → ${kind}`, () => {
      const r = parseClientHello(input);
      expect(r.kind).toBe(kind);
      if (reason && 'reason' in r) expect(r.reason).toMatch(reason);
    });
  }

  it('is incomplete on empty input', () => {
    expect(parseClientHello(Buffer.alloc(0)).kind).toBe('incomplete');
  });

  it('never throws on seeded random bytes', () => {
    const rng = seededRng(7);
    for (let i = 0; i < 5000; i++) {
      const len = Math.floor(rng() * 600);
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = Math.floor(rng() * 256);
      if (len > 0 && rng() < 0.5) b[0] = 22;
      if (len > 1 && rng() < 0.5) b[1] = 3;
      expect(() => parseClientHello(b)).not.toThrow();
    }
  });
});

