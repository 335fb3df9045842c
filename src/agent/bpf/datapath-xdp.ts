// The XDP splice datapath (bpf/xdp_splice.bpf.c + bpf/tc_splice.bpf.c): loading with the maps
// pinned under <root>/xdp/, attaching to each interface XDP, the TC egress guard and the TC
// ingress neighbour path (links pinned under <root>/xdp/<ifname>/), the egress devmap,
// counters, the idle sweeper, and detaching. XdpMaps is the pairing side: any process (the agent's proxy, a test fixture, a
// patched Envoy) opens the pinned maps and follows the contract in docs/xdp-splice.md.
//
// One map set serves every interface: in a routed middlebox the two directions of a spliced
// connection arrive on different interfaces, and a tuple is unique across them anyway.
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { XdpConn, XdpKey, XdpState, XdpStats } from './layout-xdp.js';
import { attachPinned, detachPinnedLink, tcAttach, tcDetach, tcHookDestroy, type AttachedLink } from './link.js';
import { BpfMap, PerCpuMap, TypedMap } from './map.js';
import { withNetns, ifIndex } from './netns.js';
import { BpfObject } from './object.js';
import { bpfObjectPath } from './objects.js';
import { removePinTree, type PinLayout } from './pins.js';
import { U32, type ValueOf } from './struct-codec.js';
import { attachTcxPinned, type TcxLink } from './tcx.js';

/** The pinned maps: what the pairing side (a proxy, a patched Envoy) opens. */
export const XDP_MAPS = ['xdp_conns', 'xdp_stats'] as const;
type XdpMapName = (typeof XDP_MAPS)[number];
const LINK_XDP = 'link_xdp';
const LINK_TC = { egress: 'link_tc_egress', ingress: 'link_tc_ingress' } as const;
const TC_PROGRAM = { egress: 'exds_tc_splice_guard', ingress: 'exds_tc_splice_neigh' } as const;
const TC_POINTS = ['egress', 'ingress'] as const;
/** Our netlink tc filters (fallback before Linux 6.6): handle and priority on clsact. */
const TC_HANDLE = 0x5844;
const TC_PRIORITY = 0x5844;

export type XdpKeyValue = ValueOf<typeof XdpKey>;
export type XdpConnValue = ValueOf<typeof XdpConn>;
export type XdpCounters = ValueOf<typeof XdpStats>;

/** The key of the other direction of a pair: the reverse of the tuple an entry rewrites to. */
export function peerKey(conn: XdpConnValue): XdpKeyValue {
  return { saddr: conn.new_daddr, daddr: conn.new_saddr, sport_be: conn.new_dport_be, dport_be: conn.new_sport_be };
}

function monotonicNs(): bigint {
  return process.hrtime.bigint(); // CLOCK_MONOTONIC, the clock of bpf_ktime_get_coarse_ns
}

/** Handles on the pinned XDP splice maps. */
export class XdpMaps {
  readonly conns: TypedMap<XdpKeyValue, XdpConnValue>;
  readonly stats: PerCpuMap<ValueOf<typeof U32>, XdpCounters>;

  private constructor(private readonly raw: Record<XdpMapName, BpfMap>) {
    this.conns = new TypedMap(raw.xdp_conns, XdpKey, XdpConn);
    this.stats = new PerCpuMap(raw.xdp_stats, U32, XdpStats);
  }

  static fromObject(obj: BpfObject): XdpMaps {
    return new XdpMaps(Object.fromEntries(XDP_MAPS.map((n) => [n, obj.map(n)])) as Record<XdpMapName, BpfMap>);
  }

  /** Opens the maps pinned in dir (e.g. /sys/fs/bpf/ebpf-xds/xdp); close() when done. */
  static openPinned(dir: string): XdpMaps {
    const opened: BpfMap[] = [];
    try {
      for (const n of XDP_MAPS) opened.push(BpfMap.openPinned(join(dir, n)));
    } catch (e) {
      for (const m of opened) m.close();
      throw e;
    }
    return new XdpMaps(Object.fromEntries(opened.map((m, i) => [XDP_MAPS[i]!, m])) as Record<XdpMapName, BpfMap>);
  }

  get(key: XdpKeyValue): XdpConnValue | undefined {
    return this.conns.lookup(key);
  }

  put(key: XdpKeyValue, conn: XdpConnValue): void {
    this.conns.update(key, conn);
  }

