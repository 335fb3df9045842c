// XDP drop rules on one interface (bpf/firewall.bpf.c): maps pinned under
// <root>/firewall/<ifname>/, the program attached through a pinned XDP link. Rules are CIDRs
// (IPv4 or IPv6) of source addresses, optionally scoped to destination ports; each rule has a
// per-CPU counter of the packets and bytes it dropped. Everything else passes untouched.
import { join } from 'node:path';
import { bytesToIp, isV4Mapped, parseCidr, V4_MAPPED_PREFIX, type Cidr } from './ip-bytes.js';
import { FW_PORT_BITS, FwCounter, FwKey, FwRule, FwStats } from './layout-fw.js';
import { attachPinned, detachPinnedLink, type AttachedLink } from './link.js';
import { PerCpuMap, TypedMap } from './map.js';
import { ifIndex, withNetns } from './netns.js';
import { BpfObject } from './object.js';
import { bpfObjectPath } from './objects.js';
import { removePinTree, type PinLayout } from './pins.js';
import { U32, type ValueOf } from './struct-codec.js';

const LINK = 'link_xdp';

export type FirewallCounters = ValueOf<typeof FwStats>;

export interface DropRule {
  /** Source addresses to drop, e.g. 192.168.3.0/24 or fd00::/64. */
  cidr: string;
  /** Destination ports the rule is limited to (none: every port and non-TCP/UDP traffic). */
  ports?: readonly number[];
}

export interface RuleCount {
  rule: DropRule;
  packets: bigint;
  bytes: bigint;
}

