// The SKB splice datapath (bpf/skb_splice.bpf.c): loading with pinned maps under <root>/skb/,
// attaching the verdict to the SOCKHASH and the release cleanup to the proxy's cgroup (both
// through pinned links), reading counters, and detaching.
// SkbMaps is the pairing side: any process (the agent's proxy, a test fixture, a patched Envoy)
// opens the pinned maps and follows the pairing contract in docs/bpf.md.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cgroup2Mount, cgroupOf } from './cgroup.js';
import { BpfError } from './errors.js';
import { PairState, SkbPair, SkbSock, SkbStats } from './layout-skb.js';
import { attachPinned, detachPinnedLink, type AttachedLink } from './link.js';
import { BpfMap, PerCpuMap, TypedMap } from './map.js';
import { BpfObject } from './object.js';
import { bpfObjectPath } from './objects.js';
import { removePinTree, type PinLayout } from './pins.js';
import { setSockOptInt, SockOpt } from './socket-syscalls.js';
import { U32, U64, type ValueOf } from './struct-codec.js';

export const SKB_MAPS = ['skb_socks', 'skb_pairs', 'skb_sock_stats', 'skb_stats'] as const;
type SkbMapName = (typeof SKB_MAPS)[number];
const LINK_RELEASE = 'link_release';
const LINK_VERDICT = 'link_verdict';
// An earlier version cleaned up from sockops on TCP_CLOSE, which deletes a pair before the
// verdict has seen the last bytes (docs/bpf.md); attach() takes such a link off its cgroup.
const LINK_SOCKOPS_OLD = 'link_sockops';
const SO_RCVLOWAT = 18;

export type SkbCounters = ValueOf<typeof SkbStats>;
export type SkbSockCounters = ValueOf<typeof SkbSock>;
export type SkbPairValue = ValueOf<typeof SkbPair>;

/** One socket of a connection being handed over: its cookie and an fd for it. */
export interface HandoverSocket {
  cookie: bigint;
  fd: number;
}

/** Handles on the pinned SKB splice maps. */
export class SkbMaps {
  readonly socks: BpfMap;
  readonly pairs: TypedMap<ValueOf<typeof U64>, SkbPairValue>;
  readonly sockStats: TypedMap<ValueOf<typeof U64>, SkbSockCounters>;
  readonly stats: PerCpuMap<ValueOf<typeof U32>, SkbCounters>;

  private constructor(private readonly raw: Record<SkbMapName, BpfMap>) {
    this.socks = raw.skb_socks;
    this.pairs = new TypedMap(raw.skb_pairs, U64, SkbPair);
    this.sockStats = new TypedMap(raw.skb_sock_stats, U64, SkbSock);
    this.stats = new PerCpuMap(raw.skb_stats, U32, SkbStats);
  }

  /** Maps of a loaded object (fds borrowed from the object). */
  static fromObject(obj: BpfObject): SkbMaps {
    return new SkbMaps(Object.fromEntries(SKB_MAPS.map((n) => [n, obj.map(n)])) as Record<SkbMapName, BpfMap>);
  }

  /** Opens the maps pinned in dir (e.g. /sys/fs/bpf/ebpf-xds/skb); close() when done. */
  static openPinned(dir: string): SkbMaps {
    const opened: BpfMap[] = [];
    try {
      for (const n of SKB_MAPS) opened.push(BpfMap.openPinned(join(dir, n)));
    } catch (e) {
      for (const m of opened) m.close();
      throw e;
    }
    return new SkbMaps(Object.fromEntries(opened.map((m, i) => [SKB_MAPS[i]!, m])) as Record<SkbMapName, BpfMap>);
  }

