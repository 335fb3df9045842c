// Owns one xDS stream's lifecycle, shared by SotW and Delta: node group resolution (and moving
// to another group when the grouper's answer changes), the cache watch, per-type states, response
// pacing (one unacknowledged response per type), ADS ordering, bounded buffering towards slow
// readers, and the stream's status entry. The protocol variants (sotw.ts, delta.ts) supply request
// handling, the plan and the response encoding.
import type { Logger } from '../util/log.js';
import type { GroupChange, SnapshotCache, TypeSnapshot } from './cache.js';
import type { XdsMetrics } from './metrics.js';
import type { DeltaRequest, NodeInfo, RawRequest, RequestLimits, SotwRequest, UndecodableRequest } from './requests.js';
import { checkTypeUrl } from './requests.js';
import { adsRank, ADS_ORDER, TypeUrl, typeLabel } from './resources.js';
import type { ClientStatus, TypeStatus } from './status.js';
import { clearTriggers, commitPlan, TypeState, type Plan } from './stream-state.js';
import type { SubscriptionChange } from './subscription.js';

export type NodeGrouper = (node: NodeInfo) => string;

/** gRPC status codes the streams end with (numeric values of grpc.status). */
export const Code = {
  INVALID_ARGUMENT: 3,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;
export type CodeName = keyof typeof Code;

/** What a stream needs from the gRPC call; server.ts adapts grpc-js to it. */
export interface StreamTransport {
  readonly peer: string;
  readonly peerCertificate?: string;
  /** Writes one serialized response; `done` runs once the transport has taken it. */
  write(buf: Buffer, done: (err?: Error | null) => void): void;
  /** Ends the stream with a gRPC status. */
  end(code: number, details: string): void;
  /** Drops the stream at once, without waiting for queued data (for clients that stopped reading). */
  reset(details: string): void;
}

export interface StreamLimits extends RequestLimits {
  /** Unflushed response bytes above which no further response is queued on a stream. */
  maxQueuedBytesPerStream: number;
  /** A stream whose queued bytes make no progress for this long is reset. */
  stallTimeoutMs: number;
  /** Distinct resource types one stream may subscribe to. */
  maxTypesPerStream: number;
}

/** Running totals since the server started; cheap to read (the benchmark polls them). */
export interface XdsCounters {
  responses: number;
  acks: number;
  nacks: number;
  rejectedRequests: number;
  slowStreamsCancelled: number;
}

export interface StreamContext {
  cache: SnapshotCache;
  counters: XdsCounters;
  grouper: NodeGrouper;
  metrics: XdsMetrics;
  logger: Logger;
  limits: StreamLimits;
  /** Called once when the stream ends, for any reason. */
  onClosed(stream: XdsStream): void;
}

const BOOT = Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, '0');
let nextStreamId = 1;

export abstract class XdsStream {
  readonly id = `${BOOT}.${(nextStreamId++).toString(36)}`;
  readonly connectedAt = Date.now();
  node: NodeInfo | null = null;
  group: string | null = null;
  /** Per-type state in first-subscribed order. */
  protected readonly types = new Map<string, TypeState>();
  private ordered: TypeState[] = [];
  private nonceSeq = 0;
  private unwatch: (() => void) | null = null;
  private flushQueued = false;
  private closed = false;
  private inflightBytes = 0;
  private lastProgressAt = 0;
  private blockedOnBytes = false;
  protected log: Logger;
  private readonly baseLog: Logger;

  protected constructor(
    readonly protocol: 'sotw' | 'delta',
    /** ads, lds, cds, eds, rds, sds */
    readonly service: string,
    /** For per-type services, the only type URL the stream serves. */
    protected readonly fixedTypeUrl: string | null,
    protected readonly transport: StreamTransport,
    protected readonly ctx: StreamContext,
  ) {
    this.baseLog = ctx.logger.child({ stream: this.id, peer: transport.peer, service, protocol });
    this.log = this.baseLog;
    ctx.metrics.connectedStreams.inc({ protocol, service });
  }

  /** Entry point for every request off the wire. Never throws. */
  onRequest(raw: RawRequest): void {
    if (this.closed) return;
    try {
      const req = this.decode(raw.bytes);
      if (req.kind === 'undecodable') return this.fail('INVALID_ARGUMENT', 'undecodable', req.message);
      this.handle(req);
    } catch (err) {
      this.log.error({ err }, 'request handling failed');
      this.fail('INTERNAL', 'internal', `internal error while handling the request: ${(err as Error).message}`);
    }
  }

