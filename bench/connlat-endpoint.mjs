#!/usr/bin/env node
// Short-connection endpoints for bench/connlat.ts, run inside a namespace with plain `node` (fast
// start). One request/response per connection, the way an RPC or a TLS handshake uses a short
// connection: the client connects, sends REQ bytes and closes its side; the server answers with
// RESP bytes once the request is complete and closes; the client counts the connection when the
// whole answer and the server's FIN arrived.
//   server --port P --req N --resp M        prints {"event":"listening","port"}; runs until killed
//   client --host H --port P --conns K --seconds S --req N --resp M
//          K connections at a time for S seconds; prints {"event":"done", conns, ms, errors,
//          connect, ttfb, total} where connect/ttfb/total are latency percentiles in ms:
//          connect() → established, → first answer byte, → answer complete and closed.
import net from 'node:net';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? def : Number.isNaN(Number(args[i + 1])) ? args[i + 1] : Number(args[i + 1]);
};
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const now = () => Number(process.hrtime.bigint()) / 1e6;
const REQ = opt('req', 100);
const RESP = opt('resp', 1024);

if (args[0] === 'server') {
  const answer = Buffer.alloc(RESP, 0x61);
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    let got = 0;
    s.on('data', (d) => {
      got += d.length;
      if (got >= REQ && !s.answered) {
        s.answered = true;
        s.end(answer);
      }
    });
    s.on('end', () => s.end());
    s.on('error', () => undefined);
  });
  server.listen({ port: opt('port', 0), host: '::' }, () => emit({ event: 'listening', port: server.address().port }));
} else if (args[0] === 'client') {
  const host = opt('host', '127.0.0.1');
  const port = opt('port', 0);
  const request = Buffer.alloc(REQ, 0x71);
  const t0 = now();
  const until = t0 + opt('seconds', 5) * 1000;
  const lat = { connect: [], ttfb: [], total: [] };
  let errors = 0;
  let lastError = '';
  const one = () =>
    new Promise((resolve) => {
      const start = now();
      let first = 0;
      let got = 0;
      let failed = false;
      const s = net.connect({ host, port, allowHalfOpen: true });
      s.setNoDelay(true);
      s.on('connect', () => {
        lat.connect.push(now() - start);
        s.end(request);
      });
      s.on('data', (d) => {
        if (!first) first = now();
        got += d.length;
      });
      s.on('error', (e) => {
        failed = true;
        lastError = e.code ?? e.message;
      });
      s.on('close', () => {
        if (got === RESP && !failed) {
          lat.ttfb.push(first - start);
          lat.total.push(now() - start);
        } else {
          errors++;
          if (!failed) lastError = `answer of ${got} bytes, expected ${RESP}`;
        }
        resolve();
      });
    });
  const worker = async () => {
    while (now() < until) await one();
  };
  const pct = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const at = (q) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : 0);
    return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: s.length ? s[s.length - 1] : 0 };
  };
  Promise.all(Array.from({ length: opt('conns', 1) }, worker)).then(() => {
    emit({ event: 'done', conns: lat.total.length, ms: now() - t0, errors, lastError, connect: pct(lat.connect), ttfb: pct(lat.ttfb), total: pct(lat.total) });
    process.exit(0);
  });
} else {
  process.stderr.write('usage: connlat-endpoint.mjs server|client [options]\n');
  process.exit(2);
}
