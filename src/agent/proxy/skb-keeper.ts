// The agent's side of the splice keeper (skb-keeper-main.ts): forks it once the SKB datapath is
// in use (detached: its own session and process group, so a kill of the agent or of the agent's
// process group leaves it running), passes it the sockets of each SKB pair that outlives its
// handover by afterMs, and hears when the pair ended. Once the keeper adopted a pair the agent closes its own fds of it, so the
// connection lives exactly as long as the keeper's fds. A keeper that cannot be started or died
// is replaced for new pairs (at most once per respawnDelayMs); pairs it had not yet adopted stay
// with the agent (splice-skb.ts carries on itself), pairs it had adopted end with it.
import { fork, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { dupFd } from '../bpf/socket-syscalls.js';
import { isKeeperToAgent, type AgentToKeeper, type KeeperEndReport, type KeeperPairMeta } from './skb-keeper-protocol.js';

export interface SkbKeeperOptions {
  /** The SKB splice pin directory (PinLayout.skb): the keeper opens the maps there. */
  pinDir: string;
  logger: Logger;
  registry?: Registry;
  /** Wait at least this long before forking again after a keeper failed (default 5 s). */
  respawnDelayMs?: number;
  /** A pair the keeper has not adopted within this long stays with the agent (default 10 s). */
  adoptTimeoutMs?: number;
  /** The keeper's entry (default: skb-keeper-entry.mjs next to this module). */
  entry?: string;
  /**
   * A handed-over pair goes to the keeper once it has lived this long (default 1 s; 0: at the
   * handover). Shorter ones end in the agent: passing a pair costs two IPC round trips, and a
   * connection that short has little to lose in a restart.
   */
  afterMs?: number;
}

export interface KeeperTransfer {
  /** true: the keeper holds both sockets; the caller closes its copies. false: the caller keeps the pair. */
  adopted: Promise<boolean>;
  /** The keeper's report of the pair's end (only meaningful once adopted). */
  ended: Promise<KeeperEndReport>;
  /** The caller gave up on the pair after sending it: the keeper resets both sockets. */
  reset(reason: string): void;
}

interface Transfer {
  settleAdopted: (ok: boolean) => void;
  settleEnded: (r: KeeperEndReport) => void;
  adopted: boolean | undefined;
  wrappers: net.Socket[];
  stopTimer?: () => void;
}

const DEFAULT_ENTRY = fileURLToPath(new URL('./skb-keeper-entry.mjs', import.meta.url));

/** The outcome label of exds_skb_keeper_pairs_total. */
type Outcome = 'keeper' | 'agent_keeper_unavailable' | 'agent_keeper_refused' | 'lost_with_keeper';

export class SkbKeeper {
  private child: ChildProcess | undefined;
  private failedAt = 0;
  private closed = false;
  private readonly transfers = new Map<string, Transfer>();
  private readonly log: Logger;
  private readonly pairs: Counter<'outcome'> | undefined;
  readonly afterMs: number;

  constructor(private readonly o: SkbKeeperOptions) {
    this.afterMs = o.afterMs ?? 1_000;
    this.log = o.logger.child({ component: 'skb-keeper' });
    if (o.registry) {
      const name = 'exds_skb_keeper_pairs_total';
      this.pairs =
        (o.registry.getSingleMetric(name) as Counter<'outcome'> | undefined) ??
        new Counter({
          name,
          help: 'SKB-spliced pairs after their handover, by who kept their sockets: keeper (the splice keeper, survives the agent), agent_keeper_unavailable / agent_keeper_refused (the agent kept them; they end with its process), lost_with_keeper (the keeper died while holding them)',
          labelNames: ['outcome'],
          registers: [o.registry],
        });
    }
  }

  /** The keeper's pid while one runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Passes a handed-over pair to the keeper. downFd/upFd: the caller's fds of the two sockets
   * (duplicated here; the caller's stay its own). undefined: no keeper now (the caller keeps the
   * pair, counted). The caller must not read either socket until `adopted` settles.
   */
  transfer(meta: KeeperPairMeta, downFd: number, upFd: number): KeeperTransfer | undefined {
    const child = this.ensure();
    if (!child) {
      this.count('agent_keeper_unavailable');
      return undefined;
    }
    let settleAdopted!: (ok: boolean) => void;
    let settleEnded!: (r: KeeperEndReport) => void;
    const adopted = new Promise<boolean>((r) => (settleAdopted = r));
    const ended = new Promise<KeeperEndReport>((r) => (settleEnded = r));
    const t: Transfer = { settleAdopted, settleEnded, adopted: undefined, wrappers: [] };
    const fail = (reason: string, outcome: Outcome) => {
      if (t.adopted !== undefined) return;
      t.adopted = false;
      clearTimeout(adoptTimer);
      this.transfers.delete(meta.connId);
      for (const w of t.wrappers) w.destroy();
      // The keeper may hold one of the two: it must let go of it, or the socket outlives our close.
      if (child.connected) {
        const forget: AgentToKeeper = { type: 'forget', connId: meta.connId };
        child.send(forget, (err) => err && this.log.debug({ conn: meta.connId, err: err.message }, 'could not tell the splice keeper to forget a pair'));
      }
      this.count(outcome);
      this.log.warn({ conn: meta.connId, reason }, 'the splice keeper did not take the pair; the agent keeps it (it ends if the agent goes)');
      settleAdopted(false);
    };
    this.transfers.set(meta.connId, t);
    const adoptTimer = setTimeout(() => fail(`no answer from the splice keeper within ${this.o.adoptTimeoutMs ?? 10_000} ms`, 'agent_keeper_unavailable'), this.o.adoptTimeoutMs ?? 10_000);
    adoptTimer.unref();
    t.stopTimer = () => clearTimeout(adoptTimer);
    try {
      for (const [role, fd] of [
        ['down', downFd],
        ['up', upFd],
      ] as const) {
        // Our own fd in a paused socket: its raw handle is what travels (SCM_RIGHTS). The wrapper
        // never reads; it is closed once the keeper holds the socket or gave up on it.
        const dup = dupFd(fd);
        let w: net.Socket;
        try {
          w = new net.Socket({ fd: dup, pauseOnCreate: true, allowHalfOpen: true } as net.SocketConstructorOpts);
        } catch (e) {
          closeSync(dup);
          throw e;
        }
        t.wrappers.push(w);
        const handle = (w as unknown as { _handle: net.Socket | null })._handle;
        const msg: AgentToKeeper = { type: 'socket', connId: meta.connId, role, ...(role === 'down' ? { meta } : {}) };
        child.send(msg, handle ?? undefined, (err) => {
          if (err) fail(`sending the ${role} socket failed: ${err.message}`, 'agent_keeper_unavailable');
        });
      }
    } catch (e) {
      fail(`passing the sockets failed: ${(e as Error).message}`, 'agent_keeper_unavailable');
    }
    return {
      adopted,
      ended,
      reset: (reason: string) => {
        if (t.adopted !== true || !this.child?.connected) return;
        const msg: AgentToKeeper = { type: 'reset', connId: meta.connId, reason };
        this.child.send(msg, (err) => err && this.log.warn({ conn: meta.connId, err: err.message }, 'could not ask the splice keeper to reset a pair'));
      },
    };
  }

  /** Forks the keeper ahead of the first pair (the SKB datapath is attached); a no-op while one runs. */
  prepare(): void {
    this.ensure();
  }

  /** Agent exit: let the keeper go (it finishes its pairs and exits); new pairs stay with the agent. */
  close(): void {
    this.closed = true;
    const child = this.child;
    if (child?.connected) child.disconnect();
  }

  private count(outcome: Outcome): void {
    this.pairs?.inc({ outcome });
  }

  private ensure(): ChildProcess | undefined {
    if (this.child?.connected) return this.child;
    if (this.closed || Date.now() - this.failedAt < (this.o.respawnDelayMs ?? 5_000)) return undefined;
    let child: ChildProcess;
    try {
      child = fork(this.o.entry ?? DEFAULT_ENTRY, [this.o.pinDir], {
        detached: true,
        execArgv: [],
        // stderr shared with the agent: the keeper's log lines land where the agent's do.
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        serialization: 'json',
      });
    } catch (e) {
      this.failedAt = Date.now();
      this.log.error({ err: (e as Error).message }, 'the splice keeper could not be started; SKB-spliced pairs stay with the agent');
      return undefined;
    }
    this.child = child;
    // Neither the keeper nor its channel keeps the agent's event loop alive.
    child.unref();
    (child.channel as { unref?: () => void } | undefined)?.unref?.();
    child.on('message', (m: unknown) => this.onMessage(m));
    child.on('error', (e) => this.log.error({ err: e.message, keeperPid: child.pid }, 'splice keeper process error'));
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
    this.log.info({ keeperPid: child.pid }, 'splice keeper forked');
    return child;
  }

  private onMessage(m: unknown): void {
    if (!isKeeperToAgent(m)) {
      this.log.warn({ msg: m }, 'ignoring an unknown message from the splice keeper');
      return;
    }
    if (m.type === 'ready') return;
    const t = this.transfers.get(m.connId);
    if (!t) return;
    switch (m.type) {
      case 'adopted':
        if (t.adopted !== undefined) return;
        t.adopted = true;
        t.stopTimer?.();
        for (const w of t.wrappers) w.destroy();
        t.wrappers = [];
        this.count('keeper');
        t.settleAdopted(true);
        return;
      case 'refused':
        if (t.adopted !== undefined) return;
        t.adopted = false;
        t.stopTimer?.();
        this.transfers.delete(m.connId);
        for (const w of t.wrappers) w.destroy();
        this.count('agent_keeper_refused');
        this.log.warn({ conn: m.connId, reason: m.reason }, 'the splice keeper refused the pair; the agent keeps it');
        t.settleAdopted(false);
        return;
      case 'ended':
        this.transfers.delete(m.connId);
        t.settleEnded(m.report);
        return;
    }
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child === child) this.child = undefined;
    if (!this.closed) this.failedAt = Date.now();
    const lost = [...this.transfers.entries()];
    this.transfers.clear();
    const log = this.closed ? this.log.info.bind(this.log) : this.log.error.bind(this.log);
    log({ keeperPid: child.pid, code, signal, pairs: lost.length }, 'splice keeper exited');
    for (const [connId, t] of lost) {
      if (t.adopted === true) {
        this.count('lost_with_keeper');
        t.settleEnded({ mode: 'kernel', end: 'error', error: `the splice keeper (pid ${child.pid}) exited (${signal ?? `code ${code}`}) while it held the pair`, kernelBytes: { downstreamToUpstream: '0', upstreamToDownstream: '0' } });
      } else if (t.adopted === undefined) {
        t.adopted = false;
        t.stopTimer?.();
        for (const w of t.wrappers) w.destroy();
        this.count('agent_keeper_unavailable');
        this.log.warn({ conn: connId }, 'the splice keeper exited before it took the pair; the agent keeps it');
        t.settleAdopted(false);
      }
    }
  }
}
