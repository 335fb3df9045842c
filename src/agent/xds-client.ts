// The agent's xDS client: one ADS stream to the control plane, Delta when the server offers it
// and SotW when it answers UNIMPLEMENTED; wildcard LDS and CDS, EDS for the names the handler
// asks for. It owns the received resources (the last good config stays in force while the
// control plane is away), hands the whole view to the handler after every response, and ACKs or
// NACKs that response with the handler's problems. Reconnects with jittered exponential backoff;
// Delta resumes with initial_resource_versions. Protocol references are to Envoy's
// api-docs/xds_protocol.rst.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { messageName, ResourceType, shortType } from '../model/type-urls.js';
import { decodeToJson, encodeJson } from '../proto/json.js';
import { protoRegistry } from '../proto/registry.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import type { ResourceView } from './decode.js';

const ADS = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
const METHOD = { sotw: `/${ADS}/StreamAggregatedResources`, delta: `/${ADS}/DeltaAggregatedResources` } as const;
/** Request order on a new stream: clusters and their endpoints before the listeners that use them ("Eventual consistency considerations"). */
export const AGENT_TYPES = [ResourceType.Cluster, ResourceType.ClusterLoadAssignment, ResourceType.Listener] as const;
type AgentType = (typeof AGENT_TYPES)[number];
const WILDCARD_TYPES = new Set<string>([ResourceType.Listener, ResourceType.Cluster]);
/** google.rpc.Code INVALID_ARGUMENT, what Envoy puts in a NACK's error_detail. */
const NACK_CODE = 3;
const MAX_NACK_MESSAGE = 16 * 1024;

export type XdsProtocol = 'delta' | 'sotw';

/** What applying a view gave: problems per type URL (NACK those), and the EDS names to subscribe. */
export interface ApplyOutcome {
  problems: ReadonlyMap<string, readonly string[]>;
  edsNames: readonly string[];
}

/** Why the handler runs: a response of a type, or a retry of the current view. */
export type ApplyTrigger = { kind: 'response'; typeUrl: string } | { kind: 'retry' };

export type XdsHandler = (view: ResourceView, trigger: ApplyTrigger) => Promise<ApplyOutcome>;

export interface XdsClientOptions {
  /** host:port of the control plane's xDS port. */
  target: string;
  /** envoy.config.core.v3.Node as proto3 JSON (proto field names). */
  node: Record<string, unknown>;
  handler: XdsHandler;
  logger: Logger;
  credentials?: grpc.ChannelCredentials;
  /** auto (default): Delta, falling back to SotW when the server answers UNIMPLEMENTED. */
  protocol?: XdsProtocol | 'auto';
  backoff?: BackoffOptions;
  /** Registry for the exds_xds_* metrics (none when absent). */
  registry?: Registry;
  channelOptions?: grpc.ChannelOptions;
  /** How long a listener update waits for the endpoints of newly subscribed clusters (default 5 s). */
  initialFetchTimeoutMs?: number;
}

export interface TypeStatus {
  typeUrl: string;
  resources: number;
  /** The version this agent accepted last (SotW version_info; Delta system_version_info). */
  version: string;
  lastAck?: { version: string; at: number };
  lastNack?: { version: string; at: number; message: string };
  /** EDS: the names subscribed to; LDS/CDS: wildcard. */
  subscription: 'wildcard' | string[];
}

export interface XdsClientStatus {
  target: string;
  protocol: XdsProtocol | undefined;
  connected: boolean;
  /** Failed connection attempts since the last good stream. */
  failures: number;
  lastError?: string;
  types: TypeStatus[];
}

interface Held {
  version: string;
  json: unknown;
}

interface TypeState {
  typeUrl: AgentType;
  resources: Map<string, Held>;
  /** SotW: version_info of the last accepted response, sent back in later requests. */
  accepted: string;
  /** The latest response on the current stream: what an ACK/NACK refers to. */
  last?: { version: string; nonce: string; reply: 'ack' | 'nack' };
  names: Set<string>;
  lastAck?: { version: string; at: number };
  lastNack?: { version: string; at: number; message: string };
}

interface Stream {
  id: number;
  protocol: XdsProtocol;
  call: grpc.ClientDuplexStream<Buffer, Buffer>;
  nodeSent: boolean;
  ended: boolean;
  responses: number;
}

type Plain = Record<string, unknown>;

