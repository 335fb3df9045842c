// Pure matching of a listener's drop rules (its RBAC DENY policies, docs/config.md "Drop rules")
// against an accepted connection: the TCP peer address (direct_remote_ip) and the destination
// port. The XDP firewall drops these packets before they reach a socket; the proxy applies the
// same rules in user space, as Envoy's RBAC filter does, so a listener without the firewall
// attached (or a packet that got past it during an update) still denies them.
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { DesiredDropRule, PortRange } from '../desired-state.js';

export interface DenyMatcher {
  /** The name of the first rule that denies this peer on this port, or undefined. */
  match(remoteAddress: string, localPort: number): string | undefined;
  readonly size: number;
}

interface CompiledRule {
  name: string;
  list: BlockList;
  ports: readonly PortRange[];
}

/** Throws, naming the rule, when a CIDR does not parse. */
export function buildDenyMatcher(rules: readonly DesiredDropRule[]): DenyMatcher {
  const compiled: CompiledRule[] = rules.map((rule) => {
    const [addr, lenText] = rule.cidr.split('/');
    const family = addr && isIPv4(addr) ? 'ipv4' : addr && isIPv6(addr) ? 'ipv6' : undefined;
    const prefix = Number(lenText);
    if (!family || lenText === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 'ipv4' ? 32 : 128)) {
      throw new Error(`drop rule "${rule.name}": "${rule.cidr}" is not a CIDR (want e.g. 192.168.3.0/24 or 2001:db8::/32)`);
    }
    const list = new BlockList();
    list.addSubnet(addr!, prefix, family);
    return { name: rule.name, list, ports: rule.ports };
  });
  return {
    size: compiled.length,
    match(remoteAddress, localPort) {
      if (compiled.length === 0) return undefined;
      const peer = unmapV4(remoteAddress);
      const family = isIPv4(peer) ? 'ipv4' : 'ipv6';
      for (const r of compiled) {
        if (r.ports.length > 0 && !r.ports.some((p) => localPort >= p.start && localPort <= p.end)) continue;
        if (r.list.check(peer, family)) return r.name;
      }
      return undefined;
    },
  };
}

/** "::ffff:10.1.2.3" (an IPv4 peer on a dual-stack socket) → "10.1.2.3". */
export function unmapV4(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}