  protected abstract decode(bytes: Buffer): SotwRequest | DeltaRequest | UndecodableRequest;
  protected abstract handle(req: SotwRequest | DeltaRequest): void;
  protected abstract plan(ts: TypeState, snap: TypeSnapshot): Plan | null;
  /** Builds the response; `nonce()` makes a stream-unique nonce when the response is not shared. */
  protected abstract encode(ts: TypeState, snap: TypeSnapshot, plan: Plan, nonce: () => string): { bytes: Buffer; nonce: string };

  /** The request's type URL after the per-service and registry checks, or null (stream failed). */
  protected resolveTypeUrl(requested: string): string | null {
    if (this.fixedTypeUrl !== null) {
      if (requested === '' || requested === this.fixedTypeUrl) return this.fixedTypeUrl;
      this.fail('INVALID_ARGUMENT', 'wrong_type_url', `this ${this.service.toUpperCase()} stream serves only ${this.fixedTypeUrl}, got type_url ${JSON.stringify(requested)}; use ADS for mixed types`);
      return null;
    }
    if (requested === '') {
      this.fail('INVALID_ARGUMENT', 'missing_type_url', 'type_url is required on an aggregated (ADS) stream');
      return null;
    }
    if (this.types.has(requested)) return requested;
    const problem = checkTypeUrl(requested);
    if (problem) {
      this.fail(problem.code, problem.reason, problem.message);
      return null;
    }
    return requested;
  }

  /** Picks the node group on the first request; later requests may omit the node (spec, "Basic Protocol Overview"). */
  protected resolveNode(node: NodeInfo | null): boolean {
    if (this.group !== null) return true;
    this.node = node ?? { id: '', cluster: '', metadata: {} };
    const group = this.pickGroup(this.node);
    if (group === null) return false;
    this.join(group);
    this.log.info({ cluster: this.node.cluster, userAgent: this.node.userAgentName }, 'xDS client connected');
    return true;
  }

  /**
   * Asks the grouper again (the config's node selectors changed). When the node now belongs to
   * another group, the stream watches that group instead and re-plans every type against it with a
   * full comparison of what the client holds: SotW LDS/CDS get the complete new set, Delta gets
   * the differences and removed_resources, other SotW types get what is new or changed. A response
   * still awaiting its ACK is not disturbed; the re-plan follows the ACK. Returns true on a move.
   */
  regroup(): boolean {
    if (this.closed || this.group === null || this.node === null) return false;
    const group = this.pickGroup(this.node);
    if (group === null || group === this.group) return false;
    const from = this.group;
    this.unwatch?.();
    this.join(group);
    for (const ts of this.types.values()) {
      ts.synced = null;
      ts.dirty = true;
    }
    this.ctx.metrics.streamRegroups.inc();
    this.log.info({ from }, 'node moved to another node group');
    this.schedule();
    return true;
  }

  /** The grouper's answer for `node`, or null after ending the stream with the reason. */
  private pickGroup(node: NodeInfo): string | null {
    let group: unknown;
    try {
      group = this.ctx.grouper(node);
    } catch (err) {
      this.fail('INVALID_ARGUMENT', 'no_node_group', `node ${JSON.stringify(node.id)} (cluster ${JSON.stringify(node.cluster)}): no node group: ${(err as Error).message}`);
      return null;
    }
    if (typeof group !== 'string' || group === '') {
      this.fail('INTERNAL', 'no_node_group', `node ${JSON.stringify(node.id)}: the node grouper returned ${JSON.stringify(group)} instead of a group name`);
      return null;
    }
    return group;
  }

  private join(group: string): void {
    this.group = group;
    this.log = this.baseLog.child({ node: this.node?.id, group });
    this.unwatch = this.ctx.cache.watch(group, (change) => this.onGroupChange(change));
  }

  /** The type's state, created on first use; null (stream failed) past the per-stream type limit. */
  protected typeState(typeUrl: string): TypeState | null {
    let ts = this.types.get(typeUrl);
    if (ts) return ts;
    if (this.types.size >= this.ctx.limits.maxTypesPerStream) {
      this.fail('RESOURCE_EXHAUSTED', 'too_many_types', `a stream may subscribe to at most ${this.ctx.limits.maxTypesPerStream} resource types; ${typeUrl} would exceed it`);
      return null;
    }
    ts = new TypeState(typeUrl);
    this.types.set(typeUrl, ts);
    this.ordered = [...this.types.values()].sort((a, b) => adsRank(a.typeUrl) - adsRank(b.typeUrl));
    return ts;
  }

