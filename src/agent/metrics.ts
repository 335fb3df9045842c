// The agent's Prometheus metrics (prom-client), defined once per Registry and shared by the
// parts that update them: the embedded proxy, the health checker, and (through the collect
// sources) the reconciler, which reads the per-CPU BPF counters at scrape time. The proxy's
// per-connection counts are plain numbers per listener (listenerCounts) that the metrics read
// when they are collected: a prom-client inc hashes and validates its labels every time, and a
// short connection made seven of them.
import { Counter, Gauge, type Registry } from 'prom-client';

export type PathLabel = 'xdp' | 'skb' | 'userspace';
export type DirectionLabel = 'downstream_to_upstream' | 'upstream_to_downstream';

/**
 * The per-connection counts of one listener (by name), bumped by the proxy as plain numbers.
 * exds_proxy_accepted_total, exds_proxy_connections_total, exds_proxy_userspace_bytes_total and
 * exds_proxy_active_connections read them at every scrape (and metric.get()), so they show what
 * direct inc/dec calls would have shown.
 */
export interface ListenerCounts {
  accepted: number;
  /** Connections open now; only ever set as a gauge. */
  active: number;
  connections: Record<PathLabel, number>;
  userspaceBytes: Record<DirectionLabel, number>;
}

export interface ProxyMetrics {
  /**
   * Connections accepted, before any decision. This and connections, active and userspaceBytes
   * are fed from listenerCounts(); the proxy does not inc them directly.
   */
  accepted: Counter<'listener'>;
  /** Connections handed off, by the path that carried their bytes (counted when that is known). */
  connections: Counter<'listener' | 'path'>;
  /** Connections open now (accepted and not yet closed). */
  active: Gauge<'listener'>;
  /** A kernel path was asked for and user space copied instead. */
  fallbacks: Counter<'listener' | 'requested' | 'reason'>;
  /** Bytes copied by user space (downstream_to_upstream, upstream_to_downstream). */
  userspaceBytes: Counter<'listener' | 'direction'>;
  /** Connections closed before reaching an upstream, by reason. */
  rejected: Counter<'listener' | 'reason'>;
  /** Drop rules that denied a connection in user space. */
  denied: Counter<'listener' | 'rule'>;
  /** TLS inspection outcome per connection of an SNI listener. */
  sni: Counter<'listener' | 'outcome'>;
  /** Upstream connect attempts that failed. */
  connectFailures: Counter<'cluster' | 'endpoint' | 'reason'>;
  /** Endpoints chosen by the load balancer (one per connect attempt); fed from endpointCounts(). */
  upstreamSelected: Counter<'cluster' | 'endpoint'>;
  /** Connections ended by their idle timeout. */
  idleTimeouts: Counter<'listener'>;
}

export interface HealthMetrics {
  /** 1 when the endpoint is picked as healthy (CLA status and active check), 0 otherwise. */
  endpointHealthy: Gauge<'cluster' | 'endpoint'>;
  /** 1 while the cluster balances in panic mode (too few healthy endpoints). */
  clusterPanic: Gauge<'cluster'>;
  checks: Counter<'cluster' | 'result'>;
  transitions: Counter<'cluster' | 'endpoint' | 'to'>;
}

export interface SplicedBytesSample {
  path: 'skb' | 'xdp';
  bytes: number | bigint;
}

export interface AgentMetrics {
  proxy: ProxyMetrics;
  health: HealthMetrics;
  /**
   * Where exds_spliced_bytes_total comes from: the reconciler sums the per-CPU BPF counters of
   * each datapath and returns them here; called at every scrape. Without a source the metric
   * has no samples.
   */
  setSplicedBytesSource(source: (() => SplicedBytesSample[]) | undefined, onError?: (err: Error) => void): void;
  /** The counts of listener `name`, created on first use and kept for the registry's life. */
  listenerCounts(name: string): ListenerCounts;
  /** The load balancer's picks of one endpoint (exds_proxy_upstream_selected_total), likewise. */
  endpointCounts(cluster: string, endpoint: string): EndpointCounts;
}

export interface EndpointCounts {
  selected: number;
}

interface CountsEntry {
  counts: ListenerCounts;
  /** What the counters have been given so far (counters only grow: the rest is added at collect). */
  added: { accepted: number; connections: Record<PathLabel, number>; userspaceBytes: Record<DirectionLabel, number> };
}

const PATHS: readonly PathLabel[] = ['xdp', 'skb', 'userspace'];
const DIRECTIONS: readonly DirectionLabel[] = ['downstream_to_upstream', 'upstream_to_downstream'];

const perRegistry = new WeakMap<Registry, AgentMetrics>();

