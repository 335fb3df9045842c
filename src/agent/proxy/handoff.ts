// The hand-off contract between the embedded proxy and the kernel splice paths: after accept,
// SNI and connect, the proxy offers the connected pair to the hook of the chain's mode. The
// reconciler implements the hooks (it owns the maps); handoff-skb.ts is the SKB one.
import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import type { InterfaceRef } from '../desired-state.js';

export type SplicePath = 'xdp' | 'skb' | 'userspace';

export interface HandoffContext {
  listener: string;
  connId: string;
  /** Connected, allowHalfOpen, paused (readableFlowing false). */
  downstream: Socket;
  /** Connected, allowHalfOpen, paused; nothing read from it yet. */
  upstream: Socket;
  /**
   * Bytes already read from the downstream (the ClientHello on SNI listeners), not yet sent
   * upstream: a hook that takes the pair sends them first.
   */
  initial: Buffer;
  /** TcpProxy idle_timeout in ms (0: none); the proxy also watches kernel-carried pairs. */
  idleTimeoutMs: number;
  /** A child logger with the connection id (`conn`). */
  logger: Logger;
}

export interface XdpHandoffContext extends HandoffContext {
  /** The chain's (or listener's) interface from EbpfTcpProxyXDP; the reconciler resolves names. */
  interface?: InterfaceRef;
}

/** What a hook did with a pair. */
export type SpliceOutcome =
  /** The hook did not touch the sockets (nothing read, written or listened to): the proxy copies them in user space. */
  | { taken: false; reason: string }
  /** The hook owns both sockets until `done` settles; a rejection means the hook failed mid-connection. */
  | { taken: true; done: Promise<SpliceResult> };

export interface SpliceResult {
  /** The path that carried the connection: a kernel hook that fell back to copying reports 'userspace'. */
  path: SplicePath;
  /** Why a kernel path ended up copying (e.g. "the handover did not happen: queued-in-user-space"). */
  fallbackReason?: string;
  /** Bytes user space copied, per direction. */
  userBytes: { downstreamToUpstream: number; upstreamToDownstream: number };
  /** Bytes the kernel carried: the total, and per direction where the path counts them apart. */
  kernelBytes: { total: number; downstreamToUpstream?: number; upstreamToDownstream?: number };
  /**
   * fin: both directions ended in order; reset: an RST ended it; closed: the kernel datapath saw
   * the end (FIN or RST) after user space stepped out; idle: the idle timeout; error: a local failure.
   */
  end: 'fin' | 'reset' | 'closed' | 'idle' | 'error';
  error?: string;
}

export interface SpliceHooks {
  /**
   * SKB mode: hand the pair to the sockmap datapath. Called after connect with the bytes read
   * so far; absent, throwing or { taken: false } → user-space copy (counted and logged).
   */
  skb?(ctx: HandoffContext): SpliceOutcome | Promise<SpliceOutcome>;
  /** XDP mode: likewise for the XDP splice (src/agent/proxy/splice-xdp.ts). */
  xdp?(ctx: XdpHandoffContext): SpliceOutcome | Promise<SpliceOutcome>;
  /**
   * Called with each listening socket so the reconciler can put it in the sk_lookup SOCKMAP for
   * the listener's other ports and ranges (fd: socketFd-style, server._handle.fd). With this
   * hook the proxy binds only ports[0].start; without it, every port itself.
   */
  listening?(listener: string, server: Server): void | Promise<void>;
  /** The listener's socket closed (listener removed, or rebound elsewhere). */
  closed?(listener: string): void | Promise<void>;
}
