// sk_lookup port steering (bpf/steer.bpf.c): maps pinned under <root>/steer/, the program
// attached to a network namespace through a pinned link. A listener owns a slot: its one
// listening socket sits in steer_socks at the slot, and every port (or port of a range) it
// should also receive is a steer_ports entry naming the slot.
import { join } from 'node:path';
import { ipToBytes } from './ip-bytes.js';
import { SteerKey, SteerStats, SteerVal } from './layout-steer.js';
import { attachPinned, detachPinnedLink, type AttachedLink } from './link.js';
import { BpfMap, PerCpuMap, TypedMap } from './map.js';
import { BpfObject } from './object.js';
import { bpfObjectPath } from './objects.js';
import { removePinTree, type PinLayout } from './pins.js';
import { U32, type ValueOf } from './struct-codec.js';

const LINK = 'link_sk_lookup';
const IPPROTO = { tcp: 6, udp: 17 } as const;
const ANY = new Uint8Array(16);

export type SteerCounters = ValueOf<typeof SteerStats>;

/** A port or an inclusive range, as config writes them: 4444 or "5000-5010". */
export type PortSpec = number | string;

/** Expands port specs into a sorted, duplicate-free list; throws naming a bad spec. */
export function expandPorts(specs: readonly PortSpec[]): number[] {
  const out = new Set<number>();
  for (const spec of specs) {
    const text = String(spec).trim();
    const m = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(text);
    if (!m) throw new Error(`"${text}" is not a port or a port range (use 4444 or "5000-5010")`);
    const from = Number(m[1]);
    const to = m[2] !== undefined ? Number(m[2]) : from;
    if (from < 1 || to > 65535 || from > to) throw new Error(`port range "${text}" must lie within 1-65535 and start at or below its end`);
    for (let p = from; p <= to; p++) out.add(p);
  }
  return [...out].sort((a, b) => a - b);
}

export interface SteerOptions {
  pins: PinLayout;
  /** Network namespace to steer in (default: this process's, /proc/self/ns/net). */
  netns?: string;
  capacity?: { ports?: number; listeners?: number };
  objectPath?: string;
}

export class SteerDatapath {
  private constructor(
    readonly object: BpfObject,
    readonly ports: TypedMap<ValueOf<typeof SteerKey>, ValueOf<typeof SteerVal>>,
    readonly socks: BpfMap,
    readonly stats: PerCpuMap<ValueOf<typeof U32>, SteerCounters>,
    readonly link: AttachedLink,
    readonly dir: string,
  ) {}

  static attach(opts: SteerOptions): SteerDatapath {
    const dir = opts.pins.steer;
    const maxEntries: Record<string, number> = {};
    if (opts.capacity?.ports) maxEntries['steer_ports'] = opts.capacity.ports;
    if (opts.capacity?.listeners) maxEntries['steer_socks'] = opts.capacity.listeners;
    const obj = BpfObject.load(opts.objectPath ?? bpfObjectPath('steer'), { pinDir: dir, maxEntries });
    try {
      const link = attachPinned(obj.program('exds_steer'), { kind: 'netns', path: opts.netns ?? '/proc/self/ns/net' }, join(dir, LINK));
      return new SteerDatapath(
        obj,
        new TypedMap(obj.map('steer_ports'), SteerKey, SteerVal),
        obj.map('steer_socks'),
        new PerCpuMap(obj.map('steer_stats'), U32, SteerStats),
        link,
        dir,
      );
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  /** Puts a listening socket into a slot (replacing what was there). */
  setListener(slot: number, socketFd: number): void {
    this.socks.updateSocket(U32.encode({ v: slot }), socketFd);
  }

  removeListener(slot: number): void {
    this.socks.delete(U32.encode({ v: slot }));
    this.setPorts(slot, []);
  }

  /**
   * Makes exactly these ports (of `address`, default any local address) lead to the slot's
   * listener. Entries of other slots are left alone; a port another slot already claims for
   * the same address is an error that changes nothing.
   */
  setPorts(slot: number, specs: readonly PortSpec[], opts: { address?: string; proto?: 'tcp' | 'udp' } = {}): void {
    const ports = expandPorts(specs);
    const addr = opts.address ? ipToBytes(opts.address) : ANY;
    const proto = IPPROTO[opts.proto ?? 'tcp'];
    const sameAddr = (k: ValueOf<typeof SteerKey>) => k.proto === proto && Buffer.compare(Buffer.from(k.addr), Buffer.from(addr)) === 0;
    const existing = this.ports.entries().filter((e) => sameAddr(e.key));
    const taken = existing.filter((e) => e.value.slot !== slot && ports.includes(e.key.port));
    if (taken.length > 0) {
      throw new Error(`ports ${taken.map((e) => e.key.port).join(', ')} already lead to listener slot ${taken[0]!.value.slot}; remove them there first`);
    }
    const want = new Set(ports);
    for (const e of existing) if (e.value.slot === slot && !want.has(e.key.port)) this.ports.delete(e.key);
    for (const port of ports) this.ports.update({ addr, port, proto }, { slot });
  }

  /** Ports currently steered to the slot. */
  portsOf(slot: number): number[] {
    return this.ports
      .entries()
      .filter((e) => e.value.slot === slot)
      .map((e) => e.key.port)
      .sort((a, b) => a - b);
  }

  counters(): SteerCounters {
    const v = this.stats.lookupSum({ v: 0 });
    if (!v) throw new Error('steer_stats has no element 0');
    return v;
  }

  /** Lets go of our fds; the program stays attached through its pinned link. */
  release(): void {
    this.link.release();
    this.object.close();
  }

  detach(): void {
    this.link.detach();
    this.object.close();
    SteerDatapath.detachPinned(this.dir);
  }

  static detachPinned(dir: string): void {
    detachPinnedLink(join(dir, LINK));
    removePinTree(dir);
  }
}