interface ClientMetrics {
  connected: Gauge;
  protocol: Gauge<'protocol'>;
  streams: Counter<'protocol'>;
  streamEnds: Counter<'code'>;
  responses: Counter<'type'>;
  acks: Counter<'type'>;
  nacks: Counter<'type'>;
  lastAck: Gauge<'type'>;
  lastNack: Gauge<'type'>;
  version: Gauge<'type' | 'version'>;
  resources: Gauge<'type'>;
}

function clientMetrics(registry: Registry): ClientMetrics {
  const registers = [registry];
  return {
    connected: new Gauge({ name: 'exds_xds_connected', help: 'Whether the agent has a working xDS stream to the control plane (1) or not (0)', registers }),
    protocol: new Gauge({ name: 'exds_xds_protocol', help: 'xDS protocol variant of the current stream (1 for the one in use)', labelNames: ['protocol'], registers }),
    streams: new Counter({ name: 'exds_xds_streams_total', help: 'xDS streams opened', labelNames: ['protocol'], registers }),
    streamEnds: new Counter({ name: 'exds_xds_stream_ends_total', help: 'xDS streams that ended, by gRPC status code', labelNames: ['code'], registers }),
    responses: new Counter({ name: 'exds_xds_responses_total', help: 'xDS responses received', labelNames: ['type'], registers }),
    acks: new Counter({ name: 'exds_xds_acks_total', help: 'xDS responses ACKed', labelNames: ['type'], registers }),
    nacks: new Counter({ name: 'exds_xds_nacks_total', help: 'xDS responses NACKed (some resource could not be applied)', labelNames: ['type'], registers }),
    lastAck: new Gauge({ name: 'exds_xds_last_ack_timestamp_seconds', help: 'When the last ACK of a type was sent (Unix seconds)', labelNames: ['type'], registers }),
    lastNack: new Gauge({ name: 'exds_xds_last_nack_timestamp_seconds', help: 'When the last NACK of a type was sent (Unix seconds)', labelNames: ['type'], registers }),
    version: new Gauge({ name: 'exds_xds_version_info', help: 'The accepted version of each type (1 for the current one)', labelNames: ['type', 'version'], registers }),
    resources: new Gauge({ name: 'exds_xds_resources', help: 'Resources held, by type', labelNames: ['type'], registers }),
  };
}

export class XdsClient {
  private readonly client: grpc.Client;
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private readonly types = new Map<string, TypeState>();
  private readonly metrics: ClientMetrics | undefined;
  private protocol: XdsProtocol | undefined;
  private stream: Stream | undefined;
  private streamSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private work: Promise<void> = Promise.resolve();
  private connected = false;
  private lastError: string | undefined;
  private closed = false;
  /** A listener response waiting for endpoints (see onResponse). */
  private deferred: { s: Stream; ts: TypeState; parsed: ParsedResponse } | undefined;
  private deferTimer: NodeJS.Timeout | undefined;
  /** EDS names by the time they were subscribed to, until their first assignment arrives. */
  private readonly edsSince = new Map<string, number>();