  /** Records an ACK or NACK of the response awaiting one. */
  protected settle(ts: TypeState, nonce: string, versionInfo: string, error: { code: number; message: string } | null): void {
    const sent = ts.lastSent;
    ts.pendingNonce = null;
    if (!sent) return;
    const now = Date.now();
    if (error) {
      // A NACK leaves `known` as sent, so the rejected version is not pushed again; only a newer
      // version of a resource goes out (xds_protocol.rst, "ACK/NACK and resource type instance version").
      ts.lastNack = { version: sent.version, nonce, clientVersion: versionInfo, code: error.code, message: error.message, at: now };
      this.ctx.metrics.nacks.inc({ type_url: ts.typeUrl });
      this.ctx.counters.nacks++;
      this.log.warn({ type: typeLabel(ts.typeUrl), version: sent.version, nonce, error: error.message }, 'client rejected (NACK) a response');
    } else {
      ts.acked = { version: versionInfo || sent.version, nonce, at: now };
      this.ctx.metrics.ackLatency.get(ts.typeUrl).observe((now - sent.at) / 1000);
      this.ctx.counters.acks++;
    }
  }

  /**
   * A client may report again on a response it already ACKed or NACKed, with the same nonce: e.g.
   * an agent that NACKed a listener (interface missing) and applied it later, once the interface
   * appeared. Nothing is resent and no metric moves; the status view follows the client's word,
   * so /v1/nodes does not keep showing a rejection the client has since taken back.
   */
  protected restate(ts: TypeState, nonce: string, versionInfo: string, error: { code: number; message: string } | null): void {
    const sent = ts.lastSent;
    if (!sent || sent.nonce !== nonce) return;
    const now = Date.now();
    if (error) {
      if (ts.lastNack?.nonce === nonce && ts.lastNack.message === error.message) return;
      ts.lastNack = { version: sent.version, nonce, clientVersion: versionInfo, code: error.code, message: error.message, at: now };
    } else if (ts.lastNack?.nonce === nonce || ts.acked?.nonce !== nonce) {
      ts.acked = { version: versionInfo || sent.version, nonce, at: now };
      if (ts.lastNack?.nonce === nonce) ts.lastNack = null;
      this.log.info({ type: typeLabel(ts.typeUrl), version: ts.acked.version, nonce }, 'client now accepts a response it had rejected');
    }
  }

  /** Applies a subscription change to what must be sent. */
  protected applyChange(ts: TypeState, change: SubscriptionChange): void {
    if (change.wildcardAdded) ts.synced = null; // every resource is now of interest: full scan
    if (change.wildcardRemoved) ts.forgetAllButNamed();
    if (change.removed.length > 0) ts.forgetUnsubscribed(change.removed);
    for (const n of change.added) ts.forced.add(n);
    if (change.added.length > 0 || change.wildcardAdded) {
      ts.dirty = true;
      // SotW LDS/CDS: answer so the client can tell that a newly named resource does not exist.
      if (ts.fullState) ts.respondAnyway = true;
    }
  }

  protected schedule(): void {
    if (this.flushQueued || this.closed) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  private onGroupChange(change: GroupChange): void {
    if (this.closed) return;
    for (const ts of this.types.values()) if (change === 'all' || change.has(ts.typeUrl)) ts.dirty = true;
    this.schedule();
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.closed || this.group === null) return;
    if (this.inflightBytes > this.ctx.limits.maxQueuedBytesPerStream) {
      // Bounded buffering: nothing more is queued until the client reads; the diff is computed
      // again then, so intermediate versions collapse instead of piling up.
      this.blockedOnBytes = true;
      return;
    }
    const snap = this.ctx.cache.snapshot(this.group);
    if (!snap) return; // A group with no snapshot gets nothing, and no error.
    let heldBack = false;
    for (const ts of this.ordered) {
      if (!ts.dirty) continue;
      const inOrder = adsRank(ts.typeUrl) < ADS_ORDER.length;
      if (ts.pendingNonce !== null || (heldBack && inOrder)) {
        // Make before break: a later type waits while an earlier one has an update it cannot send yet.
        if (inOrder) heldBack = true;
        continue;
      }
      const tsnap = snap.type(ts.typeUrl);
      const plan = this.plan(ts, tsnap);
      if (!plan) {
        clearTriggers(ts, tsnap);
        continue;
      }
      this.send(ts, tsnap, plan);
      if (this.closed) return;
    }
  }

