// The XDP splice part of the reconciler: which interfaces XDP splice must run on (pure: each xdp
// chain's interface, where clients arrive, plus the interfaces toward its cluster's endpoints,
// where servers answer), and the XdpDatapath's life on exactly those interfaces (adopting pins,
// kept on interfaces that still carry spliced pairs, detached per interface after that).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { XdpDatapath, type XdpCounters, type XdpMaps } from './bpf/datapath-xdp.js';
import { removePinTree, type PinLayout } from './bpf/pins.js';
import type { DesiredCluster, DesiredListener } from './desired-state.js';

export function needsXdp(l: DesiredListener): boolean {
  return l.chains.some((c) => c.mode === 'xdp');
}

/** Endpoint addresses of the clusters behind a listener's xdp chains. */
export function xdpEndpointAddresses(l: DesiredListener, clusters: ReadonlyMap<string, DesiredCluster>): string[] {
  const out = new Set<string>();
  for (const c of l.chains) {
    if (c.mode !== 'xdp') continue;
    for (const e of clusters.get(c.cluster)?.endpoints ?? []) out.add(e.address);
  }
  return [...out].sort();
}

/**
 * The interfaces each xdp listener needs: its chains' (resolved) interfaces and the egress
 * interfaces of its endpoints. Endpoints without a route add nothing (connecting fails anyway).
 */
export function xdpInterfacesByListener(
  listeners: readonly DesiredListener[],
  clusters: ReadonlyMap<string, DesiredCluster>,
  chainInterfaces: ReadonlyMap<string, readonly string[]>,
  egress: ReadonlyMap<string, string | undefined>,
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const l of listeners) {
    if (!needsXdp(l)) continue;
    const set = new Set(chainInterfaces.get(l.name) ?? []);
    for (const a of xdpEndpointAddresses(l, clusters)) {
      const dev = egress.get(a);
      if (dev) set.add(dev);
    }
    out.set(l.name, [...set].sort());
  }
  return out;
}

export interface XdpEnsureResult {
  /** Interfaces that could not get XDP splice, with the reason. */
  failed: Map<string, string>;
  /** Interfaces kept only because spliced pairs still go through the datapath. */
  draining: string[];
}

export class XdpReconciler {
  private dp: XdpDatapath | undefined;
  private ifaces: string[] = [];

  constructor(private readonly o: { pins: PinLayout; logger: Logger; sweepIntervalMs?: number }) {}

  get maps(): XdpMaps | undefined {
    return this.dp?.maps;
  }

  /** Interfaces XDP splice is attached to now. */
  get interfaces(): readonly string[] {
    return this.dp ? this.ifaces : [];
  }

  /** Makes XDP splice run on exactly `wanted` (plus interfaces that still carry pairs). */
  ensure(wanted: readonly string[], present: ReadonlySet<string>): XdpEnsureResult {
    const log = this.o.logger;
    const failed = new Map<string, string>();
    const dir = XdpDatapath.dirOf(this.o.pins);
    const pinned = existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name) : [];
    if (!this.dp && pinned.length > 0) {
      // An earlier agent's datapath: adopt it on the interfaces that still exist, so that its
      // pairs keep flowing and the sweeper runs.
      const adopt = pinned.filter((i) => present.has(i));
      if (adopt.length > 0) this.attach(adopt, failed);
    }
    const entries = this.dp ? this.dp.maps.count() : 0;
    const drain = entries > 0 ? this.ifaces.filter((i) => !wanted.includes(i) && present.has(i)) : [];
    const ok: string[] = [];
    for (const i of [...new Set(wanted)].sort()) {
      const why = prerequisite(i, present);
      if (why) failed.set(i, why);
      else ok.push(i);
    }
    const target = [...new Set([...ok, ...drain])].sort();
    if (target.length === 0) {
      if (this.dp || pinned.length > 0) {
        this.dp?.stopSweeper();
        if (this.dp) this.dp.detach();
        else XdpDatapath.detachPinned(this.o.pins);
        this.dp = undefined;
        this.ifaces = [];
        log.info({ datapath: 'xdp' }, 'XDP splice detached: no listener uses it and no pair is left');
      }
      return { failed, draining: [] };
    }
    if (!this.dp || target.join() !== this.ifaces.join()) this.attach(target, failed);
    // Interfaces left behind: their links go (the maps stay for the others).
    for (const i of pinned) {
      if (this.ifaces.includes(i)) continue;
      removePinTree(this.o.pins.xdp(i));
      log.info({ datapath: 'xdp', interface: i }, 'XDP splice detached from the interface');
    }
    if (drain.length > 0) log.info({ datapath: 'xdp', interfaces: drain, entries }, 'XDP splice kept on interfaces no listener needs while spliced pairs remain');
    return { failed, draining: drain };
  }

  private attach(target: string[], failed: Map<string, string>): void {
    const log = this.o.logger;
    let next: XdpDatapath;
    try {
      next = XdpDatapath.attach({ pins: this.o.pins, interfaces: target });
    } catch (e) {
      const msg = `XDP splice could not be attached to ${target.join(', ')}: ${(e as Error).message}`;
      log.error({ datapath: 'xdp', interfaces: target, err: (e as Error).message }, 'XDP splice could not be attached');
      for (const i of target) if (!this.ifaces.includes(i)) failed.set(i, msg);
      return;
    }
    // The new object adopted the links and maps; the old one lets go of its handles.
    this.dp?.release();
    this.dp = next;
    this.ifaces = target;
    next.startSweeper(this.o.sweepIntervalMs ?? 1000, (e) => log.error({ datapath: 'xdp', err: e.message }, 'XDP splice idle sweep failed'));
    const adopted = next.ifaces.filter((a) => a.xdp.adopted).map((a) => a.name);
    log.info({ datapath: 'xdp', interfaces: target, adopted }, 'XDP splice attached');
  }

  counters(): XdpCounters | undefined {
    return this.dp?.counters();
  }

  entries(): number {
    return this.dp?.maps.count() ?? 0;
  }

  release(): void {
    this.dp?.release();
    this.dp = undefined;
  }

  detach(): void {
    if (this.dp) this.dp.detach();
    else XdpDatapath.detachPinned(this.o.pins);
    this.dp = undefined;
    this.ifaces = [];
  }
}

/** Why XDP splice cannot run on an interface here, checked before touching anything. */
function prerequisite(ifname: string, present: ReadonlySet<string>): string | undefined {
  if (!present.has(ifname)) return `interface "${ifname}" is gone`;
  let fwd: string;
  try {
    fwd = readFileSync(`/proc/sys/net/ipv4/conf/${ifname}/forwarding`, 'utf8').trim();
  } catch (e) {
    return `cannot read the IPv4 forwarding setting of "${ifname}": ${(e as Error).message}`;
  }
  if (fwd !== '1') {
    return `interface "${ifname}" has IPv4 forwarding off; XDP splice routes the rewritten packets with bpf_fib_lookup, which needs it: sysctl -w net.ipv4.conf.${ifname}.forwarding=1 (or net.ipv4.ip_forward=1)`;
  }
  return undefined;
}
