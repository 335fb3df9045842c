// One downstream connection through the embedded proxy, start to end: drop rules, TLS
// inspection, filter chain, load-balanced connect with retries, then the hand-off to the
// chain's path (xdp, skb hook, or user-space copy) and the accounting of what happened.
// Every log line carries the connection id (`conn`).
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { DesiredChain, InterfaceRef } from '../desired-state.js';
import type { AgentMetrics, ListenerCounts } from '../metrics.js';
import type { ChainMatcher } from './chain-match.js';
import type { ClusterRuntime } from './cluster.js';
import { Cancellation, connectUpstream } from './connect.js';
import { nextConnId } from './conn-id.js';
import { copyStreams } from './copy.js';
import type { DenyMatcher } from './deny-match.js';
import type { HandoffContext, SpliceHooks, SplicePath, SpliceResult, XdpHandoffContext } from './handoff.js';
import { watchKernelIdle } from './idle-watch.js';
import { sourceIpHash } from './lb-hash.js';
import { unmapV4 } from './deny-match.js';
import { inspectClientHello, type InspectResult } from './sni-inspect.js';

/** The listener's configuration as it was when a connection was accepted. */
export interface ListenerSnapshot {
  name: string;
  /** The listener's per-connection metric counts (agentMetrics().listenerCounts(name)). */
  counts: ListenerCounts;
  sniInspection: boolean;
  chains: ChainMatcher<DesiredChain>;
  deny: DenyMatcher;
  interface?: InterfaceRef;
}

export interface ListenerCounters {
  accepted: number;
  active: number;
  denied: number;
  rejected: number;
  fallbacks: number;
  byPath: Record<SplicePath, number>;
}

export interface ConnectionDeps {
  logger: Logger;
  metrics: AgentMetrics;
  hooks: SpliceHooks;
  cluster(name: string): ClusterRuntime | undefined;
  connectTimeoutFloorMs: number;
  inspectTimeoutMs: number;
}

type RejectReason = 'denied' | 'closed_during_inspection' | 'no_chain' | 'no_cluster' | 'no_healthy_endpoint' | 'connect_failed' | 'downstream_closed';
type FallbackCode = 'no_hook' | 'hook_error' | 'declined' | 'kernel_refused';

