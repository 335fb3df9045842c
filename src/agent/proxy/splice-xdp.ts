// Splices two connected TCP sockets through the XDP splice datapath: user space copies the first
// bytes, then pairs the connections in the kernel with the LEARN -> HOLD -> FREEZE -> ACTIVE
// protocol of docs/xdp-splice.md, and steps out (the sockets are closed in TCP repair mode, so
// the peers never see their FIN or RST). From then on XDP rewrites every packet; this module
// only watches the pair until the datapath removes it (FIN, RST) or it idles out. Where pairing
// is unsafe or impossible (options differ, IPv6, queues that never drain, a peer that closed
// first) the connection stays a user-space copy: correct, just not accelerated.
//
// Caller contract: both sockets are connected (the upstream one by this process, so its local
// port is ours), created with allowHalfOpen, and nothing has been read from them that is not
// passed as `initial` (bytes from downstream to send upstream first).
import { closeSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { XdpConnValue, XdpKeyValue, XdpMaps } from '../bpf/datapath-xdp.js';
import { XdpEvent, XdpState } from '../bpf/layout-xdp.js';
import { dupFd, inq, outq, recvNonBlocking, sendNonBlocking, socketFd } from '../bpf/socket-syscalls.js';
import { queueSeq, setKeepAlive, setRepair, tcpLegInfo, tcpTimestamp } from '../bpf/tcp-repair.js';
import { blankConn, checkCompatible, keyOf, planEntries, type Endpoint, type FrozenLeg, type WscalePolicy } from './xdp-pairing.js';

export interface XdpSpliceOptions {
  /** The pinned XDP maps; without them the sockets are copied in user space. */
  maps?: XdpMaps;
  /** Idle timeout of the connection (default 1 h, Envoy tcp_proxy's default). */
  idleTimeoutMs?: number;
  /** Legs with different window scales: rescale in XDP (default) or do not splice. */
  wscale?: WscalePolicy;
  /** Pairing attempts before the connection stays a user-space copy for good (default 8). */
  maxAttempts?: number;
  /**
   * Pair once this many bytes went through user space, either way (default 128 KiB), or once the
   * connection is spliceAfterMs old and has carried a byte. Pairing holds the connection's
   * traffic for about a round trip and costs a few syscalls per poll: it pays off for long or
   * large connections, not for short ones, which end in user space before either threshold.
   */
  spliceAfterBytes?: number;
  /** See spliceAfterBytes (default 1000 ms). */
  spliceAfterMs?: number;
  /** Bytes already read from downstream, to send upstream first. */
  initial?: Buffer;
  /** How often the pair is checked once spliced (default 250 ms). */
  watchIntervalMs?: number;
  /** Written into the entries' owner_id (e.g. a listener id). */
  ownerId?: number;
  logger?: Logger;
}

export type XdpSpliceMode = 'xdp' | 'userspace';

export interface XdpSpliceReport {
  /** xdp: spliced in the kernel; userspace: copied to the end (see fallbackReason). */
  mode: XdpSpliceMode;
  fallbackReason?: string;
  attempts: number;
  /** Bytes user space copied, per direction. */
  userBytes: { downstreamToUpstream: number; upstreamToDownstream: number };
  /** Packets and bytes XDP spliced (both directions), as last seen in the entries. */
  kernel: { packets: bigint; bytes: bigint };
  /** How long the final pairing held traffic (HOLD state), ms. */
  holdMs?: number;
  /** Window rescaling in XDP (legs with different window scales). */
  rescaled?: boolean;
  /**
   * fin/reset: ended in user space; closed: the datapath removed the pair (FIN or RST, see its
   * counters); idle: idle timeout; error: a local failure (see error).
   */
  end: 'fin' | 'reset' | 'closed' | 'idle' | 'error';
  error?: string;
}

interface End {
  sock: Socket;
  /** Our own fd for the socket, so that it outlives Node's handle when we step out. */
  fd: number;
  local: Endpoint;
  remote: Endpoint;
  /** xdp_conns key of packets the peer sends to this socket. */
  key: XdpKeyValue;
}

interface Direction {
  name: 'downstreamToUpstream' | 'upstreamToDownstream';
  src: End;
  dst: End;
  bytes: number;
  ended: boolean;
}

class Stop extends Error {}

type Listener = (...args: never[]) => void;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function endpoints(sock: Socket): { local: Endpoint; remote: Endpoint } {
  if (!sock.localAddress || !sock.remoteAddress || !sock.localPort || !sock.remotePort) {
    throw new Error('socket is not connected (no local or remote address)');
  }
  return { local: { address: sock.localAddress, port: sock.localPort }, remote: { address: sock.remoteAddress, port: sock.remotePort } };
}

export function spliceXdp(downstream: Socket, upstream: Socket, opts: XdpSpliceOptions = {}): Promise<XdpSpliceReport> {
  return new XdpSplice(downstream, upstream, opts).run();
}

class XdpSplice {
  private readonly idleMs: number;
  private readonly maxAttempts: number;
  private readonly spliceAfter: number;
  private readonly spliceAfterMs: number;
  private readonly startedAt = Date.now();
  private ageTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger | undefined;
  private ends: [End, End] | undefined;
  private dirs: [Direction, Direction] | undefined;
  private mode: XdpSpliceMode = 'userspace';
  private fallbackReason: string | undefined;
  private attempts = 0;
  /** Times pairing waited for a peer's first TSval (backs off; not counted as attempts). */
  private tsWaits = 0;
  private attempting = false;
  private retryAt = 0;
  private takeover = false;
  /** Set while drainSync calls read(): Readable.read() also emits 'data', which we handle there. */
  private draining = false;
  private finished = false;
  private end: XdpSpliceReport['end'] = 'fin';
  private error: string | undefined;
  private holdMs: number | undefined;
  private rescaled: boolean | undefined;
  private kernel = { packets: 0n, bytes: 0n };
  private closed = new Set<Socket>();
  private resolve!: (r: XdpSpliceReport) => void;
  private readonly rawBuf = Buffer.alloc(256 * 1024);
  private readonly listeners: Array<[Socket, string, Listener]> = [];
  private idleTimer: NodeJS.Timeout | undefined;
  private lastActivity = Date.now();

  constructor(
    private readonly down: Socket,
    private readonly up: Socket,
    private readonly opts: XdpSpliceOptions,
  ) {
    this.idleMs = opts.idleTimeoutMs ?? 3_600_000;
    this.maxAttempts = opts.maxAttempts ?? 8;
    this.spliceAfter = opts.spliceAfterBytes ?? 128 * 1024;
    this.spliceAfterMs = opts.spliceAfterMs ?? 1000;
    this.log = opts.logger;
  }

  run(): Promise<XdpSpliceReport> {
    return new Promise<XdpSpliceReport>((resolve) => {
      this.resolve = resolve;
      this.setup();
    });
  }

  // ---- user-space copy ----------------------------------------------------------------

  private setup(): void {
    const maps = this.opts.maps;
    const mk = (sock: Socket): End => {
      const ep = endpoints(sock);
      return { sock, fd: -1, ...ep, key: undefined as unknown as XdpKeyValue };
    };
    let ends: [End, End];
    try {
      ends = [mk(this.down), mk(this.up)];
    } catch (e) {
      this.down.resetAndDestroy();
      this.up.resetAndDestroy();
      this.end = 'error';
      this.error = (e as Error).message;
      this.finish();
      return;
    }
    this.ends = ends;
    const [d, u] = ends;
    this.dirs = [
      { name: 'downstreamToUpstream', src: d, dst: u, bytes: 0, ended: false },
      { name: 'upstreamToDownstream', src: u, dst: d, bytes: 0, ended: false },
    ];
    if (!maps) this.fallbackReason = 'no XDP splice maps';
    else {
      try {
        for (const e of ends) e.key = keyOf(e);
        for (const e of ends) e.fd = dupFd(socketFd(e.sock));
        const now = process.hrtime.bigint();
        // LEARN from the first packet on: XDP records each peer's TSval for the freeze.
        for (const e of ends) maps.put(e.key, blankConn(XdpState.LEARN, { idleMs: this.idleMs, ownerId: this.opts.ownerId ?? 0, nowNs: now }));
      } catch (e) {
        this.fallbackReason = (e as Error).message;
        this.forgetEntries();
        this.closeFds();
      }
    }
    for (const dir of this.dirs) this.wire(dir);
    this.armIdleTimer();
    if (maps && !this.fallbackReason) {
      this.ageTimer = setTimeout(() => this.maybeAttempt(), this.spliceAfterMs);
      this.ageTimer.unref();
    }
    if (this.opts.initial && this.opts.initial.length > 0) this.forward(this.dirs[0], this.opts.initial);
  }

  private on(sock: Socket, event: string, fn: Listener): void {
    sock.on(event, fn as (...args: unknown[]) => void);
    this.listeners.push([sock, event, fn]);
  }

  private wire(d: Direction): void {
    this.on(d.src.sock, 'data', (chunk: Buffer) => {
      if (!this.draining) this.forward(d, chunk);
    });
    this.on(d.src.sock, 'end', () => {
      d.ended = true;
      if (!d.dst.sock.destroyed) d.dst.sock.end();
      this.maybeFinish();
    });
    this.on(d.src.sock, 'error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') this.resetBoth('reset');
      else this.resetBoth('error', `${d.name}: ${e.message}`);
    });
    this.on(d.src.sock, 'close', () => {
      this.closed.add(d.src.sock);
      // Closed without both directions ending normally (destroyed, reset): close the other.
      if (this.mode === 'userspace' && !(this.dirs![0].ended && this.dirs![1].ended) && !this.finished) this.resetBoth('reset');
      this.maybeFinish();
    });
  }

  private forward(d: Direction, chunk: Buffer): void {
    d.bytes += chunk.length;
    this.lastActivity = Date.now();
    if (!d.dst.sock.write(chunk)) {
      d.src.sock.pause();
      d.dst.sock.once('drain', () => {
        if (!this.takeover && !d.src.sock.destroyed) d.src.sock.resume();
      });
    }
    this.maybeAttempt();
  }

  private resetBoth(why: 'reset' | 'error', detail?: string): void {
    if (this.finished || this.mode === 'xdp') return;
    if (this.end === 'fin') this.end = why;
    if (detail && !this.error) this.error = detail;
    this.closeFds(); // our fds would keep the sockets open and swallow the RST
    for (const e of this.ends ?? []) if (!e.sock.destroyed) e.sock.resetAndDestroy();
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.finished || this.mode === 'xdp' || this.closed.size < 2) return;
    this.forgetEntries();
    this.closeFds();
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    if (this.ageTimer) clearTimeout(this.ageTimer);
    const dirs = this.dirs;
    this.resolve({
      mode: this.mode,
      ...(this.fallbackReason && this.mode === 'userspace' ? { fallbackReason: this.fallbackReason } : {}),
      attempts: this.attempts,
      userBytes: { downstreamToUpstream: dirs?.[0].bytes ?? 0, upstreamToDownstream: dirs?.[1].bytes ?? 0 },
      kernel: this.kernel,
      ...(this.holdMs !== undefined ? { holdMs: this.holdMs } : {}),
      ...(this.rescaled !== undefined ? { rescaled: this.rescaled } : {}),
      end: this.end,
      ...(this.error ? { error: this.error } : {}),
    });
  }

  private armIdleTimer(): void {
    this.idleTimer = setInterval(
      () => {
        if (this.mode !== 'userspace' || this.finished) return;
        if (Date.now() - this.lastActivity > this.idleMs) {
          this.end = 'idle';
          for (const e of this.ends ?? []) if (!e.sock.destroyed) e.sock.destroy();
        }
      },
      Math.min(this.idleMs, 1000),
    );
    this.idleTimer.unref();
  }

  private forgetEntries(): void {
    const maps = this.opts.maps;
    if (!maps) return;
    for (const e of this.ends ?? []) {
      if (!e.key) continue;
      try {
        maps.remove(e.key);
      } catch (err) {
        this.log?.warn({ err }, 'could not remove an XDP splice entry');
      }
    }
  }

  private closeFds(): void {
    for (const e of this.ends ?? []) {
      if (e.fd >= 0) closeSync(e.fd);
      e.fd = -1;
    }
  }

  private giveUp(reason: string): void {
    this.fallbackReason = reason;
    this.attempts = Math.max(this.attempts, this.maxAttempts);
    this.forgetEntries(); // no per-packet learning for a connection that stays in user space
    this.log?.info({ reason }, 'XDP splice: staying in user space');
  }

  // ---- pairing ------------------------------------------------------------------------

  private maybeAttempt(): void {
    if (this.attempting || this.finished || this.mode !== 'userspace' || !this.opts.maps || this.fallbackReason) return;
    if (this.attempts >= this.maxAttempts || Date.now() < this.retryAt) return;
    const [a, b] = this.dirs!;
    const bytes = a.bytes + b.bytes;
    if (bytes === 0 || (bytes < this.spliceAfter && Date.now() - this.startedAt < this.spliceAfterMs)) return;
    this.attempting = true;
    setImmediate(() => {
      this.attempt()
        .catch((e: Error) => {
          if (!(e instanceof Stop)) {
            this.log?.warn({ err: e }, 'XDP splice pairing failed');
            this.giveUp(`pairing failed: ${e.message}`);
          }
        })
        .finally(() => {
          this.attempting = false;
          if (this.mode === 'userspace' && !this.finished) {
            this.takeover = false;
            for (const d of this.dirs!) if (!d.src.sock.destroyed && !d.dst.sock.writableNeedDrain) d.src.sock.resume();
            if (!this.fallbackReason && this.attempts < this.maxAttempts) setTimeout(() => this.maybeAttempt(), Math.max(0, this.retryAt - Date.now()) + 1).unref();
          }
        });
    });
  }

  private retryLater(reason: string): never {
    this.retryAt = Date.now() + Math.min(2000, 10 * 2 ** this.attempts);
    if (this.attempts >= this.maxAttempts) this.giveUp(`gave up after ${this.attempts} attempts: ${reason}`);
    else this.log?.debug({ reason, attempt: this.attempts }, 'XDP splice: retrying later');
    throw new Stop(reason);
  }

  private checkAlive(): void {
    if (this.finished || this.dirs!.some((d) => d.ended) || this.ends!.some((e) => e.sock.destroyed)) {
      this.giveUp('a side ended before the connection was spliced');
      throw new Stop('ended');
    }
  }

  private async waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    const t0 = Date.now();
    for (let i = 0; ; i++) {
      this.checkAlive();
      if (cond()) return true;
      if (Date.now() - t0 > timeoutMs) return false;
      await sleep(i < 20 ? 1 : 5); // the first round trips on a LAN take well under 20 ms
    }
  }

  /** Moves everything src holds (Node's buffer, then the kernel's) into dst's kernel socket. */
  private drainSync(d: Direction): boolean {
    if (d.dst.sock.writableLength > 0) return false;
    const push = (data: Buffer): boolean => {
      const sent = sendNonBlocking(d.dst.fd, data);
      if (sent < data.length) {
        d.dst.sock.write(Buffer.from(data.subarray(sent))); // ordered after what we sent
        return false;
      }
      return true;
    };
    for (;;) {
      this.draining = true;
      let chunk: Buffer | null;
      try {
        chunk = d.src.sock.read() as Buffer | null;
      } finally {
        this.draining = false;
      }
      if (chunk === null) break;
      d.bytes += chunk.length;
      if (!push(chunk)) return false;
    }
    for (;;) {
      const n = recvNonBlocking(d.src.fd, this.rawBuf);
      if (n === undefined) return true;
      if (n === 0) {
        this.giveUp('the peer closed while the connection was being spliced');
        throw new Stop('eof');
      }
      d.bytes += n;
      if (!push(Buffer.from(this.rawBuf.subarray(0, n)))) return false;
    }
  }

  private async attempt(): Promise<void> {
    const maps = this.opts.maps!;
    const [dn, up] = this.ends!;
    this.checkAlive();
    const compat = checkCompatible(tcpLegInfo(dn.fd), tcpLegInfo(up.fd), this.opts.wscale ?? 'rescale');
    if (!compat.ok) {
      this.giveUp(compat.reason);
      throw new Stop(compat.reason);
    }
    if (compat.timestamps) {
      // Not an attempt yet: a peer that has sent nothing since LEARN will with its next packet
      // (the next byte through user space retries, so does a timer).
      const missing = this.ends!.find((e) => !((maps.get(e.key)?.events ?? 0) & XdpEvent.TS_SEEN));
      if (missing) {
        this.retryAt = Date.now() + Math.min(5000, 50 * 2 ** this.tsWaits++);
        throw new Stop(`no TSval seen yet from ${missing === dn ? 'the client' : 'the server'}`);
      }
    }
    this.attempts++;
    const rttMs = Math.max(tcpLegInfo(dn.fd).rttUs, tcpLegInfo(up.fd).rttUs) / 1000;

    // 1. LEARN, reading paused: flush our writes and let the peers acknowledge all of them.
    this.takeover = true;
    dn.sock.pause();
    up.sock.pause();
    const flushed = () => dn.sock.writableLength === 0 && up.sock.writableLength === 0 && outq(dn.fd) === 0 && outq(up.fd) === 0;
    if (!(await this.waitUntil(flushed, Math.min(3000, Math.max(100, 10 * rttMs))))) this.retryLater('send queues did not drain');

    // 2. HOLD: XDP drops what would change the sockets; we move what they hold to the other
    //    side until all four queues are empty and everything sent is acknowledged.
    const t0 = Date.now();
    for (const e of this.ends!) if (!maps.setState(e.key, XdpState.HOLD)) throw new Error('an XDP splice entry disappeared during pairing');
    const quiet = () => {
      const [a, b] = this.dirs!;
      const moved = this.drainSync(a) && this.drainSync(b);
      return moved && flushed() && inq(dn.fd) === 0 && inq(up.fd) === 0;
    };
    let ok = false;
    try {
      ok = await this.waitUntil(quiet, Math.min(3000, Math.max(200, 10 * rttMs)));
    } finally {
      if (!ok) for (const e of this.ends!) maps.setState(e.key, XdpState.LEARN);
    }
    if (!ok) this.retryLater('hold: queues did not drain');

    // 3. FREEZE and 4. ACTIVE, synchronously: nothing of ours runs in between.
    this.freeze(maps, compat);
    this.holdMs = Date.now() - t0;
    this.rescaled = compat.rescale;
    this.stepOut();
  }

  private freeze(maps: XdpMaps, compat: Extract<ReturnType<typeof checkCompatible>, { ok: true }>): void {
    const [dn, up] = this.ends!;
    // Back to a plain user-space copy: out of repair mode, entries to LEARN (an entry written
    // ACTIVE already is harmless in LEARN: XDP ignores its rewrite fields there).
    const undo = () => {
      for (const e of this.ends!) {
        try {
          setRepair(e.fd, false);
        } catch (err) {
          this.log?.warn({ err }, 'could not leave TCP repair mode');
        }
        maps.setState(e.key, XdpState.LEARN);
      }
    };
    for (const e of this.ends!) setKeepAlive(e.fd, false);
    try {
      for (const e of this.ends!) setRepair(e.fd, true);
      if (inq(dn.fd) !== 0 || inq(up.fd) !== 0 || outq(dn.fd) !== 0 || outq(up.fd) !== 0) {
        undo();
        this.retryLater('a queue filled between the check and the freeze');
      }
      const legs = this.ends!.map((e): FrozenLeg => {
        const entry = maps.get(e.key);
        return {
          local: e.local,
          remote: e.remote,
          caps: tcpLegInfo(e.fd),
          sndNxt: queueSeq(e.fd, 'send'),
          rcvNxt: queueSeq(e.fd, 'recv'),
          tsNow: tcpTimestamp(e.fd),
          peerTsval: entry && entry.events & XdpEvent.TS_SEEN ? entry.tsval_last : undefined,
        };
      }) as [FrozenLeg, FrozenLeg];
      const plan = planEntries(legs[0], legs[1], compat, { idleMs: this.idleMs, ownerId: this.opts.ownerId ?? 0, nowNs: process.hrtime.bigint() });
      if (!plan.ok) {
        undo();
        if (plan.retry) this.retryLater(plan.reason);
        this.giveUp(plan.reason);
        throw new Stop(plan.reason);
      }
      maps.put(plan.s2c.key, plan.s2c.conn);
      maps.put(plan.c2s.key, plan.c2s.conn);
    } catch (e) {
      if (!(e instanceof Stop)) undo();
      throw e;
    }
  }

  /** The sockets leave: Node lets go of them, the downstream one closes silently (repair mode),
   * the upstream one stays open until the pair ends so its local port cannot be reused for a
   * new connection to the same server (its 4-tuple is spliced). */
  private stepOut(): void {
    this.mode = 'xdp';
    const [dn] = this.ends!;
    for (const [sock, ev, fn] of this.listeners) sock.off(ev, fn as (...args: unknown[]) => void);
    for (const e of this.ends!) {
      e.sock.on('error', () => undefined);
      e.sock.destroy();
    }
    closeSync(dn.fd);
    dn.fd = -1;
    this.log?.debug({ holdMs: this.holdMs }, 'XDP splice: connection spliced');
    this.watch();
  }

  private watch(): void {
    const maps = this.opts.maps!;
    const [dn, up] = this.ends!;
    let last: [XdpConnValue | undefined, XdpConnValue | undefined] = [undefined, undefined];
    let halfGone = 0;
    const timer = setInterval(() => {
      try {
        const cur: [XdpConnValue | undefined, XdpConnValue | undefined] = [maps.get(dn.key), maps.get(up.key)];
        for (const i of [0, 1] as const) if (cur[i]) last[i] = cur[i];
        this.kernel = {
          packets: (last[0]?.packets ?? 0n) + (last[1]?.packets ?? 0n),
          bytes: (last[0]?.bytes ?? 0n) + (last[1]?.bytes ?? 0n),
        };
        let end: XdpSpliceReport['end'] | undefined;
        if (!cur[0] && !cur[1]) end = 'closed';
        else if (!cur[0] || !cur[1]) {
          // XDP removes both entries of a pair in one packet; a lone one is a leftover.
          if (++halfGone > 2) end = 'closed';
        } else {
          const seen = cur[0].last_seen_ns > cur[1].last_seen_ns ? cur[0].last_seen_ns : cur[1].last_seen_ns;
          if (process.hrtime.bigint() - seen > BigInt(this.idleMs) * 1_000_000n) end = 'idle';
        }
        if (!end) return;
        clearInterval(timer);
        for (const e of this.ends!) maps.remove(e.key);
        this.end = end;
      } catch (e) {
        clearInterval(timer);
        this.end = 'error';
        this.error = `watching the spliced pair: ${(e as Error).message}`;
      }
      this.closeFds(); // repair mode: the upstream socket closes without FIN or RST
      this.finish();
    }, this.opts.watchIntervalMs ?? 250);
  }
}
