#!/usr/bin/env node
// TLS endpoints for the proxy's SNI tests, run inside namespaces with plain `node`.
//   serve   --port P --cert FILE --key FILE --name NAME     prints {"event":"listening","port"}
//           each connection: writes "NAME\n", echoes what it receives, ends after the client's end
//   connect --host H --port P --servername S --ca FILE [--send BYTES]
//           verifies the server certificate against --ca for S, sends BYTES random bytes, ends,
//           prints {"event":"done","name","authorized","sent","echoed","echoOk"}
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

const args = process.argv.slice(2);
const mode = args[0];
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? def : args[i + 1];
};
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

if (mode === 'serve') {
  const name = opt('name');
  const server = tls.createServer({ cert: readFileSync(opt('cert')), key: readFileSync(opt('key')), allowHalfOpen: true }, (s) => {
    s.write(`${name}\n`);
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
    s.on('error', () => undefined);
  });
  server.on('tlsClientError', () => undefined); // plain-TCP probes and health checks
  server.listen(Number(opt('port', 0)), '0.0.0.0', () => emit({ event: 'listening', port: server.address().port }));
} else if (mode === 'connect') {
  const payload = randomBytes(Number(opt('send', 0)));
  const sock = tls.connect({ host: opt('host'), port: Number(opt('port')), servername: opt('servername'), ca: readFileSync(opt('ca')), allowHalfOpen: true });
  const chunks = [];
  sock.on('secureConnect', () => sock.end(payload));
  sock.on('data', (d) => chunks.push(d));
  sock.on('error', (e) => {
    emit({ event: 'done', error: e.code ?? e.message });
    process.exit(1);
  });
  sock.on('end', () => {
    const all = Buffer.concat(chunks);
    const nl = all.indexOf(10);
    const echoed = all.subarray(nl + 1);
    const sha = (b) => createHash('sha256').update(b).digest('hex');
    emit({ event: 'done', name: all.subarray(0, nl).toString(), authorized: sock.authorized, sent: payload.length, echoed: echoed.length, echoOk: sha(payload) === sha(echoed) });
    sock.destroy();
  });
} else {
  process.stderr.write('usage: proxy-tls-tool.mjs serve|connect [options]\n');
  process.exit(2);
}