  constructor(private readonly opts: XdsClientOptions) {
    this.log = opts.logger.child({ component: 'xds-client' });
    this.backoff = new Backoff(opts.backoff);
    this.protocol = opts.protocol === 'auto' || opts.protocol === undefined ? undefined : opts.protocol;
    this.client = new grpc.Client(opts.target, opts.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      // Notice a control plane that vanished without closing the connection.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      ...opts.channelOptions,
    });
    for (const t of AGENT_TYPES) this.types.set(t, { typeUrl: t, resources: new Map(), accepted: '', names: new Set() });
    if (opts.registry) this.metrics = clientMetrics(opts.registry);
    this.metrics?.connected.set(0);
  }

  /** Opens the stream; reconnects on its own until close(). */
  start(): void {
    if (this.closed) throw new Error('the xDS client is closed; create a new one');
    this.open();
  }

  status(): XdsClientStatus {
    return {
      target: this.opts.target,
      protocol: this.stream?.protocol ?? this.protocol,
      connected: this.connected,
      failures: this.backoff.failures,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      types: [...this.types.values()].map((t) => ({
        typeUrl: t.typeUrl,
        resources: t.resources.size,
        version: t.accepted,
        ...(t.lastAck ? { lastAck: t.lastAck } : {}),
        ...(t.lastNack ? { lastNack: t.lastNack } : {}),
        subscription: WILDCARD_TYPES.has(t.typeUrl) ? 'wildcard' : [...t.names].sort(),
      })),
    };
  }

  /** The resources held now (what the last good config was built from). */
  view(): ResourceView {
    const json = (t: string) => new Map([...this.types.get(t)!.resources].map(([n, h]) => [n, h.json]));
    return { listeners: json(ResourceType.Listener), clusters: json(ResourceType.Cluster), assignments: json(ResourceType.ClusterLoadAssignment) };
  }

  /**
   * Runs the handler again on the current view (after a failure that may have gone away, such as
   * a missing interface). A type whose latest response was NACKed and now applies cleanly is
   * ACKed with that response's version and nonce.
   */
  reapply(): Promise<void> {
    return this.enqueue(async () => {
      const outcome = await this.opts.handler(this.view(), { kind: 'retry' });
      this.updateEds(outcome.edsNames);
      const s = this.stream;
      if (!s || s.ended) return;
      for (const t of this.types.values()) {
        if (t.last?.reply !== 'nack' || (outcome.problems.get(t.typeUrl)?.length ?? 0) > 0) continue;
        this.log.info({ type: shortType(t.typeUrl), version: t.last.version }, 'the NACKed version applies now; ACKing it');
        this.reply(s, t, t.last.version, t.last.nonce, []);
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.dropDeferred();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const s = this.stream;
    this.stream = undefined;
    if (s && !s.ended) {
      s.ended = true;
      s.call.cancel();
    }
    await this.work.catch(() => undefined);
    this.client.close();
    this.setConnected(false);
  }

  // -------------------------------------------------------------------------------------------
  // Stream lifecycle

  private open(): void {
    if (this.closed) return;
    const protocol = this.protocol ?? 'delta';
    const call = this.client.makeBidiStreamRequest(METHOD[protocol], (b: Buffer) => b, (b: Buffer) => b) as grpc.ClientDuplexStream<Buffer, Buffer>;
    const s: Stream = { id: ++this.streamSeq, protocol, call, nodeSent: false, ended: false, responses: 0 };
    this.stream = s;
    this.metrics?.streams.inc({ protocol });
    this.log.info({ target: this.opts.target, protocol, stream: s.id, attempt: this.backoff.failures + 1 }, 'opening xDS stream');
    call.on('data', (b: Buffer) => {
      void this.enqueue(() => this.onResponse(s, b));
    });
    call.on('status', (st: grpc.StatusObject) => this.onEnd(s, st.code, st.details));
    call.on('error', () => {
      // 'status' carries the code and details of every end.
    });
    // First requests: clusters (with their endpoints) before listeners.
    for (const t of AGENT_TYPES) {
      const ts = this.types.get(t)!;
      ts.last = undefined; // nonces belong to a stream
      if (!WILDCARD_TYPES.has(t) && ts.names.size === 0) continue;
      this.subscribe(s, ts);
    }
  }

  private onEnd(s: Stream, code: number, details: string): void {
    if (s.ended) return;
    s.ended = true;
    if (this.stream === s) this.stream = undefined;
    this.dropDeferred();
    this.setConnected(false);
    this.metrics?.streamEnds.inc({ code: grpc.status[code] ?? String(code) });
    if (this.closed) return;
    if (code === grpc.status.UNIMPLEMENTED && s.protocol === 'delta' && this.opts.protocol !== 'delta' && s.responses === 0) {
      this.log.info({ target: this.opts.target }, 'the control plane does not offer Delta xDS; using State of the World');
      this.protocol = 'sotw';
      this.open();
      return;
    }
    if (s.responses > 0) this.backoff.reset();
    const delay = this.backoff.next();
    this.lastError = `${grpc.status[code] ?? code}: ${details}`;
    const level = this.backoff.failures > 1 ? 'warn' : 'info';
    this.log[level](
      { target: this.opts.target, code: grpc.status[code] ?? code, details, retryInMs: delay, failures: this.backoff.failures },
      'xDS stream ended; the last good configuration stays in force until the control plane is back',
    );
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.open();
    }, delay);
  }

  private dropDeferred(): void {
    this.deferred = undefined;
    if (this.deferTimer) clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
  }

  private setConnected(v: boolean): void {
    this.connected = v;
    this.metrics?.connected.set(v ? 1 : 0);
    if (this.metrics) {
      this.metrics.protocol.reset();
      if (v && this.stream) this.metrics.protocol.set({ protocol: this.stream.protocol }, 1);
    }
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    const run = this.work.then(fn);
    this.work = run.catch((e: unknown) => {
      this.log.error({ err: e }, 'xDS client work failed');
    });
    return run;
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  private write(s: Stream, typeName: string, json: Plain): void {
    if (s.ended) return;
    if (!s.nodeSent) {
      json['node'] = this.opts.node;
      s.nodeSent = true;
    }
    s.call.write(Buffer.from(encodeJson(typeName, json)));
  }

  /** The first request of a type on a stream (and after a subscription change). */
  private subscribe(s: Stream, ts: TypeState): void {
    if (s.protocol === 'sotw') {
      this.write(s, 'envoy.service.discovery.v3.DiscoveryRequest', {
        type_url: ts.typeUrl,
        version_info: ts.accepted,
        resource_names: WILDCARD_TYPES.has(ts.typeUrl) ? [] : [...ts.names].sort(),
        response_nonce: ts.last?.nonce ?? '',
      });
      return;
    }
    // Delta: the explicit wildcard, or the names; after a reconnect, what we hold
    // ("Reconnect" in the incremental section: initial_resource_versions).
    const initial: Record<string, string> = {};
    for (const [n, h] of ts.resources) initial[n] = h.version;
    this.write(s, 'envoy.service.discovery.v3.DeltaDiscoveryRequest', {
      type_url: ts.typeUrl,
      resource_names_subscribe: WILDCARD_TYPES.has(ts.typeUrl) ? ['*'] : [...ts.names].sort(),
      initial_resource_versions: initial,
    });
  }

  private reply(s: Stream, ts: TypeState, version: string, nonce: string, problems: readonly string[]): void {
    const type = shortType(ts.typeUrl);
    const at = Date.now();
    const nack = problems.length > 0;
    const message = nack ? nackMessage(problems) : '';
    if (s.protocol === 'sotw') {
      // A NACK carries the previous good version ("ACK and NACK semantics").
      if (!nack) ts.accepted = version;
      const req: Plain = {
        type_url: ts.typeUrl,
        version_info: ts.accepted,
        resource_names: WILDCARD_TYPES.has(ts.typeUrl) ? [] : [...ts.names].sort(),
        response_nonce: nonce,
      };
      if (nack) req['error_detail'] = { code: NACK_CODE, message };
      this.write(s, 'envoy.service.discovery.v3.DiscoveryRequest', req);
    } else {
      if (!nack) ts.accepted = version;
      const req: Plain = { type_url: ts.typeUrl, response_nonce: nonce };
      if (nack) req['error_detail'] = { code: NACK_CODE, message };
      this.write(s, 'envoy.service.discovery.v3.DeltaDiscoveryRequest', req);
    }
    ts.last = { version, nonce, reply: nack ? 'nack' : 'ack' };
    if (nack) {
      ts.lastNack = { version, at, message };
      this.metrics?.nacks.inc({ type });
      this.metrics?.lastNack.set({ type }, at / 1000);
      this.log.warn({ type, version, nonce, problems }, 'NACK: some resources could not be applied; the others are in force');
    } else {
      ts.lastAck = { version, at };
      this.metrics?.acks.inc({ type });
      this.metrics?.lastAck.set({ type }, at / 1000);
      this.log.info({ type, version, resources: ts.resources.size }, 'ACK');
    }
    if (this.metrics) {
      this.metrics.version.reset();
      for (const t of this.types.values()) if (t.accepted !== '') this.metrics.version.set({ type: shortType(t.typeUrl), version: t.accepted }, 1);
      this.metrics.resources.set({ type }, ts.resources.size);
    }
  }

  /** Makes the EDS subscription exactly `names` and tells the server when it changed. */
  private updateEds(names: readonly string[]): void {
    const ts = this.types.get(ResourceType.ClusterLoadAssignment)!;
    const want = new Set(names);
    const added = [...want].filter((n) => !ts.names.has(n));
    const removed = [...ts.names].filter((n) => !want.has(n));
    if (added.length === 0 && removed.length === 0) return;
    ts.names = want;
    const now = Date.now();
    for (const n of added) if (!ts.resources.has(n)) this.edsSince.set(n, now);
    // Assignments of clusters that are gone are forgotten (SotW EDS cannot delete them).
    for (const n of removed) {
      ts.resources.delete(n);
      this.edsSince.delete(n);
    }
    const s = this.stream;
    if (!s || s.ended) return;
    this.log.debug({ subscribe: added, unsubscribe: removed }, 'EDS subscription changes');
    if (s.protocol === 'sotw') this.subscribe(s, ts);
    else {
      this.write(s, 'envoy.service.discovery.v3.DeltaDiscoveryRequest', {
        type_url: ts.typeUrl,
        resource_names_subscribe: added.sort(),
        resource_names_unsubscribe: removed.sort(),
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Responses

  private async onResponse(s: Stream, buf: Buffer): Promise<void> {
    if (s.ended || this.stream !== s) return; // a late message of a stream we gave up
    s.responses++;
    if (!this.connected) {
      this.setConnected(true);
      this.backoff.reset();
      this.lastError = undefined;
      this.log.info({ target: this.opts.target, protocol: s.protocol, stream: s.id }, 'xDS stream established');
    }
    let parsed: ParsedResponse;
    try {
      parsed = s.protocol === 'sotw' ? parseSotw(buf) : parseDelta(buf);
    } catch (e) {
      // An undecodable response has no nonce to NACK with: end the stream and start over.
      this.log.error({ err: (e as Error).message }, 'undecodable xDS response; reconnecting');
      s.call.cancel();
      return;
    }
    const ts = this.types.get(parsed.typeUrl);
    this.metrics?.responses.inc({ type: shortType(parsed.typeUrl) });
    if (!ts) {
      this.write(s, s.protocol === 'sotw' ? 'envoy.service.discovery.v3.DiscoveryRequest' : 'envoy.service.discovery.v3.DeltaDiscoveryRequest', {
        type_url: parsed.typeUrl,
        response_nonce: parsed.nonce,
        error_detail: { code: NACK_CODE, message: `the ebpf-xds agent did not subscribe to ${parsed.typeUrl}` },
      });
      return;
    }
    if (ts.typeUrl === ResourceType.Listener && this.edsPending().length > 0) {
      // Listener warming: a listener update waits for the endpoints of clusters it may use, as
      // Envoy's listeners wait for their clusters to warm ("Resource warming"), up to the
      // initial fetch timeout of each name.
      this.deferred = { s, ts, parsed };
      const wait = Math.max(0, Math.min(...this.edsPending().map((n) => this.edsWaitUntil(n))) - Date.now());
      this.log.debug({ waitingFor: this.edsPending(), ms: wait }, 'listener update waits for endpoints');
      this.deferTimer = setTimeout(() => void this.enqueue(() => this.runDeferred(true)), wait);
      return;
    }
    await this.process(s, ts, parsed);
    if (ts.typeUrl === ResourceType.ClusterLoadAssignment) await this.runDeferred(false);
  }

  /** EDS names subscribed to whose first assignment has not arrived within the initial fetch timeout. */
  private edsPending(): string[] {
    const ts = this.types.get(ResourceType.ClusterLoadAssignment)!;
    const now = Date.now();
    return [...this.edsSince.keys()].filter((n) => ts.names.has(n) && !ts.resources.has(n) && this.edsWaitUntil(n) > now);
  }

  private edsWaitUntil(name: string): number {
    return (this.edsSince.get(name) ?? 0) + (this.opts.initialFetchTimeoutMs ?? 5000);
  }

  /** Processes a listener update that waited for endpoints, once they came (or the wait ended). */
  private async runDeferred(timedOut: boolean): Promise<void> {
    const d = this.deferred;
    if (!d || (!timedOut && this.edsPending().length > 0)) return;
    this.deferred = undefined;
    if (this.deferTimer) clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
    if (d.s.ended || this.stream !== d.s) return;
    if (timedOut && this.edsPending().length > 0) this.log.warn({ missing: this.edsPending() }, 'endpoints did not arrive in time; applying the listeners without them');
    await this.process(d.s, d.ts, d.parsed);
  }

  private async process(s: Stream, ts: TypeState, parsed: ParsedResponse): Promise<void> {
    parsed.apply(ts);
    // A name the response answered (with an assignment, or as removed: it does not exist) waits no more.
    for (const n of parsed.names) this.edsSince.delete(n);
    this.log.debug({ type: shortType(ts.typeUrl), version: parsed.version, resources: ts.resources.size }, 'xDS response');
    let outcome: ApplyOutcome;
    try {
      outcome = await this.opts.handler(this.view(), { kind: 'response', typeUrl: ts.typeUrl });
    } catch (e) {
      outcome = { problems: new Map([[ts.typeUrl, [`the agent failed to apply this version: ${(e as Error).message}`]]]), edsNames: [...this.types.get(ResourceType.ClusterLoadAssignment)!.names] };
    }
    if (s.ended) return;
    // Subscribe to new clusters' endpoints before ACKing the clusters, so the server can send
    // them first (make before break).
    this.updateEds(outcome.edsNames);
    this.reply(s, ts, parsed.version, parsed.nonce, [...parsed.problems, ...(outcome.problems.get(ts.typeUrl) ?? [])]);
  }
}

interface ParsedResponse {
  typeUrl: string;
  version: string;
  nonce: string;
  problems: string[];
  /** Names the response carries or removes. */
  names: string[];
  apply: (ts: TypeState) => void;
}

function nackMessage(problems: readonly string[]): string {
  let out = '';
  for (const [i, p] of problems.entries()) {
    const next = out === '' ? p : `${out}; ${p}`;
    if (next.length > MAX_NACK_MESSAGE) return `${out}; ... and ${problems.length - i} more`;
    out = next;
  }
  return out;
}

function resourceName(typeUrl: string, json: unknown): string {
  const o = json as Plain;
  return String((typeUrl === ResourceType.ClusterLoadAssignment ? o['cluster_name'] : o['name']) ?? '');
}

/** Decodes an Any's payload; a failure is a problem naming the resource. */
function decodeAny(typeUrl: string, any: { type_url?: string; value?: Uint8Array } | null | undefined, where: string): { name: string; json: unknown } {
  if (!any) throw new Error(`${where}: no resource`);
  if (any.type_url !== typeUrl) throw new Error(`${where}: resource of type ${String(any.type_url)} in a ${shortType(typeUrl)} response`);
  const json = decodeToJson(messageName(typeUrl), any.value ?? new Uint8Array());
  return { name: resourceName(typeUrl, json), json };
}

function parseSotw(buf: Buffer): ParsedResponse {
  const m = protoRegistry().type('envoy.service.discovery.v3.DiscoveryResponse').decode(buf) as unknown as Plain;
  const typeUrl = String(m['type_url'] ?? '');
  const version = String(m['version_info'] ?? '');
  const nonce = String(m['nonce'] ?? '');
  const anys = (m['resources'] as Array<{ type_url: string; value: Uint8Array }> | undefined) ?? [];
  const problems: string[] = [];
  const got = new Map<string, Held>();
  anys.forEach((a, i) => {
    try {
      const r = decodeAny(typeUrl, a, `${shortType(typeUrl)} resources[${i}]`);
      got.set(r.name, { version, json: r.json });
    } catch (e) {
      problems.push((e as Error).message);
    }
  });
  return {
    typeUrl,
    version,
    nonce,
    problems,
    names: [...got.keys()],
    apply(ts: TypeState): void {
      // LDS and CDS responses carry the complete set: absence means deletion ("Deleting
      // Resources"). Other types carry only what changed.
      if (WILDCARD_TYPES.has(ts.typeUrl)) ts.resources = got;
      else for (const [n, h] of got) if (ts.names.has(n)) ts.resources.set(n, h);
    },
  };
}

function parseDelta(buf: Buffer): ParsedResponse {
  const m = protoRegistry().type('envoy.service.discovery.v3.DeltaDiscoveryResponse').decode(buf) as unknown as Plain;
  const typeUrl = String(m['type_url'] ?? '');
  const nonce = String(m['nonce'] ?? '');
  const version = String(m['system_version_info'] ?? '');
  const list = (m['resources'] as Array<{ name: string; version: string; resource?: { type_url: string; value: Uint8Array } | null }> | undefined) ?? [];
  const removed = (m['removed_resources'] as string[] | undefined) ?? [];
  const problems: string[] = [];
  const got = new Map<string, Held>();
  for (const r of list) {
    if (!r.resource) continue; // a heartbeat (TTL) without a body: nothing changes
    try {
      const d = decodeAny(typeUrl, r.resource, `${shortType(typeUrl)} "${r.name}"`);
      if (d.name !== r.name) throw new Error(`${shortType(typeUrl)} "${r.name}": the resource inside is named "${d.name}"`);
      got.set(r.name, { version: r.version, json: d.json });
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  return {
    typeUrl,
    version,
    nonce,
    problems,
    names: [...got.keys(), ...removed],
    apply(ts: TypeState): void {
      for (const n of removed) ts.resources.delete(n);
      for (const [n, h] of got) ts.resources.set(n, h);
    },
  };
}