/** The agent's metrics on `registry`, created on first use (so every part shares one set). */
export function agentMetrics(registry: Registry): AgentMetrics {
  const existing = perRegistry.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) => new Counter<L>({ name, help, labelNames, registers });
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) => new Gauge<L>({ name, help, labelNames, registers });

  const perListener = new Map<string, CountsEntry>();
  const perEndpoint = new Map<string, { labels: { cluster: string; endpoint: string }; counts: EndpointCounts; added: number }>();
  const proxy: ProxyMetrics = {
    accepted: new Counter({
      name: 'exds_proxy_accepted_total',
      help: 'Connections accepted by the embedded proxy',
      labelNames: ['listener'] as const,
      registers,
      collect() {
        for (const [listener, e] of perListener) {
          const d = e.counts.accepted - e.added.accepted;
          if (d > 0) this.inc({ listener }, d);
          e.added.accepted = e.counts.accepted;
        }
      },
    }),
    connections: new Counter({
      name: 'exds_proxy_connections_total',
      help: 'Connections handed off, by the path that carried their bytes (xdp, skb, userspace)',
      labelNames: ['listener', 'path'] as const,
      registers,
      collect() {
        for (const [listener, e] of perListener) {
          for (const path of PATHS) {
            const d = e.counts.connections[path] - e.added.connections[path];
            if (d > 0) this.inc({ listener, path }, d);
            e.added.connections[path] = e.counts.connections[path];
          }
        }
      },
    }),
    active: new Gauge({
      name: 'exds_proxy_active_connections',
      help: 'Connections open now',
      labelNames: ['listener'] as const,
      registers,
      collect() {
        // A listener's gauge appears with its first connection (as an inc would make it).
        for (const [listener, e] of perListener) if (e.counts.accepted > 0) this.set({ listener }, e.counts.active);
      },
    }),
    fallbacks: counter('exds_proxy_fallbacks_total', 'Connections copied in user space although a kernel path was requested, by reason', ['listener', 'requested', 'reason']),
    userspaceBytes: new Counter({
      name: 'exds_proxy_userspace_bytes_total',
      help: 'Bytes copied by the proxy in user space',
      labelNames: ['listener', 'direction'] as const,
      registers,
      collect() {
        for (const [listener, e] of perListener) {
          for (const direction of DIRECTIONS) {
            const d = e.counts.userspaceBytes[direction] - e.added.userspaceBytes[direction];
            if (d > 0) this.inc({ listener, direction }, d);
            e.added.userspaceBytes[direction] = e.counts.userspaceBytes[direction];
          }
        }
      },
    }),
    rejected: counter('exds_proxy_rejected_total', 'Connections closed before reaching an upstream, by reason', ['listener', 'reason']),
    denied: counter('exds_proxy_denied_total', 'Connections denied by a drop rule in user space', ['listener', 'rule']),
    sni: counter('exds_proxy_sni_total', 'TLS ClientHello inspection outcomes', ['listener', 'outcome']),
    connectFailures: counter('exds_proxy_connect_failures_total', 'Upstream connect attempts that failed', ['cluster', 'endpoint', 'reason']),
    upstreamSelected: new Counter({
      name: 'exds_proxy_upstream_selected_total',
      help: 'Endpoints chosen by the load balancer, one per connect attempt',
      labelNames: ['cluster', 'endpoint'] as const,
      registers,
      collect() {
        for (const e of perEndpoint.values()) {
          const d = e.counts.selected - e.added;
          if (d > 0) this.inc(e.labels, d);
          e.added = e.counts.selected;
        }
      },
    }),
    idleTimeouts: counter('exds_proxy_idle_timeouts_total', 'Connections closed by their idle timeout', ['listener']),
  };
  const health: HealthMetrics = {
    endpointHealthy: gauge('exds_endpoint_healthy', 'Endpoint picked as healthy (CLA health status and active health check): 1 or 0', ['cluster', 'endpoint']),
    clusterPanic: gauge('exds_cluster_panic', 'Cluster balancing in panic mode (too few healthy endpoints): 1 or 0', ['cluster']),
    checks: counter('exds_health_checks_total', 'Active TCP health checks by result', ['cluster', 'result']),
    transitions: counter('exds_health_transitions_total', 'Endpoint health changes from active health checks', ['cluster', 'endpoint', 'to']),
  };

  let source: (() => SplicedBytesSample[]) | undefined;
  let onSourceError: ((err: Error) => void) | undefined;
  new Counter<'path'>({
    name: 'exds_spliced_bytes_total',
    help: 'Bytes carried by the kernel (per-CPU BPF counters summed at scrape time)',
    labelNames: ['path'],
    registers,
    collect() {
      this.reset();
      if (!source) return;
      let samples: SplicedBytesSample[];
      try {
        samples = source();
      } catch (err) {
        // A scrape must not fail because one source did: count it and hand the error to the owner.
        collectErrors.inc({ metric: 'exds_spliced_bytes_total' });
        onSourceError?.(err as Error);
        return;
      }
      for (const s of samples) this.inc({ path: s.path }, Number(s.bytes));
    },
  });

  // Registered after the metrics whose sources it counts, so a scrape shows this scrape's errors.
  const collectErrors = counter('exds_metrics_collect_errors_total', 'Metric sources that threw at scrape time (their metric has no samples for that scrape)', ['metric']);

  const metrics: AgentMetrics = {
    proxy,
    health,
    setSplicedBytesSource(fn, onError) {
      source = fn;
      onSourceError = onError;
    },
    listenerCounts(name) {
      let e = perListener.get(name);
      if (!e) {
        const zeroPaths = (): Record<PathLabel, number> => ({ xdp: 0, skb: 0, userspace: 0 });
        const zeroDirections = (): Record<DirectionLabel, number> => ({ downstream_to_upstream: 0, upstream_to_downstream: 0 });
        e = {
          counts: { accepted: 0, active: 0, connections: zeroPaths(), userspaceBytes: zeroDirections() },
          added: { accepted: 0, connections: zeroPaths(), userspaceBytes: zeroDirections() },
        };
        perListener.set(name, e);
      }
      return e.counts;
    },
    endpointCounts(cluster, endpoint) {
      const key = `${cluster}\n${endpoint}`;
      let e = perEndpoint.get(key);
      if (!e) {
        e = { labels: { cluster, endpoint }, counts: { selected: 0 }, added: 0 };
        perEndpoint.set(key, e);
      }
      return e.counts;
    },
  };
  perRegistry.set(registry, metrics);
  return metrics;
}