  /**
   * Moves an entry to LEARN or HOLD, keeping what BPF wrote into it (tsval_last, events). False
   * when the entry is gone.
   */
  setState(key: XdpKeyValue, state: (typeof XdpState)['LEARN' | 'HOLD']): boolean {
    const cur = this.conns.lookup(key);
    if (!cur) return false;
    this.conns.update(key, { ...cur, state, last_seen_ns: monotonicNs() }, 'exist');
    return true;
  }

  remove(key: XdpKeyValue): boolean {
    return this.conns.delete(key);
  }

  counters(): XdpCounters {
    const v = this.stats.lookupSum({ v: 0 });
    if (!v) throw new Error('xdp_stats has no element 0');
    return v;
  }

  /**
   * Removes every entry whose last packet is older than its idle_ms, with its pair. Returns the
   * number of entries removed.
   */
  sweepIdle(nowNs: bigint = monotonicNs()): number {
    let removed = 0;
    for (const { key, value } of this.conns.entries()) {
      const idleNs = BigInt(value.idle_ms) * 1_000_000n;
      if (value.idle_ms === 0 || nowNs - value.last_seen_ns <= idleNs) continue;
      if (this.conns.delete(key)) removed++;
      if (value.state === XdpState.ACTIVE && this.conns.delete(peerKey(value))) removed++;
    }
    return removed;
  }

  count(): number {
    return this.conns.count();
  }

  close(): void {
    for (const m of Object.values(this.raw)) m.close();
  }
}

export interface XdpDatapathOptions {
  pins: PinLayout;
  /** Interfaces to splice on (names in the namespace below). */
  interfaces: string[];
  /** Network namespace to act in (a path like /var/run/netns/NAME); default: this thread's. */
  netns?: string;
  /** Capacity of xdp_conns (two entries per spliced connection); applied when first created. */
  maxConns?: number;
  /** TC attachments: TCX links when the kernel has them (default), or the netlink tc API. */
  tc?: 'auto' | 'netlink';
  objectPaths?: { xdp?: string; tc?: string };
}

interface IfaceAttachment {
  name: string;
  ifindex: number;
  xdp: AttachedLink;
  /** The egress guard and the ingress neighbour path, as TCX links. */
  tcx: TcxLink[];
  /** netlink tc fallback: whether we created the clsact qdisc (then we remove it). */
  netlink?: { createdHook: boolean };
}

/**
 * The loaded and attached XDP splice datapath. attach() adopts what an earlier agent left pinned
 * (maps with their entries, XDP and TCX links with the program swapped), so spliced connections
 * keep flowing across an agent restart.
 */
export class XdpDatapath {
  private sweeper: NodeJS.Timeout | undefined;

  private constructor(
    readonly objects: { xdp: BpfObject; tc: BpfObject },
    readonly maps: XdpMaps,
    readonly ifaces: IfaceAttachment[],
    readonly dir: string,
    readonly netns: string | undefined,
  ) {}

  static dirOf(pins: PinLayout): string {
    return join(pins.root, 'xdp');
  }

  static attach(opts: XdpDatapathOptions): XdpDatapath {
    if (opts.interfaces.length === 0) throw new Error('XDP splice needs at least one interface');
    const dir = XdpDatapath.dirOf(opts.pins);
    // Check every interface before anything is loaded or pinned: bad input changes nothing.
    const ifindexes = withNetns(opts.netns, () =>
      opts.interfaces.map((name) => {
        const ifindex = ifIndex(name);
        checkForwarding(name);
        return ifindex;
      }),
    );
    const maxEntries = opts.maxConns ? { xdp_conns: opts.maxConns } : undefined;
    const xdp = BpfObject.load(opts.objectPaths?.xdp ?? bpfObjectPath('xdp_splice'), { pinDir: dir, ...(maxEntries ? { maxEntries } : {}) });
    let tc: BpfObject | undefined;
    const done: IfaceAttachment[] = [];
    try {
      tc = BpfObject.load(opts.objectPaths?.tc ?? bpfObjectPath('tc_splice'), { pinDir: dir, ...(maxEntries ? { maxEntries } : {}) });
      const maps = XdpMaps.fromObject(xdp);
      withNetns(opts.netns, () => {
        for (const [i, name] of opts.interfaces.entries()) {
          const ifindex = ifindexes[i]!;
          const ifDir = opts.pins.xdp(name);
          mkdirSync(ifDir, { recursive: true });
          const key = U32.encode({ v: ifindex });
          xdp.map('xdp_tx_ports').update(key, key);
          // TC first: the stack must never answer for a tuple XDP already splices, and the
          // neighbour path must be there before XDP hands it packets.
          const tcx: TcxLink[] = [];
          let netlink: IfaceAttachment['netlink'];
          for (const point of TC_POINTS) {
            const prog = tc!.program(TC_PROGRAM[point]);
            const link = opts.tc !== 'netlink' ? attachTcxPinned(prog, ifindex, point, join(ifDir, LINK_TC[point])) : undefined;
            if (link) tcx.push(link);
            else {
              const r = tcAttach(prog, { ifindex, point, handle: TC_HANDLE, priority: TC_PRIORITY });
              netlink = { createdHook: (netlink?.createdHook ?? false) || r.createdHook };
            }
          }
          const link = attachPinned(xdp.program('exds_xdp_splice'), { kind: 'xdp', ifindex, ifname: name }, join(ifDir, LINK_XDP));
          done.push({ name, ifindex, xdp: link, tcx, ...(netlink ? { netlink } : {}) });
        }
      });
      return new XdpDatapath({ xdp, tc }, maps, done, dir, opts.netns);
    } catch (e) {
      for (const a of done) {
        a.xdp.release();
        for (const l of a.tcx) l.release();
      }
      tc?.close();
      xdp.close();
      throw e;
    }
  }

