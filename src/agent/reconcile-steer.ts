// The sk_lookup part of the reconciler: which listeners need steering (those with ports beyond
// the one they bind; pure), their port entries per slot, and the listening socket in each slot
// (the embedded proxy's, through its `listening` hook; a patched Envoy puts its own socket into
// steer_socks[slot], where slot = steer_ports[{address, first port, tcp}]).
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import type { Logger } from 'pino';
import { SteerDatapath, type SteerCounters } from './bpf/datapath-steer.js';
import { BpfError } from './bpf/errors.js';
import { bytesToIp, ipToBytes } from './bpf/ip-bytes.js';
import type { PinLayout } from './bpf/pins.js';
import { U32 } from './bpf/struct-codec.js';
import type { DesiredListener, PortRange } from './desired-state.js';
import { slotKey } from './listener-ids.js';

/** True when the listener has ports beyond the one it binds, which sk_lookup must steer. */
export function needsSteering(l: DesiredListener): boolean {
  return l.ports.length > 1 || l.ports.some((r) => r.end > r.start);
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

export interface SteerWant {
  name: string;
  slot: number;
  address: string;
  /** Every port of the listener, the bound one included (so a patched Envoy can find its slot). */
  ports: readonly PortRange[];
}

const specs = (ports: readonly PortRange[]) => ports.map((r) => (r.start === r.end ? r.start : `${r.start}-${r.end}`));

export class SteerReconciler {
  private dp: SteerDatapath | undefined;
  /** slot → the listener whose socket is in it, and that socket's fd. */
  private readonly holders = new Map<number, { name: string; fd: number }>();
  /** listener → its listening socket's fd (from the proxy), kept until it closes. */
  private readonly sockets = new Map<string, number>();
  private configured = new Map<string, number>();

  constructor(private readonly o: { pins: PinLayout; logger: Logger }) {}

  get attached(): boolean {
    return this.dp !== undefined;
  }

  /** Slots an earlier agent (or this one) left in the pinned map, by slotKey(address, port). */
  recovered(): Map<string, number> {
    const out = new Map<string, number>();
    // Read after prepare(): a node with no listener to steer has nothing to take over.
    if (!this.dp) return out;
    for (const { key, value } of this.dp.ports.entries()) {
      const any = key.addr.every((b) => b === 0);
      if (any) {
        out.set(slotKey('0.0.0.0', key.port), value.slot);
        out.set(slotKey('::', key.port), value.slot);
      } else out.set(slotKey(bytesToIp(key.addr), key.port), value.slot);
    }
    return out;
  }

  /** Attaches (adopting pins) when some listener needs steering; returns an error when it cannot. */
  prepare(needed: boolean): string | undefined {
    if (!needed || this.dp) return undefined;
    try {
      this.dp = SteerDatapath.attach({ pins: this.o.pins });
      this.o.logger.info({ datapath: 'steer', pins: this.o.pins.steer, adopted: this.dp.link.adopted }, this.dp.link.adopted ? 'sk_lookup steering adopted from its pins' : 'sk_lookup steering attached');
      return undefined;
    } catch (e) {
      this.o.logger.error({ datapath: 'steer', err: (e as Error).message }, 'sk_lookup steering could not be attached');
      return `sk_lookup steering could not be attached: ${(e as Error).message}`;
    }
  }

  /**
   * Makes the port entries exactly `wants`; returns an error per listener whose ports could not
   * be steered (another listener claims them). With no wants, detaches.
   */
  ensure(wants: readonly SteerWant[]): Map<string, string> {
    const errors = new Map<string, string>();
    if (wants.length === 0) {
      if (this.dp || existsSync(this.o.pins.steer)) {
        if (this.dp) this.dp.detach();
        else SteerDatapath.detachPinned(this.o.pins.steer);
        this.dp = undefined;
        this.holders.clear();
        this.configured.clear();
        this.o.logger.info({ datapath: 'steer' }, 'sk_lookup steering detached: no listener has extra ports');
      }
      return errors;
    }
    const dp = this.dp;
    if (!dp) throw new Error('steering is not attached; call prepare(true) first');
    const wantSlots = new Set(wants.map((w) => w.slot));
    // Slots nobody wants any more: their ports and sockets go.
    const inMap = new Set(dp.ports.entries().map((e) => e.value.slot));
    for (const slot of new Set([...inMap, ...this.holders.keys()])) {
      if (wantSlots.has(slot)) continue;
      dp.removeListener(slot);
      this.holders.delete(slot);
    }
    // Two passes so that a port moving from one listener to another is released first: drop
    // every entry of a wanted slot that is not wanted as it is (other port or other address).
    const byName = new Map(wants.map((w) => [w.slot, w]));
    for (const e of dp.ports.entries()) {
      const w = byName.get(e.value.slot);
      if (!w) continue;
      const addr = isWildcard(w.address) ? new Uint8Array(16) : ipToBytes(w.address);
      const sameAddr = Buffer.compare(Buffer.from(e.key.addr), Buffer.from(addr)) === 0;
      if (!sameAddr || !w.ports.some((r) => e.key.port >= r.start && e.key.port <= r.end)) dp.ports.delete(e.key);
    }
    const next = new Map<string, number>();
    for (const w of wants) {
      try {
        dp.setPorts(w.slot, specs(w.ports), isWildcard(w.address) ? {} : { address: w.address });
        next.set(w.name, w.slot);
        if (this.configured.get(w.name) !== w.slot) this.o.logger.info({ datapath: 'steer', listener: w.name, slot: w.slot, ports: specs(w.ports) }, 'sk_lookup steers the listener ports');
        const fd = this.sockets.get(w.name);
        if (fd !== undefined && this.holders.get(w.slot)?.fd !== fd) this.place(w.name, w.slot, fd);
      } catch (e) {
        dp.setPorts(w.slot, []);
        errors.set(w.name, `listener "${w.name}": its ports cannot be steered with sk_lookup: ${(e as Error).message}`);
      }
    }
    this.configured = next;
    return errors;
  }

  /** The proxy's listening socket of a listener (its `listening` hook). */
  listening(name: string, fd: number): void {
    this.sockets.set(name, fd);
    const slot = this.configured.get(name);
    if (slot !== undefined && this.dp) this.place(name, slot, fd);
  }

  /** The proxy closed a listener's socket (its `closed` hook). */
  closed(name: string): void {
    this.sockets.delete(name);
    for (const [slot, h] of this.holders) {
      if (h.name !== name) continue;
      this.holders.delete(slot);
      try {
        this.dp?.socks.delete(U32.encode({ v: slot }));
      } catch (e) {
        // The kernel takes a socket out of a SOCKMAP when it closes, which it just did: an empty
        // slot answers EINVAL (ENOENT on some kernels). Anything else is a real failure.
        if (!(e instanceof BpfError) || (e.errno !== constants.errno.EINVAL && e.errno !== constants.errno.ENOENT)) throw e;
      }
    }
  }

  private place(name: string, slot: number, fd: number): void {
    this.dp!.setListener(slot, fd);
    this.holders.set(slot, { name, fd });
  }

  counters(): SteerCounters | undefined {
    return this.dp?.counters();
  }

  release(): void {
    this.dp?.release();
    this.dp = undefined;
  }

  detach(): void {
    if (this.dp) this.dp.detach();
    else SteerDatapath.detachPinned(this.o.pins.steer);
    this.dp = undefined;
  }
}
