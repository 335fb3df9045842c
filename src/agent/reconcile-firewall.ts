// The XDP drop-rule part of the reconciler: compiling the listeners' drop rules (their RBAC DENY
// policies: a CIDR and destination ports) into one rule set per interface (pure), and a
// FirewallDatapath per interface holding exactly that set. An RBAC DENY applies to connections
// of its listener only, so a rule drops packets to the listener's ports, never to every port of
// the node. Interfaces where XDP splice owns the one XDP slot keep their rules in user space
// (the embedded proxy or Envoy enforces them); the result says so.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FirewallDatapath, type DropRule } from './bpf/datapath-firewall.js';
import type { PinLayout } from './bpf/pins.js';
import type { DesiredListener } from './desired-state.js';
import { interfacesForAddress, type NetInterface } from './interfaces.js';
import { expandRanges } from './reconcile-skb.js';

/** LPM entries the firewall holds per interface (EXDS_MAX_FW_RULES). */
export const FIREWALL_CAPACITY = 4096;

export interface CompiledRule {
  /** The RBAC policy name (the model's drop rule name); the metrics label. */
  name: string;
  cidr: string;
  /** Destination ports, ascending; never empty. */
  ports: number[];
}

export interface CompiledFirewall {
  /** Rule set per interface name, in a stable order (rule indexes keep their counters). */
  rules: Map<string, CompiledRule[]>;
  /** Interfaces whose rules stay in user space, with the reason. */
  userspaceOnly: Map<string, string>;
}

/**
 * Compiles drop rules per interface: a listener's rules go to the interfaces that hold its
 * address (every up interface but loopback for 0.0.0.0 and ::), limited to its ports.
 * `xdpOwned`: interfaces whose XDP slot belongs to XDP splice.
 */
export function compileDropRules(listeners: readonly DesiredListener[], ifaces: readonly NetInterface[], xdpOwned: ReadonlySet<string>): CompiledFirewall {
  const merged = new Map<string, Map<string, CompiledRule>>();
  const userspaceOnly = new Map<string, string>();
  for (const l of listeners) {
    if (l.dropRules.length === 0) continue;
    const listenerPorts = expandRanges(l.ports);
    for (const iface of interfacesForAddress(l.address, ifaces)) {
      if (xdpOwned.has(iface.name)) {
        userspaceOnly.set(iface.name, `XDP splice owns the XDP slot of "${iface.name}"; its drop rules are enforced in user space (proxy or Envoy)`);
        continue;
      }
      const set = merged.get(iface.name) ?? new Map<string, CompiledRule>();
      merged.set(iface.name, set);
      for (const r of l.dropRules) {
        const ports = r.ports.length === 0 ? listenerPorts : expandRanges(r.ports).filter((p) => listenerPorts.includes(p));
        if (ports.length === 0) continue;
        const key = `${r.name}|${r.cidr}`;
        const cur = set.get(key) ?? { name: r.name, cidr: r.cidr, ports: [] };
        cur.ports = [...new Set([...cur.ports, ...ports])].sort((a, b) => a - b);
        set.set(key, cur);
      }
    }
  }
  const rules = new Map<string, CompiledRule[]>();
  for (const [iface, set] of merged) {
    // A (CIDR, port) pair is one LPM entry: the first rule in order keeps it.
    const sorted = [...set.values()].sort((a, b) => a.name.localeCompare(b.name) || a.cidr.localeCompare(b.cidr));
    const claimed = new Set<string>();
    const out: CompiledRule[] = [];
    for (const r of sorted) {
      const ports = r.ports.filter((p) => !claimed.has(`${r.cidr}|${p}`));
      for (const p of ports) claimed.add(`${r.cidr}|${p}`);
      if (ports.length > 0) out.push({ ...r, ports });
    }
    if (out.length > 0) rules.set(iface, out);
  }
  return { rules, userspaceOnly };
}

export interface RuleCounts {
  interface: string;
  rule: string;
  packets: bigint;
  bytes: bigint;
}

export class FirewallReconciler {
  private readonly attached = new Map<string, { dp: FirewallDatapath; rules: CompiledRule[] }>();