  /**
   * The pairing contract's one kernel step (docs/bpf.md): pairs a and b, then puts both into
   * the SOCKHASH, from where the verdict redirects every byte each receives to the other.
   * Call it only when user space holds no byte of the connection in flight: everything it has
   * read from a socket is already in the other socket's kernel send queue, and both sockets are
   * ESTABLISHED (the kernel refuses others).
   * Returns 'refused' when the kernel refused and nothing changed (go on copying), and throws
   * when it refused half-way with bytes already moving (the caller must reset the connection).
   */
  handover(a: HandoverSocket, b: HandoverSocket): 'done' | 'refused' {
    for (const [s, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      this.sockStats.update({ v: s.cookie }, { passed_bytes: 0n, redirected_bytes: 0n, passed_skbs: 0n, redirected_skbs: 0n });
      this.pairs.update({ v: s.cookie }, { peer_cookie: peer.cookie, state: PairState.ARMED });
    }
    const key = (s: HandoverSocket) => U64.encode({ v: s.cookie });
    // While only one socket is in the SOCKHASH, its verdict must not run: a redirect to the
    // missing peer would fail. TCP calls data_ready (which runs the verdict) only once
    // SO_RCVLOWAT bytes are waiting, so raise it for the insertion and lower it afterwards;
    // lowering it runs data_ready at once (tcp_set_rcvlowat), so bytes that arrived meanwhile
    // are redirected without waiting for more traffic.
    const lowat = (v: number) => {
      for (const s of [a, b]) setSockOptInt(s.fd, SockOpt.SOL_SOCKET, SO_RCVLOWAT, v);
    };
    lowat(0x7fff_ffff);
    try {
      try {
        this.socks.updateSocket(key(b), b.fd, 'noexist');
      } catch (e) {
        this.forget(a.cookie);
        this.forget(b.cookie);
        if (e instanceof BpfError) return 'refused';
        throw e;
      }
      try {
        this.socks.updateSocket(key(a), a.fd, 'noexist');
      } catch (e) {
        // Only if b neither passed nor redirected a byte can it leave the SOCKHASH unharmed.
        this.socks.delete(key(b));
        const s = this.sock(b.cookie);
        this.forget(a.cookie);
        this.forget(b.cookie);
        if (e instanceof BpfError && s && s.passed_bytes === 0n && s.redirected_bytes === 0n) return 'refused';
        throw e;
      }
    } finally {
      lowat(1);
    }
    return 'done';
  }

  pair(cookie: bigint): SkbPairValue | undefined {
    return this.pairs.lookup({ v: cookie });
  }

  /** Per-socket counters, present from handover until the socket closes. */
  sock(cookie: bigint): SkbSockCounters | undefined {
    return this.sockStats.lookup({ v: cookie });
  }

  /** Removes what we keep for a socket (the release program does it too, when the socket's last fd closes). */
  forget(cookie: bigint): void {
    this.pairs.delete({ v: cookie });
    this.sockStats.delete({ v: cookie });
  }

  counters(): SkbCounters {
    const v = this.stats.lookupSum({ v: 0 });
    if (!v) throw new Error('skb_stats has no element 0');
    return v;
  }

  /** Entries left in the per-connection maps (all zero when nothing leaks). */
  occupancy(): { socks: number; pairs: number; sockStats: number } {
    return { socks: this.socks.count(), pairs: this.pairs.count(), sockStats: this.sockStats.count() };
  }

  close(): void {
    for (const m of Object.values(this.raw)) m.close();
  }
}

export interface SkbDatapathOptions {
  pins: PinLayout;
  /**
   * cgroup v2 directory of the proxy's sockets, whose release cleans up after them (default:
   * this process's own cgroup). Sockets belong to the cgroup of the process that created them.
   */
  cgroup?: string;
  /**
   * Allow the root cgroup (where the release program would run for every socket of the host).
   * Without it, attach() refuses the root, also when it is this process's own cgroup.
   */
  allowRootCgroup?: boolean;
  /** Map capacities (max_entries), applied when the maps are first created. */
  capacity?: { socks?: number };
  /** Verdict attach type: stream_verdict (default) or skb_verdict; both skip the strparser. */
  verdict?: 'stream_verdict' | 'skb_verdict';
  objectPath?: string;
}

/**
 * The loaded and attached SKB splice datapath. attach() adopts what an earlier agent left pinned
 * (same maps with their entries, same links with the program swapped), so established spliced
 * connections keep flowing across an agent restart.
 */
export class SkbDatapath {
  private constructor(
    readonly object: BpfObject,
    readonly maps: SkbMaps,
    readonly links: { verdict: AttachedLink; release: AttachedLink },
    readonly dir: string,
    readonly cgroup: string,
  ) {}

  static attach(opts: SkbDatapathOptions): SkbDatapath {
    const dir = opts.pins.skb;
    const cgroup = opts.cgroup ?? cgroupOf('self');
    if (!existsSync(join(cgroup, 'cgroup.procs'))) throw new Error(`cgroup ${cgroup} does not exist (no cgroup.procs); give a cgroup v2 directory`);
    if (resolve(cgroup) === resolve(cgroup2Mount()) && !opts.allowRootCgroup) {
      throw new Error(
        `refusing to attach the SKB splice to the root cgroup ${cgroup}: it would run for every socket of the host. Run the agent in its own cgroup (a systemd service or a container has one), name one explicitly, or allow the root on purpose`,
      );
    }
    const cap = opts.capacity ?? {};
    const maxEntries: Record<string, number> = {};
    if (cap.socks) Object.assign(maxEntries, { skb_socks: cap.socks, skb_pairs: cap.socks, skb_sock_stats: cap.socks });
    const obj = BpfObject.load(opts.objectPath ?? bpfObjectPath('skb_splice'), { pinDir: dir, maxEntries });
    const attached: AttachedLink[] = [];
    try {
      const maps = SkbMaps.fromObject(obj);
      const verdict = attachPinned(obj.program('exds_skb_verdict'), { kind: 'sockmap', map: maps.socks, verdict: opts.verdict ?? 'stream_verdict' }, join(dir, LINK_VERDICT));
      attached.push(verdict);
      const release = attachPinned(obj.program('exds_skb_release'), { kind: 'cgroup', path: cgroup }, join(dir, LINK_RELEASE));
      attached.push(release);
      detachPinnedLink(join(dir, LINK_SOCKOPS_OLD));
      return new SkbDatapath(obj, maps, { verdict, release }, dir, cgroup);
    } catch (e) {
      for (const l of attached) l.release();
      obj.close();
      throw e;
    }
  }

  counters(): SkbCounters {
    return this.maps.counters();
  }

  /** Lets go of our fds; everything stays attached and pinned (agent exit, restart). */
  release(): void {
    this.links.release.release();
    this.links.verdict.release();
    this.object.close();
  }

  /** Removes the datapath: the release cleanup first, then the verdict, then the pins. Idempotent. */
  detach(): void {
    this.links.release.detach();
    this.links.verdict.detach();
    this.object.close();
    SkbDatapath.detachPinned(this.dir);
  }

  /** Removes whatever an SKB datapath left pinned in dir, without loading anything. Idempotent. */
  static detachPinned(dir: string): void {
    detachPinnedLink(join(dir, LINK_RELEASE));
    detachPinnedLink(join(dir, LINK_SOCKOPS_OLD));
    detachPinnedLink(join(dir, LINK_VERDICT));
    removePinTree(dir);
  }
}
