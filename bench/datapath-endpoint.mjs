#!/usr/bin/env node
// Throughput endpoints for bench/datapath.ts, run inside a namespace with plain `node`: cheap
// on CPU (one preallocated buffer, no hashing), so that the middlebox dominates what the bench
// measures. One JSON line on stdout when done.
//   sink   --port P --flows N            accept N connections, discard, report bytes and timing
//   source --host H --port P --flows N --seconds S   N connections sending for S seconds
// Short connections (--conn-bytes B): the source keeps N connections at a time, each sending B
// bytes, closing its side and waiting for the sink to close; it reports connections, bytes and
// timing. The sink (--many) accepts any number of connections, closes each at end of stream, and
// runs until killed.
import net from 'node:net';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? def : Number.isNaN(Number(args[i + 1])) ? args[i + 1] : Number(args[i + 1]);
};
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const now = () => Number(process.hrtime.bigint()) / 1e6;

if (args[0] === 'sink' && args.includes('--many')) {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', () => undefined);
    s.on('end', () => s.end());
    s.on('error', () => undefined);
  });
  server.listen({ port: opt('port', 0), host: '::' }, () => emit({ event: 'listening', port: server.address().port }));
} else if (args[0] === 'source' && opt('conn-bytes', 0) > 0) {
  const size = opt('conn-bytes', 0);
  const t0 = now();
  const until = t0 + opt('seconds', 5) * 1000;
  const buf = Buffer.alloc(size, 0x5a);
  let conns = 0;
  const worker = async () => {
    while (now() < until) {
      await new Promise((resolve, reject) => {
        const s = net.connect({ host: opt('host', '127.0.0.1'), port: opt('port', 0), allowHalfOpen: true });
        s.on('error', reject);
        s.on('connect', () => s.end(buf));
        s.on('close', resolve);
        s.resume();
      });
      conns++;
    }
  };
  Promise.all(Array.from({ length: opt('flows', 1) }, worker)).then(
    () => {
      emit({ event: 'done', conns, bytes: conns * size, ms: now() - t0 });
      process.exit(0);
    },
    (e) => {
      process.stderr.write(`source: ${e.message}\n`);
      process.exit(1);
    },
  );
} else if (args[0] === 'sink') {
  const flows = opt('flows', 1);
  let accepted = 0;
  let open = 0;
  let bytes = 0;
  let first = 0;
  let last = 0;
  const server = net.createServer((s) => {
    accepted++;
    open++;
    if (accepted >= flows) server.close();
    s.on('data', (d) => {
      if (!first) first = now();
      bytes += d.length;
      last = now();
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      if (--open === 0 && accepted >= flows) {
        emit({ event: 'done', bytes, ms: last - first });
        process.exit(0);
      }
    });
  });
  server.listen({ port: opt('port', 0), host: '::' }, () => emit({ event: 'listening', port: server.address().port }));
} else if (args[0] === 'source') {
  const flows = opt('flows', 1);
  const until = now() + opt('seconds', 5) * 1000;
  const buf = Buffer.alloc(1 << 20, 0x5a);
  let done = 0;
  for (let i = 0; i < flows; i++) {
    const s = net.connect({ host: opt('host', '127.0.0.1'), port: opt('port', 0) });
    s.on('error', (e) => {
      process.stderr.write(`source: ${e.message}\n`);
      process.exit(1);
    });
    const pump = () => {
      while (now() < until) if (!s.write(buf)) return void s.once('drain', pump);
      s.end();
    };
    s.on('connect', pump);
    s.on('close', () => {
      if (++done === flows) {
        emit({ event: 'done' });
        process.exit(0);
      }
    });
    s.resume();
  }
} else {
  process.stderr.write('usage: datapath-endpoint.mjs sink|source [options]\n');
  process.exit(2);
}
