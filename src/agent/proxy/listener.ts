// A listener of the embedded proxy: the listening sockets of one DesiredListener and the
// configuration new connections use. Updates swap the chains, drop rules and ports in place;
// connections already accepted keep the configuration they started with.
import net from 'node:net';
import type { DesiredListener, PortRange } from '../desired-state.js';
import { buildChainMatcher } from './chain-match.js';
import { serveConnection, type ConnectionDeps, type ListenerCounters, type ListenerSnapshot } from './connection.js';
import { buildDenyMatcher } from './deny-match.js';

export interface ListenerDeps extends ConnectionDeps {
  /** Most ports bound one by one when no sk_lookup hook steers them (default 1024). */
  maxDirectPorts: number;
}

export interface ListenerStats extends ListenerCounters {
  name: string;
  address: string;
  ports: PortRange[];
  /** Ports this process has a listening socket on (the rest arrive through sk_lookup). */
  bound: number[];
}

/**
 * The ports to bind: with sk_lookup steering (a `listening` hook), only ports[0].start; without
 * it, every port of every range, up to maxDirectPorts.
 */
export function portsToBind(l: DesiredListener, steered: boolean, maxDirectPorts: number): number[] {
  if (l.ports.length === 0) throw new Error(`listener "${l.name}": no ports to listen on`);
  let total = 0;
  for (const r of l.ports) {
    if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start < 1 || r.end > 65535 || r.start > r.end) {
      throw new Error(`listener "${l.name}": port range ${r.start}-${r.end} is not within 1-65535 in order`);
    }
    total += r.end - r.start + 1;
  }
  if (steered) return [l.ports[0]!.start];
  if (total > maxDirectPorts) {
    throw new Error(
      `listener "${l.name}": ${total} ports (ranges ${l.ports.map((r) => (r.start === r.end ? r.start : `${r.start}-${r.end}`)).join(', ')}) need sk_lookup steering, ` +
        `which is not available to this proxy; without it at most ${maxDirectPorts} ports are bound one by one. Run the agent with its BPF datapath, or use fewer ports`,
    );
  }
  const out = new Set<number>();
  for (const r of l.ports) for (let p = r.start; p <= r.end; p++) out.add(p);
  return [...out];
}

function listenError(name: string, address: string, port: number, e: NodeJS.ErrnoException): Error {
  switch (e.code) {
    case 'EADDRINUSE':
      return new Error(`listener "${name}": port ${port} on ${address} is in use (EADDRINUSE); stop what holds it or change the listener's port`);
    case 'EADDRNOTAVAIL':
      return new Error(`listener "${name}": address ${address} is not configured on this node (EADDRNOTAVAIL); add it to an interface or listen on 0.0.0.0 / ::`);
    case 'EACCES':
      return new Error(`listener "${name}": binding port ${port} on ${address} was refused (EACCES); the agent needs CAP_NET_BIND_SERVICE for ports below 1024`);
    default:
      return new Error(`listener "${name}": cannot listen on ${address} port ${port}: ${e.code ?? ''} ${e.message}`.trim());
  }
}

export class ProxyListener {
  readonly counters: ListenerCounters = { accepted: 0, active: 0, denied: 0, rejected: 0, fallbacks: 0, byPath: { xdp: 0, skb: 0, userspace: 0 } };
  private servers = new Map<number, net.Server>();
  private address = '';
  private snapshot!: ListenerSnapshot;
  private config!: DesiredListener;
  private readonly downstreams = new Set<net.Socket>();
  private closed = false;

  private constructor(private readonly deps: ListenerDeps) {}

  /** Binds and starts serving; throws an error naming the listener, the reason and the remedy. */
  static async open(config: DesiredListener, deps: ListenerDeps): Promise<ProxyListener> {
    const l = new ProxyListener(deps);
    try {
      await l.update(config);
    } catch (e) {
      await l.close(true);
      throw e;
    }
    return l;
  }

  get name(): string {
    return this.config.name;
  }

