// The SKB hand-off hook: gives a connected pair to splice-skb.ts (the sockmap datapath's pairing
// protocol, which hands it to the kernel or copies on where it cannot) and reports the path. The
// reconciler (or a test fixture) creates it with the pinned SKB maps it owns, and the agent's
// splice keeper when there is one.
import type { SkbMaps } from '../bpf/datapath-skb.js';
import type { SkbKeeper } from './skb-keeper.js';
import { spliceSkb, type SkbSpliceOptions, type SpliceReport } from './splice-skb.js';
import type { HandoffContext, SpliceOutcome, SpliceResult } from './handoff.js';

export interface SkbHandoffOptions {
  /** The pinned maps, or a getter (undefined while the datapath is not loaded). */
  maps: SkbMaps | (() => SkbMaps | undefined);
  /** How long the handover may wait for user space's bytes to drain before copying instead (splice-skb default 2 s). */
  handoverTimeoutMs?: number;
  /** How long ending a direction may wait for the kernel's bytes (splice-skb default 30 s). */
  drainTimeoutMs?: number;
  /** The splice keeper that holds pairs after their handover, so they outlive the agent (absent: the agent keeps them). */
  keeper?: SkbKeeper;
}

export function skbHandoff(opts: SkbHandoffOptions): (ctx: HandoffContext) => SpliceOutcome {
  return (ctx) => {
    const maps = typeof opts.maps === 'function' ? opts.maps() : opts.maps;
    if (!maps) return { taken: false, reason: 'the SKB datapath is not loaded on this node' };
    const spliceOpts: SkbSpliceOptions = {
      maps,
      initial: ctx.initial,
      logger: ctx.logger,
      connId: ctx.connId,
      listener: ctx.listener,
      idleTimeoutMs: ctx.idleTimeoutMs,
      ...(opts.keeper ? { keeper: opts.keeper } : {}),
    };
    if (opts.handoverTimeoutMs !== undefined) spliceOpts.handoverTimeoutMs = opts.handoverTimeoutMs;
    if (opts.drainTimeoutMs !== undefined) spliceOpts.drainTimeoutMs = opts.drainTimeoutMs;
    const done = spliceSkb(ctx.downstream, ctx.upstream, spliceOpts).then(toResult);
    return { taken: true, done };
  };
}

/** Maps a splice-skb report to the proxy's view of the path taken. */
export function toResult(r: SpliceReport): SpliceResult {
  const d2u = Number(r.downstreamToUpstream.kernelBytes);
  const u2d = Number(r.upstreamToDownstream.kernelBytes);
  const base = {
    userBytes: { downstreamToUpstream: r.downstreamToUpstream.userBytes, upstreamToDownstream: r.upstreamToDownstream.userBytes },
    kernelBytes: { total: d2u + u2d, downstreamToUpstream: d2u, upstreamToDownstream: u2d },
    end: r.end,
    ...(r.error ? { error: r.error } : {}),
  };
  switch (r.mode) {
    case 'kernel':
    case 'broken':
      return { path: 'skb', ...base };
    case 'fallback':
      return { path: 'userspace', fallbackReason: `the SKB handover did not happen: ${r.fallbackReason ?? 'unknown reason'}`, ...base };
    case 'userspace':
      return { path: 'userspace', fallbackReason: 'the SKB splice could not inspect the sockets', ...base };
  }
}