export async function serveConnection(down: Socket, l: ListenerSnapshot, counters: ListenerCounters, deps: ConnectionDeps, onEnd: () => void): Promise<void> {
  const id = nextConnId();
  const log = new ConnectionLog(deps.logger, id, l.name);
  const m = deps.metrics.proxy;
  const started = performance.now();
  counters.accepted++;
  counters.active++;
  l.counts.accepted++;
  l.counts.active++;
  const peer = unmapV4(down.remoteAddress ?? '');
  const peerPort = down.remotePort ?? 0;
  const localPort = down.localPort ?? 0;
  log.debug(() => ({ peer: `${peer}:${peerPort}`, port: localPort }), 'accepted');

  // Until the hand-off owns the socket: a downstream error or close cancels what is in flight.
  const cancel = new Cancellation();
  const onDownError = (e: NodeJS.ErrnoException) => {
    log.debug(() => ({ err: e.code ?? e.message }), 'downstream error before the hand-off');
    cancel.cancel();
  };
  const onDownClose = () => cancel.cancel();
  down.on('error', onDownError);
  down.once('close', onDownClose);
  const release = () => {
    down.removeListener('error', onDownError);
    down.removeListener('close', onDownClose);
  };

  const reject = (reason: RejectReason, level: 'debug' | 'info' | 'warn', msg: string, fields: object = {}) => {
    release();
    counters.rejected++;
    m.rejected.inc({ listener: l.name, reason });
    log.write(level, { reason, peer: `${peer}:${peerPort}`, port: localPort, ...fields }, msg);
    if (!down.destroyed) down.destroy();
  };

  try {
    if (!down.remoteAddress) return reject('downstream_closed', 'debug', 'the downstream closed before it was accepted');
    const rule = l.deny.match(peer, localPort);
    if (rule !== undefined) {
      counters.denied++;
      m.denied.inc({ listener: l.name, rule });
      return reject('denied', 'info', `denied by drop rule "${rule}"`, { rule });
    }

    let inspected: InspectResult = { outcome: 'not_tls', initial: Buffer.alloc(0) };
    if (l.sniInspection) {
      inspected = await inspectClientHello(down, deps.inspectTimeoutMs);
      m.sni.inc({ listener: l.name, outcome: inspected.outcome });
      if (inspected.outcome === 'closed') return reject('closed_during_inspection', 'debug', 'downstream closed during TLS inspection', { detail: inspected.detail });
      if (inspected.detail) log.debug(() => ({ sni: inspected.outcome, detail: inspected.detail }), 'no server name: using the default chain');
    }

    const chain = l.chains.match(inspected.serverName);
    if (!chain) return reject('no_chain', 'info', `no filter chain matches server name ${JSON.stringify(inspected.serverName ?? null)} and the listener has no default chain`, { sni: inspected.serverName });
    const cluster = deps.cluster(chain.cluster);
    if (!cluster) return reject('no_cluster', 'warn', `chain "${chain.name}" routes to cluster "${chain.cluster}", which this agent has not received (check CDS)`, { chain: chain.name });

    const timeoutMs = Math.max(cluster.connectTimeoutMs, deps.connectTimeoutFloorMs);
    const hash = cluster.hashesSource ? sourceIpHash(peer) : undefined;
    const conn = await connectUpstream({
      attempts: chain.maxConnectAttempts,
      timeoutMs,
      pick: (tried) => cluster.pick(hash, tried),
      cancel,
      onAttemptStart: (t) => cluster.begin(t.key),
      onAttemptEnd: (t, rec) => {
        if (rec.ok) return;
        cluster.end(t.key);
        if (rec.reason === 'aborted') return;
        m.connectFailures.inc({ cluster: cluster.name, endpoint: t.key, reason: rec.reason ?? 'error' });
        log.write('warn', { cluster: cluster.name, endpoint: t.key, reason: rec.reason, detail: rec.detail, ms: Math.round(rec.ms) }, 'upstream connect attempt failed');
      },
    });
    if (!conn.ok) {
      if (conn.reason === 'aborted') return reject('downstream_closed', 'debug', 'downstream closed while connecting upstream');
      if (conn.reason === 'no_endpoint') return reject('no_healthy_endpoint', 'warn', `cluster "${cluster.name}" has no endpoint to connect to (tier ${cluster.tier})`, { cluster: cluster.name });
      return reject('connect_failed', 'warn', `no upstream of cluster "${cluster.name}" connected after ${conn.attempts.length} attempt(s)`, { cluster: cluster.name, attempts: conn.attempts.map((a) => `${a.endpoint}:${a.reason}`) });
    }
    const up = conn.socket;
    const endpoint = conn.target.key;
    release();
    if (down.destroyed) {
      cluster.end(endpoint);
      up.destroy();
      return reject('downstream_closed', 'debug', 'downstream closed while connecting upstream');
    }
    log.debug(() => ({ cluster: cluster.name, endpoint, attempts: conn.attempts.length, mode: chain.mode }), 'upstream connected');

    const result = await handOff(down, up, chain, inspected.initial, l, counters, deps, log, id);
    cluster.end(endpoint);
    counters.byPath[result.path]++;
    l.counts.connections[result.path]++;
    log.write(
      'info',
      {
        path: result.path,
        requested: chain.mode,
        ...(result.fallbackReason ? { fallback: result.fallbackReason } : {}),
        chain: chain.name,
        ...(inspected.serverName ? { sni: inspected.serverName } : {}),
        peer: `${peer}:${peerPort}`,
        port: localPort,
        upstream: endpoint,
        bytes: { user: result.userBytes, kernel: result.kernelBytes },
        end: result.end,
        ...(result.error ? { error: result.error } : {}),
        ms: Math.round(performance.now() - started),
      },
      'connection closed',
    );
  } catch (e) {
    // A bug or an unexpected failure of one connection must not take the listener down.
    log.write('error', { err: e }, 'connection failed unexpectedly');
    release();
    if (!down.destroyed) down.resetAndDestroy();
  } finally {
    counters.active--;
    l.counts.active--;
    onEnd();
  }
}

/**
 * The log of one connection: every line carries `conn` and `listener`. The pino child logger
 * with those bindings is made only when something needs a Logger (a hand-off hook); until then a
 * line goes to the proxy's logger with the two fields first, which prints the same JSON. A child
 * per connection (its bindings serialised at creation) was a visible share of a short
 * connection's cost, made even when no line was written.
 */
class ConnectionLog {
  private child: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly conn: string,
    private readonly listener: string,
  ) {}

  get logger(): Logger {
    return (this.child ??= this.parent.child({ conn: this.conn, listener: this.listener }));
  }

  write(level: 'debug' | 'info' | 'warn' | 'error', fields: object, msg: string): void {
    if (!this.parent.isLevelEnabled(level)) return;
    if (this.child) this.child[level](fields, msg);
    else this.parent[level]({ conn: this.conn, listener: this.listener, ...fields }, msg);
  }

  /** Debug lines build their fields only when debug is on. */
  debug(fields: () => object, msg: string): void {
    if (this.parent.isLevelEnabled('debug')) this.write('debug', fields(), msg);
  }

  /** For the copy's idle-timeout line. */
  info(fields: object, msg: string): void {
    this.write('info', fields, msg);
  }
}

const NO_BYTES = () => ({ userBytes: { downstreamToUpstream: 0, upstreamToDownstream: 0 }, kernelBytes: { total: 0 } });

