// The demo's traffic and bridge on loopback: verified connections through a TCP → Unix → TCP
// bridge, a corrupted byte and a wrong SNI answer are failures that say why, TLS by server name,
// and probes count what got through.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridge, type Bridge } from '../../src/demo/bridge.js';
import { drive, probe, serve, type DriveTarget, type TargetStats } from '../../src/demo/traffic.js';

let dir: string;
let cert: string;
let key: string;
const closers: Array<() => Promise<void> | void> = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'exds-demo-traffic-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=demo test', '-addext', 'subjectAltName=DNS:a.demo.test'], { stdio: 'ignore' });
  cert = readFileSync(join(dir, 'c.pem'), 'utf8');
  key = readFileSync(join(dir, 'k.pem'), 'utf8');
});

afterAll(async () => {
  for (const c of closers.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function runTarget(t: Omit<DriveTarget, 'id' | 'listener'>, enough: (s: TargetStats) => boolean): Promise<TargetStats> {
  const d = drive([{ id: 't', listener: 'l', ...t }]);
  try {
    await until(() => enough(d.stats()['t']!));
    return d.stats()['t']!;
  } finally {
    await d.stop();
  }
}

describe('demo traffic', () => {
  let plainPort: number;
  let tlsPort: number;

  beforeAll(async () => {
    const errors: string[] = [];
    const s = await serve({ name: 's1', host: '127.0.0.1', ports: [{ port: 0 }, { port: 0, tls: { cert, key } }] }, (m) => errors.push(m));
    closers.push(() => s.close());
    [plainPort, tlsPort] = s.ports as [number, number];
  });

  it('verifies each connection end to end, here through a TCP → Unix socket → TCP bridge', async () => {
    const sock = join(dir, 'b.sock');
    const inner: Bridge = await bridge({ unix: sock }, { tcp: { host: '127.0.0.1', port: plainPort } });
    const outer: Bridge = await bridge({ tcp: { host: '127.0.0.1', port: 0 } }, { unix: sock });
    closers.push(() => inner.close(), () => outer.close());
    const s = await runTarget({ host: '127.0.0.1', port: outer.port!, conns: 2, bytesPerConn: 300_000, rate: 20e6 }, (x) => x.ok >= 4);
    expect(s.failed).toBe(0);
    expect(s.servers['s1']).toBe(s.ok);
    expect(s.verified).toBe(s.ok * 300_000);
    expect(s.sent).toBeGreaterThanOrEqual(s.verified);
  });

  it('fails a connection whose bytes were changed on the way, naming both hashes', async () => {
    // A middle that flips one byte of everything it forwards to the server.
    const evil = net.createServer((c) => {
      const up = net.connect(plainPort, '127.0.0.1');
      let flipped = false;
      c.on('data', (d: Buffer) => {
        if (!flipped && d.length > 100) {
          d[50] = d[50]! ^ 0xff;
          flipped = true;
        }
        up.write(d);
      });
      up.pipe(c);
      c.on('close', () => up.destroy());
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => evil.close(() => r())));
    const s = await runTarget({ host: '127.0.0.1', port: (evil.address() as net.AddressInfo).port, conns: 1, bytesPerConn: 200_000, rate: 20e6 }, (x) => x.failed >= 1);
    expect(s.ok).toBe(0);
    expect(s.lastError).toMatch(/received 200000 bytes with SHA-256 [0-9a-f]{12}…, sent 200000 with [0-9a-f]{12}…/);
  });

  it('speaks TLS with the server name, and fails when another server than SNI names answers', async () => {
    const good = await runTarget({ host: '127.0.0.1', port: tlsPort, conns: 1, bytesPerConn: 100_000, rate: 20e6, tls: { servername: 'a.demo.test', ca: cert, expect: 's1' } }, (x) => x.ok >= 2);
    expect(good.failed).toBe(0);
    const wrong = await runTarget({ host: '127.0.0.1', port: tlsPort, conns: 1, bytesPerConn: 100_000, rate: 20e6, tls: { servername: 'a.demo.test', ca: cert, expect: 's2' } }, (x) => x.failed >= 1);
    expect(wrong.lastError).toContain('answered by s1, but SNI a.demo.test routes to s2');
    const untrusted = await runTarget({ host: '127.0.0.1', port: tlsPort, conns: 1, bytesPerConn: 100_000, rate: 20e6, tls: { servername: 'b.demo.test', ca: cert, expect: 's1' } }, (x) => x.failed >= 1);
    expect(untrusted.lastError).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('paces the bytes at the target rate', async () => {
    const started = Date.now();
    const s = await runTarget({ host: '127.0.0.1', port: plainPort, conns: 1, bytesPerConn: 1_000_000, rate: 2e6 }, (x) => x.ok >= 1);
    const ms = Date.now() - started;
    expect(s.ok).toBe(1);
    expect(ms).toBeGreaterThan(400); // 1 MB at 2 MB/s is about 500 ms, never a burst
  });

  it('counts probes that got through and ones refused', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const p = probe([
      { id: 'open', host: '127.0.0.1', port: plainPort, intervalMs: 50, timeoutMs: 1000 },
      { id: 'closed', host: '127.0.0.1', port: closedPort, intervalMs: 50, timeoutMs: 1000 },
    ]);
    try {
      await until(() => p.stats()['open']!.connected >= 2 && p.stats()['closed']!.refused >= 2);
      expect(p.stats()['closed']!.connected).toBe(0);
    } finally {
      p.stop();
    }
  });
});
