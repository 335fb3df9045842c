// The demo's traffic: servers that check what they receive, clients that keep connections
// going at a paced rate and verify each one end to end, and probes from the blocked client.
//
// One connection: the client sends an 8-byte length N and then N bytes, paced; the server hashes
// the N bytes and answers with one JSON line {server, bytes, sha256}; the client compares the
// hash with its own and closes. A connection is "ok" only when the bytes arrived whole at the
// server that should have them (for TLS: the one its SNI names). Runs anywhere (tests use
// loopback); the demo runs it inside its namespaces through traffic-main.ts.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

export interface ServePort {
  port: number;
  /** PEM certificate and key: serve TLS on this port. */
  tls?: { cert: string; key: string };
}

export interface ServeSpec {
  /** How this server names itself in its answers (s1, s2). */
  name: string;
  host: string;
  ports: ServePort[];
}

export interface DriveTarget {
  /** Unique id of this stream of connections. */
  id: string;
  /** The listener it goes through (for grouping in the table). */
  listener: string;
  host: string;
  port: number;
  /** Connections kept open at once. */
  conns: number;
  bytesPerConn: number;
  /** Bytes per second for the target as a whole (split across its connections). */
  rate: number;
  /** TLS with this server name; the answer must come from `expect`. */
  tls?: { servername: string; ca: string; expect: string };
}

export interface ProbeTarget {
  id: string;
  host: string;
  port: number;
  intervalMs: number;
  timeoutMs: number;
}

export interface TargetStats {
  listener: string;
  started: number;
  ok: number;
  failed: number;
  active: number;
  /** Bytes written so far (all connections). */
  sent: number;
  /** Bytes of connections that ended verified. */
  verified: number;
  /** Which server answered the verified connections. */
  servers: Record<string, number>;
  lastError?: string;
}

export interface ProbeStats {
  attempts: number;
  /** Connections that got through (a drop rule should keep this at 0). */
  connected: number;
  timeouts: number;
  refused: number;
  errors: number;
}

const HEADER = 8;
const TICK_MS = 50;
const STALL_MS = 15_000;
const POOL = randomBytes(1 << 20);