  private send(ts: TypeState, snap: TypeSnapshot, plan: Plan): void {
    const { bytes: buf, nonce } = this.encode(ts, snap, plan, () => `${this.id}.${(++this.nonceSeq).toString(36)}`);
    ts.pendingNonce = nonce;
    ts.lastSent = { version: snap.version, nonce, at: Date.now(), resources: plan.resources.length, removed: plan.removed.length };
    commitPlan(ts, plan, snap);
    (this.protocol === 'sotw' ? this.ctx.metrics.sotwResponses : this.ctx.metrics.deltaResponses).get(ts.typeUrl).inc();
    this.ctx.counters.responses++;
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug({ type: typeLabel(ts.typeUrl), version: snap.version, nonce, resources: plan.resources.length, removed: plan.removed.length, bytes: buf.length }, 'response sent');
    }
    if (ts.typeUrl === TypeUrl.Cluster && plan.changed.length > 0) this.refreshEndpoints(plan);
    this.write(buf);
  }

  /**
   * A changed cluster warms again and waits for a ClusterLoadAssignment, even an unchanged one
   * (xds_protocol.rst, "Resource warming", Envoy note). Resend those CLAs after the CDS response.
   */
  private refreshEndpoints(plan: Plan): void {
    const eds = this.types.get(TypeUrl.ClusterLoadAssignment);
    // CLAs the client does not hold go out anyway; only held ones need forcing.
    if (!eds || eds.known.size === 0) return;
    for (const c of plan.changed) {
      const name = c.edsServiceName();
      if (name !== undefined && eds.known.has(name) && eds.sub.includes(name)) {
        eds.forced.add(name);
        eds.dirty = true;
      }
    }
  }

  private write(buf: Buffer): void {
    if (this.inflightBytes === 0) this.lastProgressAt = Date.now();
    this.inflightBytes += buf.length;
    this.transport.write(buf, (err) => {
      this.inflightBytes -= buf.length;
      this.lastProgressAt = Date.now();
      if (err || this.closed) return;
      if (this.blockedOnBytes && this.inflightBytes <= this.ctx.limits.maxQueuedBytesPerStream) {
        this.blockedOnBytes = false;
        this.schedule();
      }
    });
  }

  /** Resets the stream if its queued responses made no progress for the stall timeout. */
  checkStalled(now: number): boolean {
    if (this.closed || this.inflightBytes === 0) return false;
    const stalledMs = now - this.lastProgressAt;
    if (stalledMs < this.ctx.limits.stallTimeoutMs) return false;
    const details = `xDS client stopped reading: ${this.inflightBytes} response bytes unread for ${Math.round(stalledMs / 1000)} s (limit ${this.ctx.limits.stallTimeoutMs} ms)`;
    this.ctx.metrics.slowStreamsCancelled.inc();
    this.ctx.counters.slowStreamsCancelled++;
    this.log.warn({ unreadBytes: this.inflightBytes, stalledMs }, 'resetting a stream whose client stopped reading');
    this.transport.reset(details);
    this.close();
    return true;
  }

  /** Ends the stream with a status that names the problem; the server keeps serving others. */
  protected fail(code: CodeName, reason: string, message: string): void {
    if (this.closed) return;
    this.ctx.metrics.rejectedRequests.inc({ reason });
    this.ctx.counters.rejectedRequests++;
    this.log.warn({ reason, code }, `refusing xDS request: ${message}`);
    this.transport.end(Code[code], message);
    this.close();
  }

  /** Ends the stream from the server side (shutdown). */
  shutdown(details: string): void {
    if (this.closed) return;
    this.transport.end(Code.UNAVAILABLE, details);
    this.close();
  }

  /** Forgets the stream: the client went away, or the stream was ended. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unwatch?.();
    this.unwatch = null;
    this.ctx.metrics.connectedStreams.dec({ protocol: this.protocol, service: this.service });
    if (this.group !== null) this.log.info('xDS client disconnected');
    this.ctx.onClosed(this);
  }

  status(): ClientStatus {
    const types: TypeStatus[] = [];
    for (const ts of this.types.values()) {
      const names: string[] = [];
      for (const n of ts.sub.names) {
        if (names.length >= 100) break;
        names.push(n);
      }
      types.push({
        typeUrl: ts.typeUrl,
        subscription: { wildcard: ts.sub.wildcard, nameCount: ts.sub.size, names },
        knownResources: ts.known.size,
        lastSent: ts.lastSent && { ...ts.lastSent },
        acked: ts.acked && { ...ts.acked },
        lastNack: ts.lastNack && { ...ts.lastNack },
        awaitingAck: ts.pendingNonce !== null,
      });
    }
    const s: ClientStatus = {
      streamId: this.id,
      protocol: this.protocol,
      service: this.service,
      node: this.node,
      group: this.group,
      peer: this.transport.peer,
      connectedAt: new Date(this.connectedAt).toISOString(),
      types,
    };
    if (this.transport.peerCertificate) s.peerCertificate = this.transport.peerCertificate;
    return s;
  }
}