  constructor(private readonly o: { pins: PinLayout; logger: Logger }) {}

  get interfaces(): string[] {
    return [...this.attached.keys()].sort();
  }

  /** Makes the XDP drop rules exactly `rules`; returns an error per interface that failed. */
  ensure(rules: ReadonlyMap<string, readonly CompiledRule[]>, present: ReadonlySet<string>): Map<string, string> {
    const log = this.o.logger;
    const errors = new Map<string, string>();
    // Gone first: an interface moving to XDP splice must give up its XDP slot before that attaches.
    const base = join(this.o.pins.root, 'firewall');
    const pinned = existsSync(base) ? readdirSync(base, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name) : [];
    for (const i of new Set([...pinned, ...this.attached.keys()])) {
      if (rules.has(i) && present.has(i)) continue;
      const a = this.attached.get(i);
      if (a) a.dp.detach();
      else FirewallDatapath.detachPinned(this.o.pins.firewall(i));
      this.attached.delete(i);
      log.info({ datapath: 'firewall', interface: i }, 'XDP drop rules detached from the interface');
    }
    for (const [iface, want] of rules) {
      if (!present.has(iface)) continue;
      const entries = want.reduce((n, r) => n + r.ports.length, 0);
      if (entries > FIREWALL_CAPACITY) {
        errors.set(iface, `drop rules on "${iface}" need ${entries} XDP entries (CIDR × port), more than the ${FIREWALL_CAPACITY} the firewall holds; they are enforced in user space only`);
        continue;
      }
      let a = this.attached.get(iface);
      if (!a) {
        try {
          const dp = FirewallDatapath.attach({ pins: this.o.pins, ifname: iface });
          a = { dp, rules: [] };
          this.attached.set(iface, a);
          log.info({ datapath: 'firewall', interface: iface, adopted: dp.link.adopted }, dp.link.adopted ? 'XDP drop rules adopted from their pins' : 'XDP drop rules attached');
        } catch (e) {
          errors.set(iface, `XDP drop rules could not be attached to "${iface}" (they are enforced in user space only): ${(e as Error).message}`);
          continue;
        }
      }
      if (sameRules(a.rules, want)) continue;
      try {
        a.dp.setRules(want.map((r): DropRule => ({ cidr: r.cidr, ports: r.ports })));
        a.rules = [...want];
        log.info({ datapath: 'firewall', interface: iface, rules: want.map((r) => ({ name: r.name, cidr: r.cidr, ports: r.ports.length })) }, 'XDP drop rules updated');
      } catch (e) {
        errors.set(iface, `XDP drop rules on "${iface}" could not be set (the previous ones stay): ${(e as Error).message}`);
      }
    }
    return errors;
  }

  /** Packets and bytes dropped per interface and rule name (summed over the rule's CIDRs). */
  counts(): RuleCounts[] {
    const out = new Map<string, RuleCounts>();
    for (const [iface, a] of this.attached) {
      a.dp.counts().forEach((c, i) => {
        const name = a.rules[i]?.name ?? c.rule.cidr;
        const key = `${iface}|${name}`;
        const cur = out.get(key) ?? { interface: iface, rule: name, packets: 0n, bytes: 0n };
        cur.packets += c.packets;
        cur.bytes += c.bytes;
        out.set(key, cur);
      });
    }
    return [...out.values()];
  }

  release(): void {
    for (const a of this.attached.values()) a.dp.release();
    this.attached.clear();
  }

  detach(): void {
    for (const a of this.attached.values()) a.dp.detach();
    this.attached.clear();
    const base = join(this.o.pins.root, 'firewall');
    if (existsSync(base)) for (const e of readdirSync(base)) FirewallDatapath.detachPinned(this.o.pins.firewall(e));
  }
}

function sameRules(a: readonly CompiledRule[], b: readonly CompiledRule[]): boolean {
  return a.length === b.length && a.every((r, i) => r.name === b[i]!.name && r.cidr === b[i]!.cidr && r.ports.join() === b[i]!.ports.join());
}
