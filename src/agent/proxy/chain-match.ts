// Pure filter chain selection by server name, as Envoy's FilterChainMatch.server_names does
// (listener_components.proto, "FilterChainMatch"): an exact name wins; otherwise the wildcard
// with the longest suffix ("www.a.test" tries "*.a.test", then "*.test"); otherwise the chain
// without server_names. A wildcard matches any depth below its suffix but not the suffix itself.

export interface NamedChain {
  /** Empty: the default chain, which also takes clients without a server name. */
  serverNames: readonly string[];
}

export interface ChainMatcher<C extends NamedChain> {
  /** The chain for this server name (undefined for non-TLS or SNI-less clients); undefined when no chain matches and there is no default. */
  match(serverName: string | undefined): C | undefined;
  readonly defaultChain: C | undefined;
}

export function buildChainMatcher<C extends NamedChain>(chains: readonly C[]): ChainMatcher<C> {
  const exact = new Map<string, C>();
  const wildcard = new Map<string, C>(); // key: suffix without "*", e.g. ".a.test"
  let defaultChain: C | undefined;
  for (const chain of chains) {
    if (chain.serverNames.length === 0) {
      // Envoy refuses two chains with the same (empty) match; the first one wins here.
      defaultChain ??= chain;
      continue;
    }
    for (const raw of chain.serverNames) {
      const name = normalizeName(raw);
      if (name.startsWith('*.')) {
        if (!wildcard.has(name.slice(1))) wildcard.set(name.slice(1), chain);
      } else if (!exact.has(name)) {
        exact.set(name, chain);
      }
    }
  }
  return {
    defaultChain,
    match(serverName) {
      if (serverName !== undefined && serverName.length > 0) {
        const name = normalizeName(serverName);
        const hit = exact.get(name);
        if (hit) return hit;
        if (wildcard.size > 0) {
          // Longest suffix first: drop one leading label at a time.
          for (let dot = name.indexOf('.'); dot >= 0; dot = name.indexOf('.', dot + 1)) {
            const w = wildcard.get(name.slice(dot));
            if (w) return w;
          }
        }
      }
      return defaultChain;
    },
  };
}

function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
