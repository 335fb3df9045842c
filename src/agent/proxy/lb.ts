// Pure load-balancing contract shared by the lb-*.ts policies, and the choice of which endpoints
// a cluster balances over (Envoy's health and panic semantics). No sockets, no timers: the
// cluster runtime feeds endpoints and health in and asks for picks.
import type { EndpointHealth, LbPolicy } from '../desired-state.js';
import { LeastRequestLoadBalancer } from './lb-least-request.js';
import { MaglevLoadBalancer } from './lb-maglev.js';
import { RandomLoadBalancer } from './lb-random.js';
import { RingHashLoadBalancer } from './lb-ring-hash.js';
import { RoundRobinLoadBalancer } from './lb-round-robin.js';

export interface LbHost {
  /** Stable identity, "address:port" ("[v6]:port"); also the consistent hashes' input. */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** load_balancing_weight, >= 1. */
  readonly weight: number;
}

export interface PickContext {
  /** Hash of the connection's key (source IP) for maglev and ring_hash; others ignore it. */
  hash?: number;
  /**
   * Hosts already tried by this connection (max_connect_attempts). A policy avoids them while
   * another host is available, like Envoy's previous_hosts retry predicate.
   */
  exclude?: ReadonlySet<string>;
}

export interface LoadBalancer {
  readonly policy: LbPolicy;
  readonly hosts: readonly LbHost[];
  /** undefined only when there are no hosts. */
  pick(ctx?: PickContext): LbHost | undefined;
}

/** Uniform random in [0, 1). Injected so tests are deterministic. */
export type Rng = () => number;

export interface LbOptions {
  rng?: Rng;
  /** Active connections per host key (least_request). */
  activeRequests?: (key: string) => number;
  /** least_request: hosts sampled per pick when weights are equal (Envoy's choice_count, 2). */
  choiceCount?: number;
  /** least_request: weight / (active + 1)^bias when weights differ (Envoy's active_request_bias, 1). */
  activeRequestBias?: number;
  /** maglev: table size, a prime (Envoy's default 65537). */
  maglevTableSize?: number;
  /** ring_hash: points of the lightest host (default 256); others in proportion to weight. */
  ringPointsPerHost?: number;
  /** ring_hash: most points on the ring (Envoy's maximum_ring_size default, 8M). */
  ringMaxSize?: number;
}

export function createLoadBalancer(policy: LbPolicy, hosts: readonly LbHost[], opts: LbOptions = {}): LoadBalancer {
  switch (policy) {
    case 'round_robin':
      return new RoundRobinLoadBalancer(hosts, opts.rng ?? Math.random);
    case 'least_request':
      return new LeastRequestLoadBalancer(hosts, { rng: opts.rng ?? Math.random, activeRequests: opts.activeRequests ?? (() => 0), choiceCount: opts.choiceCount ?? 2, bias: opts.activeRequestBias ?? 1 });
    case 'random':
      return new RandomLoadBalancer(hosts, opts.rng ?? Math.random);
    case 'maglev':
      return new MaglevLoadBalancer(hosts, opts.maglevTableSize);
    case 'ring_hash':
      return new RingHashLoadBalancer(hosts, { pointsPerHost: opts.ringPointsPerHost ?? 256, maxSize: opts.ringMaxSize ?? 8 * 1024 * 1024 });
  }
}

/** "10.0.0.1:80", "[fd00::1]:80". */
export function hostKey(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * For policies without a native way around excluded hosts: pick again a few times, then take
 * the first host that is not excluded, and if every host was tried, the original pick.
 */
export function pickAvoiding(hosts: readonly LbHost[], ctx: PickContext | undefined, pickOnce: () => LbHost | undefined): LbHost | undefined {
  const first = pickOnce();
  const exclude = ctx?.exclude;
  if (!first || !exclude || exclude.size === 0 || !exclude.has(first.key)) return first;
  for (let i = 0; i < hosts.length; i++) {
    const h = pickOnce();
    if (h && !exclude.has(h.key)) return h;
  }
  return hosts.find((h) => !exclude.has(h.key)) ?? first;
}

/** A small, fast, seedable PRNG (mulberry32) for deterministic tests and benchmarks. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- which endpoints to balance over -------------------------------------------------------

/** Active health check view of an endpoint: unchecked when the cluster has no health check. */
export type ActiveHealth = 'unchecked' | 'pending' | 'healthy' | 'unhealthy';

export interface HealthView extends LbHost {
  eds: EndpointHealth;
  active: ActiveHealth;
}

export type HostSetTier = 'healthy' | 'degraded' | 'panic' | 'none';

export interface HostSet {
  hosts: LbHost[];
  /** healthy: healthy endpoints; degraded: only degraded ones are left; panic: below the panic threshold, every endpoint but draining ones; none: nothing to pick. */
  tier: HostSetTier;
  /** Envoy's priority health in percent: min(100, 140 * (healthy + degraded) / total). */
  healthPercent: number;
}

/** Envoy's overprovisioning factor (1.4): a cluster counts as fully healthy at 71.4% healthy endpoints. */
export const OVERPROVISIONING = 1.4;

/**
 * Picks the endpoints to balance over, following Envoy's health semantics:
 *  - usable: CLA status HEALTHY or UNKNOWN, and the active health check (if any) passed;
 *  - degraded: CLA status DEGRADED and the check passed; used only when no usable endpoint is
 *    left (Envoy would shift part of the load to them earlier; we keep them as a reserve);
 *  - UNHEALTHY, DRAINING, TIMEOUT, a failed check, or a check still pending: not picked;
 *  - panic: when the health percentage falls below `panicThresholdPercent` (Envoy's
 *    healthy_panic_threshold, default 50), balance over every endpoint except draining ones,
 *    so a cluster whose checks all fail still gets traffic instead of none. 0 disables panic.
 */
export function selectHostSet(endpoints: readonly HealthView[], panicThresholdPercent = 50): HostSet {
  if (endpoints.length === 0) return { hosts: [], tier: 'none', healthPercent: 0 };
  const checkOk = (e: HealthView) => e.active === 'unchecked' || e.active === 'healthy';
  const healthy = endpoints.filter((e) => (e.eds === 'healthy' || e.eds === 'unknown') && checkOk(e));
  const degraded = endpoints.filter((e) => e.eds === 'degraded' && checkOk(e));
  const healthPercent = Math.min(100, (OVERPROVISIONING * 100 * (healthy.length + degraded.length)) / endpoints.length);
  if (panicThresholdPercent > 0 && healthPercent < panicThresholdPercent) {
    const all = endpoints.filter((e) => e.eds !== 'draining');
    return { hosts: all.map(plain), tier: all.length > 0 ? 'panic' : 'none', healthPercent };
  }
  if (healthy.length > 0) return { hosts: healthy.map(plain), tier: 'healthy', healthPercent };
  if (degraded.length > 0) return { hosts: degraded.map(plain), tier: 'degraded', healthPercent };
  return { hosts: [], tier: 'none', healthPercent };
}

function plain(e: LbHost): LbHost {
  return { key: e.key, address: e.address, port: e.port, weight: e.weight };
}

/** Identity of a host set: rebuild a policy's tables only when this changes. */
export function hostSetSignature(hosts: readonly LbHost[]): string {
  return hosts.map((h) => `${h.key}*${h.weight}`).join(',');
}
