// A cluster as the embedded proxy runs it: its endpoints with their CLA health, active health
// check state and connection counts, the host set chosen by Envoy's health/panic rules, and the
// load balancer built over that set (rebuilt only when the set changes).
import type { Logger } from 'pino';
import type { DesiredCluster, EndpointHealth } from '../desired-state.js';
import { TcpHealthChecker, type HealthTransition } from '../health.js';
import type { AgentMetrics, EndpointCounts } from '../metrics.js';
import type { UpstreamTarget } from './connect.js';
import { createLoadBalancer, hostKey, hostSetSignature, selectHostSet, type ActiveHealth, type HostSet, type LbOptions, type LoadBalancer } from './lb.js';

export interface EndpointStats {
  key: string;
  address: string;
  port: number;
  weight: number;
  /** Health status from the ClusterLoadAssignment. */
  edsHealth: EndpointHealth;
  /** Active health check state ('unchecked' without a health check). */
  activeHealth: ActiveHealth;
  /** In the host set the load balancer picks from now. */
  inHostSet: boolean;
  /** Connections open to it now (including connect attempts in progress). */
  activeConnections: number;
  /** Times the load balancer chose it. */
  selected: number;
}

export interface ClusterStats {
  name: string;
  lbPolicy: string;
  /** healthy, degraded, panic or none (see lb.ts selectHostSet). */
  tier: string;
  healthPercent: number;
  healthChecked: boolean;
  endpoints: EndpointStats[];
}

interface EndpointRuntime {
  key: string;
  address: string;
  port: number;
  weight: number;
  eds: EndpointHealth;
  active: number;
  selected: number;
  /** exds_proxy_upstream_selected_total of this endpoint (kept across config updates). */
  picks: EndpointCounts;
}

export interface ClusterDeps {
  logger: Logger;
  metrics: AgentMetrics;
  /** Envoy's healthy_panic_threshold in percent (default 50; 0 disables panic). */
  panicThresholdPercent: number;
  lbOptions: Omit<LbOptions, 'activeRequests'>;
  /** Bound on the random delay before an endpoint's first health check. */
  healthInitialJitterMs?: number;
}

export class ClusterRuntime {
  private config: DesiredCluster;
  private endpoints = new Map<string, EndpointRuntime>();
  private checker: TcpHealthChecker | undefined;
  private hostSet: HostSet | undefined;
  private lb: LoadBalancer | undefined;
  private lbSignature = '';
  private readonly log: Logger;

  constructor(
    config: DesiredCluster,
    private readonly deps: ClusterDeps,
  ) {
    this.config = config;
    this.log = deps.logger.child({ cluster: config.name });
    this.update(config);
  }

  get name(): string {
    return this.config.name;
  }

  get connectTimeoutMs(): number {
    return this.config.connectTimeoutMs;
  }

  /** The policy picks by the client's address hash (maglev, ring_hash); others ignore it. */
  get hashesSource(): boolean {
    return this.config.lbPolicy === 'maglev' || this.config.lbPolicy === 'ring_hash';
  }

  /** Takes a new cluster config (CDS) and endpoint list (EDS); kept endpoints keep their state. */
  update(config: DesiredCluster): void {
    const policyChanged = config.lbPolicy !== this.config.lbPolicy;
    this.config = config;
    const next = new Map<string, EndpointRuntime>();
    for (const e of config.endpoints) {
      const key = hostKey(e.address, e.port);
      const old = this.endpoints.get(key);
      next.set(key, { key, address: e.address, port: e.port, weight: Math.max(1, e.weight), eds: e.health, active: old?.active ?? 0, selected: old?.selected ?? 0, picks: old?.picks ?? this.deps.metrics.endpointCounts(config.name, key) });
    }
    for (const key of this.endpoints.keys()) if (!next.has(key)) this.deps.metrics.health.endpointHealthy.remove({ cluster: config.name, endpoint: key });
    this.endpoints = next;

    if (config.healthCheck) {
      if (!this.checker) {
        this.checker = new TcpHealthChecker({
          cluster: config.name,
          config: config.healthCheck,
          logger: this.deps.logger,
          metrics: this.deps.metrics.health,
          onTransition: (t) => this.onTransition(t),
          ...(this.deps.healthInitialJitterMs !== undefined ? { initialJitterMs: this.deps.healthInitialJitterMs } : {}),
          ...(this.deps.lbOptions.rng ? { rng: this.deps.lbOptions.rng } : {}),
        });
      } else {
        this.checker.setConfig(config.healthCheck);
      }
      this.checker.setTargets([...next.values()].map((e) => ({ key: e.key, address: e.address, port: e.port })));
    } else if (this.checker) {
      this.checker.stop();
      this.checker = undefined;
    }
    if (policyChanged) this.lbSignature = '';
    this.refresh();
  }

