// Owns the xDS server's Prometheus metrics. One XdsMetrics per prom-client Registry (memoized),
// so the cache and the server can both ask for it without registering a metric twice.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class XdsMetrics {
  /** Open streams by protocol (sotw|delta) and service (ads, lds, cds, eds, rds, sds). */
  readonly connectedStreams: Gauge<'protocol' | 'service'>;
  readonly responses: Counter<'type_url' | 'protocol'>;
  readonly nacks: Counter<'type_url'>;
  readonly pushToAck: Histogram<'type_url'>;
  /** Any / delta Resource encodings. With encode-once this grows with resource versions, not streams. */
  readonly resourceEncodes: Counter<'kind'>;
  readonly slowStreamsCancelled: Counter;
  readonly rejectedRequests: Counter<'reason'>;
  readonly snapshotGroups: Gauge;
  /** Streams moved to another node group because the config's node selectors changed. */
  readonly streamRegroups: Counter;
  readonly cachedResources: Gauge;
  /** Hot-path children of pushToAck and responses, by type URL (and protocol). */
  readonly ackLatency: LabelCache<{ observe(v: number): void }>;
  readonly sotwResponses: LabelCache<{ inc(): void }>;
  readonly deltaResponses: LabelCache<{ inc(): void }>;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    this.connectedStreams = new Gauge({
      name: 'xds_connected_streams',
      help: 'Open xDS streams, by protocol variant and gRPC service',
      labelNames: ['protocol', 'service'],
      registers,
    });
    this.responses = new Counter({
      name: 'xds_responses_total',
      help: 'Discovery responses pushed to clients, by resource type',
      labelNames: ['type_url', 'protocol'],
      registers,
    });
    this.nacks = new Counter({
      name: 'xds_nacks_total',
      help: 'Responses rejected by clients (requests carrying error_detail), by resource type',
      labelNames: ['type_url'],
      registers,
    });
    this.pushToAck = new Histogram({
      name: 'xds_push_to_ack_seconds',
      help: 'Time from writing a response to receiving its ACK',
      labelNames: ['type_url'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.resourceEncodes = new Counter({
      name: 'xds_resource_encodes_total',
      help: 'Resources encoded into an Any (kind=any) or a delta Resource (kind=delta); shared by all streams',
      labelNames: ['kind'],
      registers,
    });
    this.slowStreamsCancelled = new Counter({
      name: 'xds_slow_streams_cancelled_total',
      help: 'Streams reset because the client stopped reading responses',
      registers,
    });
    this.rejectedRequests = new Counter({
      name: 'xds_rejected_requests_total',
      help: 'Requests refused with a gRPC error status, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.streamRegroups = new Counter({
      name: 'xds_stream_regroups_total',
      help: 'Streams moved to another node group after a config change altered the node selectors they match',
      registers,
    });
    this.snapshotGroups = new Gauge({
      name: 'xds_snapshot_groups',
      help: 'Node groups that have a snapshot in the cache',
      registers,
    });
    this.cachedResources = new Gauge({
      name: 'xds_cached_resources',
      help: 'Distinct encoded resource versions held by the cache',
      registers,
    });
    this.ackLatency = new LabelCache((t) => this.pushToAck.labels({ type_url: t }));
    this.sotwResponses = new LabelCache((t) => this.responses.labels({ type_url: t, protocol: 'sotw' }));
    this.deltaResponses = new LabelCache((t) => this.responses.labels({ type_url: t, protocol: 'delta' }));
  }
}

const byRegistry = new WeakMap<Registry, XdsMetrics>();

/**
 * Labelled children looked up once per label value: the hot paths (a response or an ACK per
 * stream per change) then skip prom-client's label hashing.
 */
export class LabelCache<T> {
  private readonly children = new Map<string, T>();
  constructor(private readonly make: (value: string) => T) {}
  get(value: string): T {
    let c = this.children.get(value);
    if (!c) {
      c = this.make(value);
      this.children.set(value, c);
    }
    return c;
  }
}

/** The XdsMetrics registered on `registry`, created on first use. */
export function xdsMetrics(registry: Registry): XdsMetrics {
  let m = byRegistry.get(registry);
  if (!m) {
    m = new XdsMetrics(registry);
    byRegistry.set(registry, m);
  }
  return m;
}
