// A minimal TCP proxy around src/agent/proxy/splice-skb.ts, run as its own process inside a
// namespace (and a test cgroup) by test/support/skb-proxy.ts: accept, connect upstream, splice.
// One JSON line per event on stdout; on SIGTERM (or stdin closing) it prints a summary and exits.
//   --listen PORT --upstream HOST:PORT [--pins DIR] [--cgroup DIR] [--handover-timeout MS]
//   [--peek] [--each] [--sockbuf BYTES] [--no-handover]
// --peek reads the downstream's first bytes before splicing and passes them as `initial` (as an
// SNI-routing proxy does), so the splice starts with bytes queued in user space.
import net from 'node:net';
import { moveToCgroup } from '../../src/agent/bpf/cgroup.js';
import { SkbMaps } from '../../src/agent/bpf/datapath-skb.js';
import { setSockOptInt, SockOpt, socketFd } from '../../src/agent/bpf/socket-syscalls.js';
import { spliceSkb, type SpliceReport } from '../../src/agent/proxy/splice-skb.js';
import { createLogger } from '../../src/util/log.js';

const logger = createLogger({ name: 'skb-proxy', level: process.env['LOG_LEVEL'] ?? 'warn' });

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const flag = (name: string) => args.includes(`--${name}`);
const emit = (o: object) => process.stdout.write(`${JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))}\n`);

const cgroup = opt('cgroup');
if (cgroup) moveToCgroup(cgroup, process.pid); // before any socket exists: sockets take the creator's cgroup
const pins = opt('pins');
const maps = pins ? SkbMaps.openPinned(pins) : undefined;
const [upHost, upPortText] = (opt('upstream') ?? '').split(/:(?=\d+$)/);
const upPort = Number(upPortText);
if (!upHost || !upPort) throw new Error('--upstream HOST:PORT is required');
const handoverTimeout = opt('handover-timeout') !== undefined ? Number(opt('handover-timeout')) : undefined;
const sockbuf = opt('sockbuf') !== undefined ? Number(opt('sockbuf')) : undefined;
const each = flag('each');

const summary = {
  conns: 0,
  active: 0,
  modes: {} as Record<string, number>,
  ends: {} as Record<string, number>,
  fallbackReasons: {} as Record<string, number>,
  userBytes: 0,
  kernelBytes: 0,
  errors: [] as string[],
};

function tune(s: net.Socket) {
  if (!sockbuf) return;
  const fd = socketFd(s);
  setSockOptInt(fd, SockOpt.SOL_SOCKET, SockOpt.SO_RCVBUF, sockbuf);
  setSockOptInt(fd, SockOpt.SOL_SOCKET, SockOpt.SO_SNDBUF, sockbuf);
}

function record(r: SpliceReport) {
  summary.conns++;
  summary.modes[r.mode] = (summary.modes[r.mode] ?? 0) + 1;
  for (const d of [r.downstreamToUpstream, r.upstreamToDownstream]) {
    summary.userBytes += d.userBytes;
    summary.kernelBytes += Number(d.kernelBytes);
  }
  summary.ends[r.end] = (summary.ends[r.end] ?? 0) + 1;
  if (r.fallbackReason) summary.fallbackReasons[r.fallbackReason] = (summary.fallbackReasons[r.fallbackReason] ?? 0) + 1;
  if (r.error && summary.errors.length < 20) summary.errors.push(r.error);
  if (each) emit({ event: 'conn', ...r });
}

const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
  summary.active++;
  down.on('error', () => undefined); // handled by the splice once it starts
  const up = net.connect({ host: upHost, port: upPort, allowHalfOpen: true });
  up.once('error', (e) => {
    if (summary.errors.length < 20) summary.errors.push(`upstream connect: ${e.message}`);
    down.resetAndDestroy();
    summary.active--;
  });
  let initial: Buffer | undefined;
  const peeked = new Promise<void>((resolve) => {
    if (!flag('peek')) return resolve();
    down.once('data', (chunk: Buffer) => {
      initial = chunk;
      down.pause();
      resolve();
    });
    down.resume();
  });
  up.once('connect', async () => {
    await peeked;
    try {
      tune(down);
      tune(up);
    } catch (e) {
      summary.errors.push(`sockbuf: ${(e as Error).message}`);
    }
    spliceSkb(down, up, {
      ...(maps && !flag('no-handover') ? { maps } : {}),
      ...(handoverTimeout !== undefined ? { handoverTimeoutMs: handoverTimeout } : {}),
      ...(initial ? { initial } : {}),
      logger,
    }).then((r) => {
      summary.active--;
      record(r);
    });
    down.resume();
  });
});

server.listen({ port: Number(opt('listen') ?? 0), host: '::' }, () => {
  emit({ event: 'listening', port: (server.address() as net.AddressInfo).port, pid: process.pid });
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close();
  emit({ event: 'summary', ...summary });
  maps?.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
