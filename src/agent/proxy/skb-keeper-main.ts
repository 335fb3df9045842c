// The splice keeper process: holds the sockets of SKB-spliced pairs after their handover so they
// outlive the agent's process (a kill -9 of the agent closes every fd the agent holds; the
// keeper's keep the connections open, and the kernel carries their bytes the whole time). The
// agent forks it detached (own session and process group) with an IPC channel; each socket
// arrives as a raw TCP handle. It runs the post-handover phase (skb-keeper-pair.ts) per pair,
// reports each pair's end to the agent while the agent is there, and logs it (pino, stderr,
// which it shares with the agent). It exits once its agent is gone and its last pair ended.
//
// argv: <SKB pin directory>. Started through skb-keeper-entry.mjs (registers tsx).
import net from 'node:net';
import { SkbMaps } from '../bpf/datapath-skb.js';
import { createLogger } from '../../util/log.js';
import { keepPair, type KeptPair } from './skb-keeper-pair.js';
import { isAgentToKeeper, type KeeperPairMeta, type KeeperToAgent } from './skb-keeper-protocol.js';

const log = createLogger({ name: 'ebpf-xds-agent' }).child({ component: 'skb-keeper' });
const pinDir = process.argv[2];

interface Pending {
  meta?: KeeperPairMeta;
  down?: net.Socket;
  up?: net.Socket;
  since: number;
}

const pending = new Map<string, Pending>();
const pairs = new Map<string, KeptPair>();
let agentGone = typeof process.send !== 'function';
let maps: SkbMaps | undefined;

const send = (m: KeeperToAgent) => {
  if (agentGone || !process.send) return;
  try {
    process.send(m);
  } catch (err) {
    log.debug({ err }, 'could not report to the agent (it is gone)');
  }
};

const exitWhenIdle = () => {
  if (!agentGone || pairs.size > 0) return;
  for (const p of pending.values()) for (const s of [p.down, p.up]) s?.destroy();
  pending.clear();
  maps?.close();
  log.info({}, 'splice keeper exiting: its agent is gone and its last pair ended');
  // pino writes asynchronously: exit once its buffer is out.
  log.flush(() => process.exit(0));
};

const start = (connId: string, p: Required<Pending>) => {
  pending.delete(connId);
  const pairLog = log.child({ conn: connId, listener: p.meta.listener });
  const kept = keepPair(p.down, p.up, p.meta, maps, pairLog);
  pairs.set(connId, kept);
  send({ type: 'adopted', connId });
  void kept.done.then((report) => {
    pairs.delete(connId);
    pairLog[report.end === 'error' || report.mode === 'broken' ? 'warn' : 'info'](
      { end: report.end, mode: report.mode, ...(report.error ? { error: report.error } : {}), kernelBytes: report.kernelBytes, agent: agentGone ? 'gone' : 'present' },
      'spliced pair ended (splice keeper)',
    );
    send({ type: 'ended', connId, report });
    exitWhenIdle();
  });
};

process.on('message', (msg: unknown, handle: unknown) => {
  if (!isAgentToKeeper(msg)) {
    log.warn({ msg }, 'ignoring a message the splice keeper does not know');
    return;
  }
  if (msg.type === 'reset') {
    pairs.get(msg.connId)?.reset(msg.reason);
    return;
  }
  if (msg.type === 'forget') {
    // Our copies only: the agent holds the sockets and carries on with them (it gave up waiting
    // for us, possibly after we had started the pair).
    const p = pending.get(msg.connId);
    pending.delete(msg.connId);
    for (const s of [p?.down, p?.up]) s?.destroy();
    const kept = pairs.get(msg.connId);
    if (kept) {
      pairs.delete(msg.connId);
      kept.abandon();
      log.warn({ conn: msg.connId }, 'the agent kept a pair this keeper had started (it answered too late)');
      exitWhenIdle();
    }
    return;
  }
  // A raw TCP handle: wrapping it ourselves (allowHalfOpen from the start) keeps a peer's FIN
  // from being answered with ours before the pair is watched.
  let sock: net.Socket | undefined;
  try {
    if (handle) sock = new net.Socket({ handle, allowHalfOpen: true } as net.SocketConstructorOpts);
  } catch (err) {
    log.warn({ err, conn: msg.connId }, 'could not wrap a socket the agent passed');
  }
  if (!sock) {
    const p = pending.get(msg.connId);
    pending.delete(msg.connId);
    for (const s of [p?.down, p?.up]) s?.destroy();
    send({ type: 'refused', connId: msg.connId, reason: `the ${msg.role} socket did not arrive with its message` });
    return;
  }
  const p = pending.get(msg.connId) ?? { since: Date.now() };
  pending.set(msg.connId, p);
  p[msg.role] = sock;
  if (msg.meta) p.meta = msg.meta;
  if (p.meta && p.down && p.up) start(msg.connId, p as Required<Pending>);
});

process.on('disconnect', () => {
  agentGone = true;
  log.info({ pairs: pairs.size }, pairs.size > 0 ? 'the agent is gone; the splice keeper carries on with its pairs' : 'the agent is gone');
  exitWhenIdle();
});

// The agent's signals do not reach us (own process group); a SIGTERM for us ends our pairs.
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    log.info({ signal: sig, pairs: pairs.size }, 'splice keeper stopping: its pairs are reset');
    for (const k of pairs.values()) k.reset(`the splice keeper got ${sig}`);
    log.flush(() => process.exit(0));
  });
}

try {
  if (!pinDir) throw new Error('usage: skb-keeper <SKB pin directory>');
  maps = SkbMaps.openPinned(pinDir);
} catch (err) {
  log.error({ err: (err as Error).message, pinDir }, 'the splice keeper cannot open the SKB splice maps; the agent keeps its pairs itself');
  log.flush(() => process.exit(1));
}
if (maps) {
  log.info({ pinDir }, 'splice keeper started');
  send({ type: 'ready', pid: process.pid });
}