  /**
   * Applies a new configuration. On failure nothing changes (the old sockets and configuration
   * stay in force) and the error says why.
   */
  async update(next: DesiredListener): Promise<void> {
    const steered = this.deps.hooks.listening !== undefined;
    const want = portsToBind(next, steered, this.deps.maxDirectPorts);
    const deny = buildDenyMatcher(next.dropRules);
    const chains = buildChainMatcher(next.chains);
    if (next.chains.length === 0) throw new Error(`listener "${next.name}": no filter chains; it needs routes or a fallback cluster`);

    const sameAddress = next.address === this.address;
    const keep = new Set(sameAddress ? want.filter((p) => this.servers.has(p)) : []);
    const toOpen = want.filter((p) => !keep.has(p));
    const toClose = [...this.servers.keys()].filter((p) => !keep.has(p));
    const oldPrimary = this.primary();

    let opened: Map<number, net.Server>;
    try {
      opened = await this.openAll(next.name, next.address, toOpen);
    } catch (e) {
      if (sameAddress || toClose.length === 0 || !/EADDRINUSE/.test((e as Error).message)) throw e;
      // The new address overlaps the old one (0.0.0.0 → 10.0.0.1 on the same port): release the
      // old sockets and try again; if that fails too, bring the old ones back.
      const oldAddress = this.address;
      await this.closeServers(toClose);
      try {
        opened = await this.openAll(next.name, next.address, toOpen);
      } catch (e2) {
        try {
          const restored = await this.openAll(this.config.name, oldAddress, toClose);
          for (const [p, s] of restored) this.servers.set(p, s);
        } catch (e3) {
          throw new Error(`${(e2 as Error).message}; restoring the previous sockets failed too: ${(e3 as Error).message}`);
        }
        throw e2;
      }
    }
    await this.closeServers(toClose.filter((p) => this.servers.has(p)));
    for (const [p, s] of opened) this.servers.set(p, s);
    this.address = next.address;
    this.config = next;
    this.snapshot = { name: next.name, counts: this.deps.metrics.listenerCounts(next.name), sniInspection: next.sniInspection, chains, deny, ...(next.interface ? { interface: next.interface } : {}) };

    const primary = this.primary();
    if (steered && primary !== oldPrimary) {
      try {
        if (oldPrimary) await this.deps.hooks.closed?.(next.name);
        if (primary) await this.deps.hooks.listening!(next.name, primary);
      } catch (e) {
        throw new Error(`listener "${next.name}": steering its ports to the socket on port ${next.ports[0]!.start} failed (sk_lookup): ${(e as Error).message}`);
      }
    }
  }

  stats(): ListenerStats {
    return { name: this.config.name, address: this.address, ports: this.config.ports, bound: [...this.servers.keys()].sort((a, b) => a - b), ...this.counters, byPath: { ...this.counters.byPath } };
  }

  /** Stops listening; accepted connections go on unless `destroyConnections`. */
  async close(destroyConnections = false): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const hadPrimary = this.primary() !== undefined;
    await this.closeServers([...this.servers.keys()]);
    if (hadPrimary && this.deps.hooks.listening) {
      try {
        await this.deps.hooks.closed?.(this.config.name);
      } catch (e) {
        this.deps.logger.error({ listener: this.config.name, err: e }, 'the closed hook failed; the sk_lookup steering may still point at the closed socket');
      }
    }
    if (destroyConnections) for (const s of this.downstreams) s.destroy();
  }

  private primary(): net.Server | undefined {
    const first = this.config?.ports[0]?.start;
    return first === undefined ? undefined : this.servers.get(first);
  }

  private async openAll(name: string, address: string, ports: readonly number[]): Promise<Map<number, net.Server>> {
    const opened = new Map<number, net.Server>();
    try {
      for (const port of ports) opened.set(port, await this.listen(name, address, port));
    } catch (e) {
      await Promise.all([...opened.values()].map((s) => closeServer(s)));
      throw e;
    }
    return opened;
  }

  private listen(name: string, address: string, port: number): Promise<net.Server> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => this.accept(sock));
    return new Promise<net.Server>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(listenError(name, address, port, e)));
      // Envoy binds :: with IPV6_V6ONLY: 0.0.0.0 and :: are separate listeners (docs/config.md).
      server.listen({ host: address, port, ipv6Only: net.isIPv6(address) }, () => {
        server.removeAllListeners('error');
        server.on('error', (e) => this.deps.logger.error({ listener: name, port, err: e }, 'listening socket failed'));
        resolve(server);
      });
    });
  }

  private async closeServers(ports: readonly number[]): Promise<void> {
    const servers = ports.map((p) => this.servers.get(p)).filter((s): s is net.Server => s !== undefined);
    for (const p of ports) this.servers.delete(p);
    await Promise.all(servers.map((s) => closeServer(s)));
  }

  private accept(sock: net.Socket): void {
    this.downstreams.add(sock);
    void serveConnection(sock, this.snapshot, this.counters, this.deps, () => this.downstreams.delete(sock));
  }
}

/** Stops accepting; resolves at once (net.Server.close waits for every connection otherwise). */
function closeServer(s: net.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!s.listening) return resolve();
    s.close();
    // close() keeps its callback until all connections end; the socket is closed right away.
    setImmediate(resolve);
  });
}