/** Starts the servers; resolves once every port listens, with the ports bound (for port 0). */
export async function serve(spec: ServeSpec, onError: (msg: string) => void): Promise<{ ports: number[]; close(): Promise<void> }> {
  const servers: net.Server[] = [];
  const open = new Set<net.Socket>();
  for (const p of spec.ports) {
    const handler = (sock: net.Socket) => {
      open.add(sock);
      sock.once('close', () => open.delete(sock));
      answer(sock, spec.name, onError);
    };
    const server = p.tls ? tls.createServer({ cert: p.tls.cert, key: p.tls.key }, handler) : net.createServer(handler);
    // TLS handshakes that fail (a client that gave up) are the client's to report.
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`server ${spec.name} cannot listen on ${spec.host}:${p.port}: ${e.message}`)));
      server.listen(p.port, spec.host, () => resolve());
    });
    servers.push(server);
  }
  return {
    ports: servers.map((s) => (s.address() as net.AddressInfo).port),
    close: async () => {
      for (const sock of open) sock.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

function answer(sock: net.Socket, name: string, onError: (msg: string) => void): void {
  let header = Buffer.alloc(0);
  let want = -1;
  let got = 0;
  const hash = createHash('sha256');
  // Health checks and blocked probes connect and close without a header: not an error.
  sock.on('error', () => undefined);
  sock.on('data', (chunk: Buffer) => {
    if (want < 0) {
      header = Buffer.concat([header, chunk]);
      if (header.length < HEADER) return;
      want = Number(header.readBigUInt64BE(0));
      chunk = header.subarray(HEADER);
    }
    if (got + chunk.length > want) {
      onError(`server ${name}: a client sent more than the ${want} bytes it announced; closing it`);
      sock.destroy();
      return;
    }
    hash.update(chunk);
    got += chunk.length;
    if (got === want) sock.write(`${JSON.stringify({ server: name, bytes: got, sha256: hash.digest('hex') })}\n`);
  });
}

/** Keeps every target's connections going until stop(); stats() is cumulative. */
export function drive(targets: DriveTarget[]): { stats(): Record<string, TargetStats>; stop(): Promise<void> } {
  const stats: Record<string, TargetStats> = {};
  const open = new Set<net.Socket>();
  let stopped = false;
  for (const t of targets) {
    stats[t.id] = { listener: t.listener, started: 0, ok: 0, failed: 0, active: 0, sent: 0, verified: 0, servers: {} };
    for (let i = 0; i < t.conns; i++) loop(t);
  }

  function loop(t: DriveTarget): void {
    if (stopped) return;
    const s = stats[t.id]!;
    s.started++;
    s.active++;
    connection(t, s, open)
      .then(
        (server) => {
          s.ok++;
          s.verified += t.bytesPerConn;
          s.servers[server] = (s.servers[server] ?? 0) + 1;
          return 0;
        },
        (e: unknown) => {
          if (stopped) return 0;
          s.failed++;
          s.lastError = (e as Error).message;
          // A listener that refuses must not turn this into a busy loop.
          return 500;
        },
      )
      .then((delayMs) => {
        s.active--;
        if (!stopped) setTimeout(() => loop(t), delayMs);
      });
  }

  return {
    stats: () => structuredClone(stats),
    async stop() {
      stopped = true;
      for (const sock of open) sock.destroy();
    },
  };
}

/** One verified connection; resolves with the name of the server that answered. */
function connection(t: DriveTarget, s: TargetStats, open: Set<net.Socket>): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = t.tls ? tls.connect({ host: t.host, port: t.port, servername: t.tls.servername, ca: t.tls.ca }) : net.connect({ host: t.host, port: t.port });
    open.add(sock);
    const hash = createHash('sha256');
    const perTick = Math.max(1, Math.floor((t.rate / t.conns) * (TICK_MS / 1000)));
    let sent = 0;
    let reply = '';
    let lastProgress = Date.now();
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (err?: Error, server?: string) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      open.delete(sock);
      if (err) {
        sock.destroy();
        reject(err);
      } else {
        sock.end();
        resolve(server!);
      }
    };
    const where = `${t.listener} (${t.host}:${t.port}${t.tls ? `, SNI ${t.tls.servername}` : ''})`;
    sock.once(t.tls ? 'secureConnect' : 'connect', () => {
      const header = Buffer.alloc(HEADER);
      header.writeBigUInt64BE(BigInt(t.bytesPerConn));
      sock.write(header);
      let waitingDrain = false;
      timer = setInterval(() => {
        if (Date.now() - lastProgress > STALL_MS) return finish(new Error(`${where}: no progress for ${STALL_MS / 1000} s (sent ${sent} of ${t.bytesPerConn} bytes)`));
        if (waitingDrain || sent >= t.bytesPerConn) return;
        let budget = Math.min(perTick, t.bytesPerConn - sent);
        while (budget > 0) {
          const off = (sent * 7919) % (POOL.length - 65536);
          const chunk = POOL.subarray(off, off + Math.min(budget, 65536));
          hash.update(chunk);
          sent += chunk.length;
          s.sent += chunk.length;
          budget -= chunk.length;
          lastProgress = Date.now();
          if (!sock.write(chunk)) {
            waitingDrain = true;
            sock.once('drain', () => (waitingDrain = false));
            break;
          }
        }
      }, TICK_MS);
    });
    sock.on('data', (d: Buffer) => {
      lastProgress = Date.now();
      reply += d.toString();
      const nl = reply.indexOf('\n');
      if (nl < 0) return;
      let r: { server?: string; bytes?: number; sha256?: string };
      try {
        r = JSON.parse(reply.slice(0, nl)) as typeof r;
      } catch {
        return finish(new Error(`${where}: the answer is not the server's JSON line: ${JSON.stringify(reply.slice(0, 80))}`));
      }
      if (sent !== t.bytesPerConn) return finish(new Error(`${where}: the server answered after ${r.bytes} bytes, before all ${t.bytesPerConn} were sent`));
      const mine = hash.digest('hex');
      if (r.bytes !== sent || r.sha256 !== mine) return finish(new Error(`${where}: the server received ${r.bytes} bytes with SHA-256 ${r.sha256?.slice(0, 12)}…, sent ${sent} with ${mine.slice(0, 12)}…`));
      if (t.tls && r.server !== t.tls.expect) return finish(new Error(`${where}: answered by ${r.server}, but SNI ${t.tls.servername} routes to ${t.tls.expect}`));
      finish(undefined, r.server ?? '?');
    });
    sock.on('error', (e: NodeJS.ErrnoException) => finish(new Error(`${where}: ${e.code ?? e.message}`)));
    sock.on('close', () => finish(new Error(`${where}: closed after ${sent} of ${t.bytesPerConn} bytes, before the server's answer`)));
  });
}

/** Connection attempts at an interval; for a source a drop rule blocks, every one should time out. */
export function probe(targets: ProbeTarget[]): { stats(): Record<string, ProbeStats>; stop(): void } {
  const stats: Record<string, ProbeStats> = {};
  const timers: NodeJS.Timeout[] = [];
  for (const t of targets) {
    const s: ProbeStats = (stats[t.id] = { attempts: 0, connected: 0, timeouts: 0, refused: 0, errors: 0 });
    const attempt = () => {
      s.attempts++;
      const sock = net.connect({ host: t.host, port: t.port });
      const timer = setTimeout(() => {
        s.timeouts++;
        sock.destroy();
      }, t.timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        s.connected++;
        sock.destroy();
      });
      sock.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (e.code === 'ECONNREFUSED') s.refused++;
        else s.errors++;
      });
    };
    attempt();
    timers.push(setInterval(attempt, t.intervalMs));
  }
  return {
    stats: () => structuredClone(stats),
    stop: () => timers.forEach((t) => clearInterval(t)),
  };
}
