// The embedded splice proxy: serves the DesiredState's listeners with Envoy tcp_proxy semantics
// (a subset; docs/proxy.md) and hands connected pairs to the kernel through SpliceHooks. The
// agent drives it: apply() converges to a new state, stats() feeds status and metrics.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { DesiredCluster, DesiredListener, DesiredState } from '../desired-state.js';
import { agentMetrics, type AgentMetrics } from '../metrics.js';
import { ClusterRuntime, type ClusterStats } from './cluster.js';
import type { SpliceHooks } from './handoff.js';
import { MAGLEV_DEFAULT_TABLE_SIZE } from './lb-maglev.js';
import type { Rng } from './lb.js';
import { ProxyListener, type ListenerStats } from './listener.js';
import { DEFAULT_INSPECT_TIMEOUT_MS } from './sni-inspect.js';

export type { HandoffContext, SpliceHooks, SpliceOutcome, SplicePath, SpliceResult, XdpHandoffContext } from './handoff.js';
export type { ClusterStats, EndpointStats } from './cluster.js';
export type { ListenerStats } from './listener.js';

/** error names the listener, the reason and the remedy. */
export interface ListenerApplyResult {
  name: string;
  ok: boolean;
  error?: string;
}

export interface ProxyStats {
  listeners: ListenerStats[];
  clusters: ClusterStats[];
}

export interface EmbeddedProxyOptions {
  logger: Logger;
  registry: Registry;
  hooks?: SpliceHooks;
  /** Lower bound on connect timeouts (a cluster's connect_timeout below it is raised to it). Default 1 ms. */
  connectTimeoutFloorMs?: number;
  /** TLS inspection timeout (Envoy's listener_filters_timeout), default 15 s. */
  inspectTimeoutMs?: number;
  /** Envoy's healthy_panic_threshold in percent, default 50; 0 disables panic mode. */
  panicThresholdPercent?: number;
  /** Maglev table size (a prime), default 65537. */
  maglevTableSize?: number;
  /** Most ports bound one by one when no `listening` hook steers them (default 1024). */
  maxDirectPorts?: number;
  /** Bound on the random delay before an endpoint's first health check (default 1000 ms). */
  healthInitialJitterMs?: number;
  /** Random source for the load balancers and check jitter (tests pass a seeded one). */
  rng?: Rng;
}

export class EmbeddedProxy {
  private readonly listeners = new Map<string, ProxyListener>();
  private readonly clusters = new Map<string, ClusterRuntime>();
  private readonly metrics: AgentMetrics;
  private readonly log: Logger;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly opts: EmbeddedProxyOptions) {
    this.log = opts.logger.child({ component: 'proxy' });
    this.metrics = agentMetrics(opts.registry);
  }

  /**
   * Converges to `state`: opens new listeners, closes removed ones, updates chains and clusters
   * in place (existing connections continue), starts and stops health checks per cluster. One
   * bad listener never stops the others: the result says, per listener of `state`, whether it is
   * serving as configured. Calls are serialised.
   */
  apply(state: DesiredState): Promise<ListenerApplyResult[]> {
    const run = this.queue.then(() => this.applyNow(state));
    this.queue = run.catch(() => undefined);
    return run;
  }

  stats(): ProxyStats {
    return {
      listeners: [...this.listeners.values()].map((l) => l.stats()),
      clusters: [...this.clusters.values()].map((c) => c.stats()),
    };
  }

  /**
   * Stops listening and health checking. Accepted connections are left to finish unless
   * `destroyConnections` (kernel-spliced pairs keep flowing in the kernel either way).
   */
  async close(opts: { destroyConnections?: boolean } = {}): Promise<void> {
    this.closed = true;
    await this.queue;
    for (const l of this.listeners.values()) await l.close(opts.destroyConnections ?? false);
    this.listeners.clear();
    for (const c of this.clusters.values()) c.stop();
    this.clusters.clear();
  }

  private async applyNow(state: DesiredState): Promise<ListenerApplyResult[]> {
    if (this.closed) throw new Error('the embedded proxy is closed; create a new one');
    // Clusters first, so new listeners find theirs; removed clusters last.
    const wantClusters = new Map<string, DesiredCluster>();
    for (const c of state.clusters) {
      if (wantClusters.has(c.name)) this.log.warn({ cluster: c.name }, 'cluster appears twice in the desired state; using the first');
      else wantClusters.set(c.name, c);
    }
    for (const [name, c] of wantClusters) {
      const existing = this.clusters.get(name);
      if (existing) existing.update(c);
      else this.clusters.set(name, new ClusterRuntime(c, this.clusterDeps()));
    }

    const results: ListenerApplyResult[] = [];
    const seen = new Set<string>();
    for (const l of state.listeners) {
      if (seen.has(l.name)) {
        results.push({ name: l.name, ok: false, error: `listener "${l.name}" appears twice in the desired state; only the first is served` });
        continue;
      }
      seen.add(l.name);
      results.push(await this.applyListener(l));
    }
    for (const [name, l] of this.listeners) {
      if (seen.has(name)) continue;
      await l.close();
      this.listeners.delete(name);
      this.log.info({ listener: name }, 'listener removed');
    }
    for (const [name, c] of this.clusters) {
      if (wantClusters.has(name)) continue;
      c.stop();
      this.clusters.delete(name);
    }
    return results;
  }

  private async applyListener(l: DesiredListener): Promise<ListenerApplyResult> {
    const existing = this.listeners.get(l.name);
    try {
      if (existing) {
        await existing.update(l);
      } else {
        this.listeners.set(l.name, await ProxyListener.open(l, this.listenerDeps()));
      }
      this.log.info({ listener: l.name, address: l.address, ports: l.ports, chains: l.chains.length, mode: l.mode }, existing ? 'listener updated' : 'listener serving');
      return { name: l.name, ok: true };
    } catch (e) {
      const error = (e as Error).message;
      this.log.error({ listener: l.name, err: error }, existing ? 'listener update failed; the previous configuration stays in force' : 'listener could not be opened');
      return { name: l.name, ok: false, error };
    }
  }

  private clusterDeps() {
    return {
      logger: this.log,
      metrics: this.metrics,
      panicThresholdPercent: this.opts.panicThresholdPercent ?? 50,
      lbOptions: { ...(this.opts.rng ? { rng: this.opts.rng } : {}), maglevTableSize: this.opts.maglevTableSize ?? MAGLEV_DEFAULT_TABLE_SIZE },
      ...(this.opts.healthInitialJitterMs !== undefined ? { healthInitialJitterMs: this.opts.healthInitialJitterMs } : {}),
    };
  }

  private listenerDeps() {
    return {
      logger: this.log,
      metrics: this.metrics,
      hooks: this.opts.hooks ?? {},
      cluster: (name: string) => this.clusters.get(name),
      connectTimeoutFloorMs: this.opts.connectTimeoutFloorMs ?? 1,
      inspectTimeoutMs: this.opts.inspectTimeoutMs ?? DEFAULT_INSPECT_TIMEOUT_MS,
      maxDirectPorts: this.opts.maxDirectPorts ?? 1024,
    };
  }
}
