#!/usr/bin/env node
// TCP traffic endpoint for data path tests and benchmarks, run inside a namespace with plain
// `node` (fast start, no TypeScript). Each side sends a non-repeating AES-CTR byte stream and
// hashes what it sends and receives, so the test compares SHA-256 across ends: a lost,
// duplicated or reordered byte changes the hash. One JSON line per event on stdout.
//
//   serve   --port P [--host A] [--conns N] <conn options>     prints {"event":"listening"}
//   connect --host A --port P [--conns N] [--parallel K] <conn options>
// Sockets are half-open capable: a side that finished sending sends FIN (shutdown) and keeps
// reading until the peer's FIN, so half-close is the normal end of every connection.
// conn options:
//   --send BYTES        bytes to send (default 0)
//   --wait-first        do not send until the first byte arrives (default: send at once)
//   --rst-after BYTES   after receiving BYTES, reset the connection (RST)
//   --pause-ms MS       stop sending for MS in the middle of the stream (idle period)
//   --hold-ms MS        keep the connection open MS after sending before ending it
//   --quiet             no line per connection: the summary counts them (many short connections)
//   --fin-with-data     the FIN rides on the last bytes (one segment carries both, as a TLS
//                       close_notify held back by Nagle often does): TCP_CORK before the last
//                       write holds its partial segment back until shutdown() adds the FIN
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

const args = process.argv.slice(2);
const mode = args[0];
function opt(name, def) {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = args[i + 1];
  return typeof def === 'number' ? Number(v) : v;
}
const flag = (name) => args.includes(`--${name}`);
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const conf = {
  send: opt('send', 0),
  waitFirst: flag('wait-first'),
  rstAfter: opt('rst-after', -1),
  pauseMs: opt('pause-ms', 0),
  holdMs: opt('hold-ms', 0),
  quiet: flag('quiet'),
  finWithData: flag('fin-with-data'),
};

// TCP_CORK has no Node API: set it through libc (koffi is a dependency of the project).
const cork = conf.finWithData ? await corker() : undefined;
async function corker() {
  const { default: koffi } = await import('koffi');
  const setsockopt = koffi.load('libc.so.6').func('int setsockopt(int fd, int level, int name, const int *value, uint32_t len)');
  const IPPROTO_TCP = 6;
  const TCP_CORK = 3;
  return (sock) => {
    const fd = sock._handle?.fd;
    if (typeof fd !== 'number' || fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_CORK, [1], 4) !== 0) throw new Error('--fin-with-data: TCP_CORK could not be set');
  };
}

const CHUNK = 256 * 1024;

function stream() {
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const zeros = Buffer.alloc(CHUNK);
  return (n) => cipher.update(n === CHUNK ? zeros : zeros.subarray(0, n));
}

let nextId = 0;
function drive(sock, role) {
  const id = nextId++;
  const started = process.hrtime.bigint();
  const sentHash = createHash('sha256');
  const recvHash = createHash('sha256');
  let sent = 0;
  let recv = 0;
  let sending = false;
  let paused = false;
  let finished = false;
  let endedBy = 'fin';
  let error;
  const gen = stream();
  sock.setNoDelay(true);

  function pump() {
    while (sent < conf.send && !paused) {
      if (conf.pauseMs > 0 && sent >= conf.send / 2 && !pump.didPause) {
        pump.didPause = true;
        paused = true;
        setTimeout(() => {
          paused = false;
          pump();
        }, conf.pauseMs);
        return;
      }
      const n = Math.min(CHUNK, conf.send - sent);
      if (cork && sent + n >= conf.send) cork(sock);
      const buf = gen(n);
      sentHash.update(buf);
      sent += n;
      if (!sock.write(buf)) {
        sock.once('drain', pump);
        return;
      }
    }
    if (sent >= conf.send && !paused) {
      // With --rst-after the connection ends by RST, not by our FIN.
      const close = () => {
        if (conf.rstAfter < 0) sock.end();
      };
      if (conf.holdMs > 0) setTimeout(close, conf.holdMs);
      else close();
    }
  }
  function startSending() {
    if (sending) return;
    sending = true;
    pump();
  }

  sock.on('data', (d) => {
    recvHash.update(d);
    recv += d.length;
    if (conf.waitFirst) startSending();
    if (conf.rstAfter >= 0 && recv >= conf.rstAfter && !sock.destroyed) {
      endedBy = 'rst-sent';
      sock.resetAndDestroy();
    }
  });
  sock.on('error', (e) => {
    error = e.code ?? e.message;
    if (e.code === 'ECONNRESET') endedBy = 'rst-received';
  });
  const done = new Promise((resolve) => {
    sock.on('close', () => {
      if (finished) return;
      finished = true;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const rec = {
        event: 'done',
        role,
        id,
        sent,
        sentSha: sentHash.digest('hex'),
        recv,
        recvSha: recvHash.digest('hex'),
        endedBy,
        ms,
        local: `${sock.localAddress}:${sock.localPort}`,
      };
      if (error && endedBy === 'fin') rec.error = error;
      if (!conf.quiet) emit(rec);
      resolve(rec);
    });
  });
  if (!conf.waitFirst) startSending();
  return done;
}

if (mode === 'serve') {
  const port = opt('port', 0);
  const host = opt('host', '0.0.0.0');
  const conns = opt('conns', 1);
  let seen = 0;
  const pending = [];
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    seen++;
    pending.push(drive(sock, 'server'));
    if (seen >= conns) {
      server.close();
      Promise.all(pending).then(() => process.exit(0));
    }
  });
  server.listen({ port, host }, () => emit({ event: 'listening', port: server.address().port }));
} else if (mode === 'connect') {
  const port = opt('port', 0);
  const host = opt('host', '127.0.0.1');
  const conns = opt('conns', 1);
  const parallel = opt('parallel', 1);
  let started = 0;
  const t0 = process.hrtime.bigint();
  const results = [];
  async function worker() {
    while (started < conns) {
      started++;
      const sock = net.connect({ host, port, allowHalfOpen: true });
      results.push(await drive(sock, 'client'));
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, conns) }, worker));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const failed = results.filter((r) => r.endedBy !== 'fin' || r.error);
  emit({
    event: 'summary',
    conns: results.length,
    ms,
    bytes: results.reduce((a, r) => a + r.sent + r.recv, 0),
    sent: results.reduce((a, r) => a + r.sent, 0),
    recv: results.reduce((a, r) => a + r.recv, 0),
    failed: failed.length,
    failures: failed.slice(0, 5),
  });
} else {
  process.stderr.write('usage: tcp-tool.mjs serve|connect [options]\n');
  process.exit(2);
}