  counters(): XdpCounters {
    return this.maps.counters();
  }

  /** Removes idle pairs now; returns how many entries went. */
  sweep(): number {
    return this.maps.sweepIdle();
  }

  /** Sweeps idle pairs every intervalMs until release() or detach(). */
  startSweeper(intervalMs: number, onError: (e: Error) => void): void {
    this.stopSweeper();
    this.sweeper = setInterval(() => {
      try {
        this.sweep();
      } catch (e) {
        onError(e as Error);
      }
    }, intervalMs);
    this.sweeper.unref();
  }

  stopSweeper(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Lets go of our fds; everything stays attached and pinned (agent exit, restart). */
  release(): void {
    this.stopSweeper();
    for (const a of this.ifaces) {
      a.xdp.release();
      for (const l of a.tcx) l.release();
    }
    this.objects.tc.close();
    this.objects.xdp.close();
  }

  /** Removes the datapath: XDP first (nothing new is spliced), then the guard, then the pins. */
  detach(): void {
    this.stopSweeper();
    withNetns(this.netns, () => {
      for (const a of this.ifaces) {
        a.xdp.detach();
        for (const l of a.tcx) l.detach();
        if (a.netlink) {
          for (const point of TC_POINTS) tcDetach({ ifindex: a.ifindex, point, handle: TC_HANDLE, priority: TC_PRIORITY });
          if (a.netlink.createdHook) tcHookDestroy(a.ifindex);
        }
      }
    });
    this.objects.tc.close();
    this.objects.xdp.close();
    removePinTree(this.dir);
  }

  /**
   * Removes whatever an XDP splice datapath left pinned under the pin root, without loading
   * anything (links are detached through their pins). A netlink tc filter (kernels before 6.6)
   * has no pin: it is removed when netns is given and its interface still exists. Idempotent.
   */
  static detachPinned(pins: PinLayout, netns?: string): void {
    const dir = XdpDatapath.dirOf(pins);
    if (!existsSync(dir)) return;
    for (const p of listIfaceDirs(dir)) {
      detachPinnedLink(join(dir, p, LINK_XDP));
      for (const point of TC_POINTS) detachPinnedLink(join(dir, p, LINK_TC[point]));
      if (netns) {
        withNetns(netns, () => {
          let ifindex: number;
          try {
            ifindex = ifIndex(p);
          } catch {
            return; // the interface is gone: so are its filters
          }
          for (const point of TC_POINTS) tcDetach({ ifindex, point, handle: TC_HANDLE, priority: TC_PRIORITY });
        });
      }
    }
    removePinTree(dir);
  }
}

function listIfaceDirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
}

/**
 * bpf_fib_lookup (which gives spliced packets their egress and MACs) refuses to route for an
 * interface with IPv4 forwarding off; say so at attach instead of dropping every packet later.
 */
function checkForwarding(ifname: string): void {
  const path = `/proc/sys/net/ipv4/conf/${ifname}/forwarding`;
  let v: string;
  try {
    v = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new Error(`cannot read ${path} for interface "${ifname}": ${(e as Error).message}`);
  }
  if (v !== '1') {
    throw new Error(
      `interface "${ifname}" has IPv4 forwarding off; XDP splice routes rewritten packets with bpf_fib_lookup, which requires it: sysctl -w net.ipv4.conf.${ifname}.forwarding=1 (or net.ipv4.ip_forward=1)`,
    );
  }
}
