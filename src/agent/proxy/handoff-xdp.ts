// The XDP hand-off hook: gives a connected pair to splice-xdp.ts, which pairs the two TCP
// connections in the XDP datapath and steps out of them (or copies on where pairing is unsafe),
// and reports the path taken. The reconciler (or a test fixture) creates it with the pinned XDP
// maps it owns; one map set serves every interface.
import type { XdpMaps } from '../bpf/datapath-xdp.js';
import type { SpliceOutcome, SpliceResult, XdpHandoffContext } from './handoff.js';
import { spliceXdp, type XdpSpliceOptions, type XdpSpliceReport } from './splice-xdp.js';

export interface XdpHandoffOptions {
  /** The pinned maps, or a getter given the chain's interface (undefined: not loaded). */
  maps: XdpMaps | ((ctx: XdpHandoffContext) => XdpMaps | undefined);
  /** Pairing attempts before a connection stays a user-space copy (splice-xdp default 8). */
  maxAttempts?: number;
  /** Legs with different window scales: rescale in XDP (default) or copy. */
  wscale?: XdpSpliceOptions['wscale'];
  /** owner_id written into the entries, per listener (e.g. the reconciler's listener id). */
  ownerId?: (listener: string) => number;
}

export function xdpHandoff(opts: XdpHandoffOptions): (ctx: XdpHandoffContext) => SpliceOutcome {
  return (ctx) => {
    const maps = typeof opts.maps === 'function' ? opts.maps(ctx) : opts.maps;
    if (!maps) return { taken: false, reason: `the XDP datapath is not loaded${ctx.interface?.name ? ` on ${ctx.interface.name}` : ''}` };
    const spliceOpts: XdpSpliceOptions = {
      maps,
      initial: ctx.initial,
      logger: ctx.logger,
      // 0 means no idle timeout in TcpProxy; the datapath needs a bound, so a day stands for it.
      idleTimeoutMs: ctx.idleTimeoutMs > 0 ? ctx.idleTimeoutMs : 24 * 3_600_000,
    };
    if (opts.maxAttempts !== undefined) spliceOpts.maxAttempts = opts.maxAttempts;
    if (opts.wscale !== undefined) spliceOpts.wscale = opts.wscale;
    if (opts.ownerId) spliceOpts.ownerId = opts.ownerId(ctx.listener);
    const done = spliceXdp(ctx.downstream, ctx.upstream, spliceOpts).then(xdpResult);
    // splice-xdp attached its readers synchronously and expects flowing sockets (it pauses
    // them itself while pairing); the proxy hands them over paused.
    ctx.downstream.resume();
    ctx.upstream.resume();
    return { taken: true, done };
  };
}

/** Maps a splice-xdp report to the proxy's view of the path taken. */
export function xdpResult(r: XdpSpliceReport): SpliceResult {
  return {
    path: r.mode === 'xdp' ? 'xdp' : 'userspace',
    ...(r.mode !== 'xdp' ? { fallbackReason: r.fallbackReason ?? 'pairing did not happen' } : {}),
    userBytes: { ...r.userBytes },
    kernelBytes: { total: Number(r.kernel.bytes) },
    end: r.end,
    ...(r.error ? { error: r.error } : {}),
  };
}