  /** Picks an endpoint for a connect attempt, avoiding `tried` while others remain. */
  pick(hash: number | undefined, tried: ReadonlySet<string>): UpstreamTarget | undefined {
    if (!this.lb) return undefined;
    const h = this.lb.pick({ ...(hash !== undefined ? { hash } : {}), exclude: tried });
    if (!h) return undefined;
    const e = this.endpoints.get(h.key);
    if (e) {
      e.selected++;
      e.picks.selected++;
    } else {
      this.deps.metrics.endpointCounts(this.config.name, h.key).selected++;
    }
    return { key: h.key, address: h.address, port: h.port };
  }

  /** Connection accounting for least_request and stats; call end once per begin. */
  begin(key: string): void {
    const e = this.endpoints.get(key);
    if (e) e.active++;
  }

  end(key: string): void {
    const e = this.endpoints.get(key);
    if (e && e.active > 0) e.active--;
  }

  get tier(): string {
    return this.hostSet?.tier ?? 'none';
  }

  stats(): ClusterStats {
    const inSet = new Set(this.hostSet?.hosts.map((h) => h.key));
    return {
      name: this.config.name,
      lbPolicy: this.config.lbPolicy,
      tier: this.hostSet?.tier ?? 'none',
      healthPercent: Math.round((this.hostSet?.healthPercent ?? 0) * 10) / 10,
      healthChecked: this.checker !== undefined,
      endpoints: [...this.endpoints.values()].map((e) => ({
        key: e.key,
        address: e.address,
        port: e.port,
        weight: e.weight,
        edsHealth: e.eds,
        activeHealth: this.activeHealth(e.key),
        inHostSet: inSet.has(e.key),
        activeConnections: e.active,
        selected: e.selected,
      })),
    };
  }

  stop(): void {
    this.checker?.stop();
    this.checker = undefined;
    const m = this.deps.metrics.health;
    for (const key of this.endpoints.keys()) m.endpointHealthy.remove({ cluster: this.config.name, endpoint: key });
    m.clusterPanic.remove({ cluster: this.config.name });
  }

  private activeHealth(key: string): ActiveHealth {
    if (!this.checker) return 'unchecked';
    return this.checker.status(key) ?? 'pending';
  }

  private onTransition(t: HealthTransition): void {
    if (!this.endpoints.has(t.key)) return;
    this.refresh();
  }

  /** Recomputes the host set and rebuilds the load balancer if the set changed. */
  private refresh(): void {
    const views = [...this.endpoints.values()].map((e) => ({ key: e.key, address: e.address, port: e.port, weight: e.weight, eds: e.eds, active: this.activeHealth(e.key) }));
    const before = this.hostSet?.tier;
    const set = selectHostSet(views, this.deps.panicThresholdPercent);
    this.hostSet = set;
    const m = this.deps.metrics.health;
    for (const v of views) {
      const healthy = (v.eds === 'healthy' || v.eds === 'unknown') && (v.active === 'unchecked' || v.active === 'healthy');
      m.endpointHealthy.set({ cluster: this.config.name, endpoint: v.key }, healthy ? 1 : 0);
    }
    m.clusterPanic.set({ cluster: this.config.name }, set.tier === 'panic' ? 1 : 0);
    if (before !== undefined && before !== set.tier) {
      const fields = { tier: set.tier, was: before, healthPercent: Math.round(set.healthPercent), endpoints: views.length };
      if (set.tier === 'panic') this.log.warn(fields, 'too few healthy endpoints: balancing over all of them (panic mode)');
      else if (set.tier === 'none') this.log.warn(fields, 'no endpoint can take connections');
      else this.log.info(fields, 'cluster host set changed');
    }
    const sig = hostSetSignature(set.hosts);
    if (sig !== this.lbSignature || !this.lb) {
      this.lb = createLoadBalancer(this.config.lbPolicy, set.hosts, { ...this.deps.lbOptions, activeRequests: (key) => this.endpoints.get(key)?.active ?? 0 });
      this.lbSignature = sig;
    }
  }
}