/** The LPM entries of a rule set; pure, so it can be checked without a kernel. */
export function ruleEntries(rules: readonly DropRule[]): Array<{ key: ValueOf<typeof FwKey>; index: number }> {
  const out: Array<{ key: ValueOf<typeof FwKey>; index: number }> = [];
  const seen = new Map<string, number>();
  rules.forEach((rule, index) => {
    let cidr: Cidr;
    try {
      cidr = parseCidr(rule.cidr);
    } catch (e) {
      throw new Error(`drop rule ${index + 1}: ${(e as Error).message}`);
    }
    const ports = rule.ports && rule.ports.length > 0 ? rule.ports : [0];
    for (const port of ports) {
      if (port !== 0 && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new Error(`drop rule ${index + 1} (${rule.cidr}): port ${port} is not 1-65535`);
      const id = `${Buffer.from(cidr.addr).toString('hex')}/${cidr.prefixLen}:${port}`;
      const earlier = seen.get(id);
      if (earlier !== undefined) throw new Error(`drop rule ${index + 1} (${rule.cidr}${port ? ` port ${port}` : ''}) repeats rule ${earlier + 1}`);
      seen.set(id, index);
      out.push({ key: { prefixlen: FW_PORT_BITS + cidr.prefixLen, port_be: port, addr: cidr.addr }, index });
    }
  });
  return out;
}

export interface FirewallOptions {
  pins: PinLayout;
  ifname: string;
  /** Network namespace of the interface (default: this process's). */
  netns?: string;
  capacity?: { rules?: number };
  objectPath?: string;
}

export class FirewallDatapath {
  private current: DropRule[] = [];

  private constructor(
    readonly object: BpfObject,
    readonly rules: TypedMap<ValueOf<typeof FwKey>, ValueOf<typeof FwRule>>,
    readonly ruleCounters: PerCpuMap<ValueOf<typeof U32>, ValueOf<typeof FwCounter>>,
    readonly stats: PerCpuMap<ValueOf<typeof U32>, FirewallCounters>,
    readonly link: AttachedLink,
    readonly dir: string,
    readonly ifname: string,
  ) {}

  static attach(opts: FirewallOptions): FirewallDatapath {
    const dir = opts.pins.firewall(opts.ifname);
    const maxEntries: Record<string, number> = {};
    if (opts.capacity?.rules) Object.assign(maxEntries, { fw_rules: opts.capacity.rules, fw_counters: opts.capacity.rules });
    const obj = BpfObject.load(opts.objectPath ?? bpfObjectPath('firewall'), { pinDir: dir, maxEntries });
    try {
      const link = withNetns(opts.netns, () => {
        const ifindex = ifIndex(opts.ifname);
        return attachPinned(obj.program('exds_firewall'), { kind: 'xdp', ifindex, ifname: opts.ifname }, join(dir, LINK));
      });
      const fw = new FirewallDatapath(
        obj,
        new TypedMap(obj.map('fw_rules'), FwKey, FwRule),
        new PerCpuMap(obj.map('fw_counters'), U32, FwCounter),
        new PerCpuMap(obj.map('fw_stats'), U32, FwStats),
        link,
        dir,
        opts.ifname,
      );
      fw.current = fw.readRules();
      return fw;
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  /**
   * Replaces the rule set. Invalid rules throw before anything changes. A rule that keeps its
   * position keeps its counter; changed positions start from zero.
   */
  setRules(rules: readonly DropRule[]): void {
    const entries = ruleEntries(rules);
    const max = this.ruleCounters.raw.meta.maxEntries;
    if (rules.length > max) throw new Error(`${rules.length} drop rules do not fit the ${max} slots of fw_counters; raise capacity.rules`);
    const same = (a: DropRule | undefined, b: DropRule) => !!a && a.cidr === b.cidr && (a.ports ?? []).join() === (b.ports ?? []).join();
    const zero = { packets: 0n, bytes: 0n };
    rules.forEach((r, i) => {
      if (!same(this.current[i], r)) this.ruleCounters.updateAll({ v: i }, zero);
    });
    const wanted = new Map(entries.map((e) => [keyId(e.key), e]));
    for (const k of this.rules.keys()) if (!wanted.has(keyId(k))) this.rules.delete(k);
    for (const e of entries) this.rules.update(e.key, { index: e.index });
    this.current = rules.map((r) => ({ cidr: r.cidr, ...(r.ports ? { ports: [...r.ports] } : {}) }));
  }

  /** The rule set as the maps hold it (after a restart: what an earlier agent left). */
  private readRules(): DropRule[] {
    const byIndex = new Map<number, DropRule>();
    for (const { key, value } of this.rules.entries()) {
      const bits = key.prefixlen - FW_PORT_BITS;
      const cidr = isV4Mapped(key.addr) && bits >= V4_MAPPED_PREFIX ? `${bytesToIp(key.addr)}/${bits - V4_MAPPED_PREFIX}` : `${bytesToIp(key.addr)}/${bits}`;
      const r = byIndex.get(value.index) ?? { cidr };
      if (key.port_be !== 0) r.ports = [...(r.ports ?? []), key.port_be].sort((a, b) => a - b);
      byIndex.set(value.index, r);
    }
    return [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([, r]) => r);
  }

  counts(): RuleCount[] {
    return this.current.map((rule, i) => {
      const c = this.ruleCounters.lookupSum({ v: i }) ?? { packets: 0n, bytes: 0n };
      return { rule, packets: c.packets, bytes: c.bytes };
    });
  }

  counters(): FirewallCounters {
    const v = this.stats.lookupSum({ v: 0 });
    if (!v) throw new Error('fw_stats has no element 0');
    return v;
  }

  release(): void {
    this.link.release();
    this.object.close();
  }

  detach(): void {
    this.link.detach();
    this.object.close();
    FirewallDatapath.detachPinned(this.dir);
  }

  static detachPinned(dir: string): void {
    detachPinnedLink(join(dir, LINK));
    removePinTree(dir);
  }
}

function keyId(k: ValueOf<typeof FwKey>): string {
  return `${k.prefixlen}:${k.port_be}:${Buffer.from(k.addr).toString('hex')}`;
}
