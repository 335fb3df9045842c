// A minimal TCP proxy around src/agent/proxy/splice-xdp.ts, run as its own process inside the
// middlebox namespace by test/support/xdp-proxy.ts: accept, connect upstream, splice through
// the pinned XDP splice maps (the datapath is attached by the test). One JSON line per event
// on stdout; when stdin closes it prints a summary and exits.
//   --listen PORT --upstream HOST:PORT --maps DIR [--idle-ms N] [--wscale rescale|fallback]
//   [--max-attempts N] [--splice-after BYTES] [--splice-after-ms MS] [--no-splice]
import net from 'node:net';
import { XdpMaps } from '../../src/agent/bpf/datapath-xdp.js';
import { spliceXdp, type XdpSpliceReport } from '../../src/agent/proxy/splice-xdp.js';
import type { WscalePolicy } from '../../src/agent/proxy/xdp-pairing.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const flag = (name: string) => args.includes(`--${name}`);
const emit = (o: object) => process.stdout.write(`${JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))}\n`);

const mapsDir = opt('maps');
const maps = mapsDir && !flag('no-splice') ? XdpMaps.openPinned(mapsDir) : undefined;
const [upHost, upPortText] = (opt('upstream') ?? '').split(/:(?=\d+$)/);
const upPort = Number(upPortText);
if (!upHost || !upPort) throw new Error('--upstream HOST:PORT is required');
const num = (name: string) => (opt(name) !== undefined ? Number(opt(name)) : undefined);

let active = 0;
const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
  active++;
  down.on('error', () => undefined); // the splice handles errors once it starts
  const up = net.connect({ host: upHost, port: upPort, allowHalfOpen: true });
  up.once('error', (e) => {
    emit({ event: 'error', message: `upstream connect: ${e.message}` });
    down.resetAndDestroy();
    active--;
  });
  up.once('connect', () => {
    const idle = num('idle-ms');
    const attempts = num('max-attempts');
    const after = num('splice-after');
    const afterMs = num('splice-after-ms');
    spliceXdp(down, up, {
      ...(maps ? { maps } : {}),
      ...(idle !== undefined ? { idleTimeoutMs: idle } : {}),
      ...(attempts !== undefined ? { maxAttempts: attempts } : {}),
      ...(after !== undefined ? { spliceAfterBytes: after } : {}),
      ...(afterMs !== undefined ? { spliceAfterMs: afterMs } : {}),
      wscale: (opt('wscale') ?? 'rescale') as WscalePolicy,
      watchIntervalMs: 50,
    }).then((r: XdpSpliceReport) => {
      active--;
      emit({ event: 'conn', ...r });
    });
    down.resume();
  });
});

server.listen({ port: Number(opt('listen') ?? 0), host: '0.0.0.0' }, () => {
  emit({ event: 'listening', port: (server.address() as net.AddressInfo).port, pid: process.pid });
});

function stop() {
  server.close();
  emit({ event: 'summary', active });
  maps?.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