async function handOff(down: Socket, up: Socket, chain: DesiredChain, initial: Buffer, l: ListenerSnapshot, counters: ListenerCounters, deps: ConnectionDeps, log: ConnectionLog, connId: string): Promise<SpliceResult> {
  const m = deps.metrics.proxy;
  const requested = chain.mode;
  let fallback: { code: FallbackCode; reason: string } | undefined;

  // Node emits 'end' even while a socket is paused: a client that sent its first bytes and FIN
  // together had its FIN consumed during inspection. Only the copy can carry that on.
  const downEnded = down.readableEnded;
  if (requested !== 'userspace' && downEnded) {
    fallback = { code: 'declined', reason: 'the client half-closed before the hand-off' };
  } else if (requested !== 'userspace') {
    // Until a hook owns the upstream socket, an error on it must not go unhandled.
    let upError: Error | undefined;
    const onUpError = (e: Error) => (upError = e);
    up.on('error', onUpError);
    const ctx: HandoffContext = { listener: l.name, connId, downstream: down, upstream: up, initial, idleTimeoutMs: chain.idleTimeoutMs, logger: log.logger };
    const hook = requested === 'skb' ? deps.hooks.skb : deps.hooks.xdp;
    let outcome: Awaited<ReturnType<NonNullable<SpliceHooks['skb']>>> | undefined;
    if (!hook) {
      fallback = { code: 'no_hook', reason: `the ${requested} datapath is not available to the proxy on this node` };
    } else {
      try {
        const xdpCtx: XdpHandoffContext = { ...ctx, ...(chain.interface ?? l.interface ? { interface: chain.interface ?? l.interface } : {}) };
        outcome = await (requested === 'skb' ? hook(ctx) : hook(xdpCtx));
        if (!outcome.taken) fallback = { code: 'declined', reason: outcome.reason };
      } catch (e) {
        fallback = { code: 'hook_error', reason: `the ${requested} hand-off failed: ${(e as Error).message}` };
      }
    }
    up.removeListener('error', onUpError);
    if (outcome?.taken) {
      let idled = false;
      const stopIdle = watchKernelIdle([down, up], chain.idleTimeoutMs, (quietMs) => {
        idled = true;
        m.idleTimeouts.inc({ listener: l.name });
        log.write('info', { idleMs: quietMs }, 'idle timeout: closing both sides');
        down.destroy();
        up.destroy();
      });
      let r: SpliceResult;
      try {
        r = await outcome.done;
      } catch (e) {
        r = { path: requested, ...NO_BYTES(), end: 'error', error: (e as Error).message };
        log.write('error', { err: e }, `the ${requested} splice failed mid-connection; resetting both sides`);
        if (!down.destroyed) down.resetAndDestroy();
        if (!up.destroyed) up.resetAndDestroy();
      } finally {
        stopIdle();
      }
      const user = r.userBytes.downstreamToUpstream + r.userBytes.upstreamToDownstream;
      l.counts.userspaceBytes.downstream_to_upstream += r.userBytes.downstreamToUpstream;
      l.counts.userspaceBytes.upstream_to_downstream += r.userBytes.upstreamToDownstream;
      if (r.path === 'userspace') {
        counters.fallbacks++;
        m.fallbacks.inc({ listener: l.name, requested, reason: 'kernel_refused' });
        log.write('warn', { requested, reason: r.fallbackReason, userBytes: user }, `the ${requested} path fell back to a user-space copy`);
      }
      if (r.end === 'idle' && !idled) m.idleTimeouts.inc({ listener: l.name });
      return idled ? { ...r, end: 'idle' } : r;
    }
    if (upError || up.destroyed) {
      // The upstream died while the hook decided; nothing to copy.
      if (!down.destroyed) down.resetAndDestroy();
      if (!up.destroyed) up.destroy();
      return { path: 'userspace', ...(fallback ? { fallbackReason: fallback.reason } : {}), ...NO_BYTES(), end: 'reset', error: `upstream: ${upError?.message ?? 'closed'}` };
    }
  }

  if (fallback) {
    counters.fallbacks++;
    m.fallbacks.inc({ listener: l.name, requested, reason: fallback.code });
    log.write('warn', { requested, reason: fallback.reason }, `copying in user space instead of ${requested}`);
  }
  // Envoy's default for proxied sockets. Only for the copy: the kernel paths own their sockets'
  // options, and a hook that declined left them untouched.
  up.setNoDelay(true);
  down.setNoDelay(true);
  const bytes = l.counts.userspaceBytes;
  const r = await copyStreams(down, up, {
    initial,
    downstreamEnded: downEnded,
    idleTimeoutMs: chain.idleTimeoutMs,
    logger: log,
    onBytes: (direction, n) => (bytes[direction] += n),
  });
  if (r.end === 'idle') m.idleTimeouts.inc({ listener: l.name });
  return {
    path: 'userspace',
    ...(fallback ? { fallbackReason: fallback.reason } : {}),
    userBytes: { downstreamToUpstream: r.downstreamToUpstream, upstreamToDownstream: r.upstreamToDownstream },
    kernelBytes: { total: 0 },
    end: r.end,
    ...(r.error ? { error: r.error } : {}),
  };
}
