// Owns the incremental (delta) protocol variant: how a DeltaDiscoveryRequest updates a stream
// (subscribe/unsubscribe, initial_resource_versions, ACK/NACK) and how a DeltaDiscoveryResponse
// is assembled from pre-encoded Resource messages. Rules: xds_protocol.rst, "Incremental xDS".
import type { TypeSnapshot } from './cache.js';
import type { DeltaRequest, SotwRequest, UndecodableRequest } from './requests.js';
import { checkNames, decodeDeltaRequest } from './requests.js';
import { planDelta, type Plan, type TypeState } from './stream-state.js';
import { XdsStream, type StreamContext, type StreamTransport } from './stream.js';
import { concatFields, DeltaResponseField, stringField } from './wire.js';

export class DeltaStream extends XdsStream {
  constructor(service: string, fixedTypeUrl: string | null, transport: StreamTransport, ctx: StreamContext) {
    super('delta', service, fixedTypeUrl, transport, ctx);
  }

  protected decode(bytes: Buffer): DeltaRequest | UndecodableRequest {
    return decodeDeltaRequest(bytes);
  }

  protected handle(req: SotwRequest | DeltaRequest): void {
    if (req.kind !== 'delta') throw new Error('a delta stream got a SotW request');
    const typeUrl = this.resolveTypeUrl(req.typeUrl);
    if (typeUrl === null) return;
    const limits = this.ctx.limits;
    const problem =
      checkNames(req.subscribe, 'resource_names_subscribe', typeUrl, limits) ??
      checkNames(req.unsubscribe, 'resource_names_unsubscribe', typeUrl, limits) ??
      checkNames([...req.initialResourceVersions.keys()], 'initial_resource_versions', typeUrl, limits);
    if (problem) return this.fail(problem.code, problem.reason, problem.message);
    if (!this.resolveNode(req.node)) return;
    const ts = this.typeState(typeUrl);
    if (!ts) return;
    const first = ts.requests === 0;
    ts.requests++;

    // The nonce pairs an ACK/NACK with a response; unlike SotW, a stale nonce must not make the
    // server drop the subscription change ("Incremental xDS").
    if (req.responseNonce !== '' && req.responseNonce === ts.pendingNonce) {
      this.settle(ts, req.responseNonce, '', req.errorDetail);
    } else if (req.responseNonce !== '') {
      this.restate(ts, req.responseNonce, '', req.errorDetail);
    }

    if (first) {
      // Reconnect: the client already holds these versions; send only what differs.
      for (const [name, version] of req.initialResourceVersions) ts.known.set(name, version);
      ts.synced = null;
    }
    const change = ts.sub.applyDelta(req.subscribe, req.unsubscribe, first);
    if (first && req.initialResourceVersions.size > 0) {
      change.added = change.added.filter((n) => !req.initialResourceVersions.has(n));
      for (const name of [...ts.known.keys()]) if (!ts.sub.includes(name)) ts.known.delete(name);
    }
    if (ts.sub.size > limits.maxNamesPerRequest) {
      return this.fail('RESOURCE_EXHAUSTED', 'too_many_names', `the stream now subscribes to ${ts.sub.size} names of ${typeUrl}; the limit is ${limits.maxNamesPerRequest} (server option maxNamesPerRequest)`);
    }
    this.applyChange(ts, change);
    if (ts.sub.wildcard) {
      // "Unsubscribing from Resources": the client cannot tell whether the wildcard still covers
      // the name, so confirm it (resend) or deny it (removed_resources).
      for (const n of change.removed) {
        ts.announce.add(n);
        ts.forced.add(n);
      }
    }
    // The first wildcard request gets an answer even when there is nothing to send, so the client
    // finishes initialising instead of waiting for its initial fetch timeout.
    if (first && ts.sub.wildcard) ts.respondAnyway = true;
    if (first || change.removed.length > 0) ts.dirty = true;
    this.schedule();
  }

  protected plan(ts: TypeState, snap: TypeSnapshot): Plan | null {
    return planDelta(ts, snap);
  }

  protected encode(ts: TypeState, snap: TypeSnapshot, plan: Plan, nonce: () => string): { bytes: Buffer; nonce: string } {
    if (plan.removed.length === 0 && plan.resources.length === snap.resources.size && plan.resources.length > 1) {
      const shared = snap.allResponse('delta');
      if (ts.lastSent?.nonce !== shared.nonce) return shared;
    }
    const n = nonce();
    const parts: Buffer[] = [snap.versionField];
    for (const r of plan.resources) parts.push(r.deltaField());
    parts.push(snap.typeUrlField);
    for (const name of plan.removed) parts.push(stringField(DeltaResponseField.removedResources, name));
    parts.push(stringField(DeltaResponseField.nonce, n));
    return { bytes: concatFields(parts), nonce: n };
  }
}
