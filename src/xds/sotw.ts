// Owns the State-of-the-World protocol variant: how a DiscoveryRequest updates a stream (nonce,
// ACK/NACK, resource_names) and how a DiscoveryResponse is assembled from pre-encoded pieces.
import type { TypeSnapshot } from './cache.js';
import type { DeltaRequest, SotwRequest, UndecodableRequest } from './requests.js';
import { checkNames, decodeSotwRequest } from './requests.js';
import { planSotw, type Plan, type TypeState } from './stream-state.js';
import { XdsStream, type StreamContext, type StreamTransport } from './stream.js';
import { concatFields, DiscoveryResponseField, stringField } from './wire.js';

/** Short lists decode faster than they compare; only remember lists worth it. */
const MEMO_MIN_NAMES = 8;

export class SotwStream extends XdsStream {
  /** Last validated resource_names per type, to skip decoding the list when an ACK repeats it. */
  private readonly names = new Map<string, { bytes: Buffer; names: string[] }>();

  constructor(service: string, fixedTypeUrl: string | null, transport: StreamTransport, ctx: StreamContext) {
    super('sotw', service, fixedTypeUrl, transport, ctx);
  }

  protected decode(bytes: Buffer): SotwRequest | UndecodableRequest {
    return decodeSotwRequest(bytes, this.names);
  }

  protected handle(req: SotwRequest | DeltaRequest): void {
    if (req.kind !== 'sotw') throw new Error('a SotW stream got a delta request');
    const typeUrl = this.resolveTypeUrl(req.typeUrl);
    if (typeUrl === null) return;
    if (!req.namesReused) {
      const problem = checkNames(req.resourceNames, 'resource_names', typeUrl, this.ctx.limits);
      if (problem) return this.fail(problem.code, problem.reason, problem.message);
    }
    if (!this.resolveNode(req.node)) return;
    const ts = this.typeState(typeUrl);
    if (!ts) return;
    ts.requests++;

    if (req.responseNonce !== '' && ts.lastSent !== null) {
      if (req.responseNonce !== ts.lastSent.nonce) {
        // xds_protocol.rst, "Resource updates": no response to a request with a stale nonce; the
        // client will send a fresh request (with current names) once it sees the newer response.
        this.log.debug({ type: typeUrl, nonce: req.responseNonce, current: ts.lastSent.nonce }, 'ignoring request with a stale nonce');
        return;
      }
      if (ts.pendingNonce === req.responseNonce) this.settle(ts, req.responseNonce, req.versionInfo, req.errorDetail);
      else this.restate(ts, req.responseNonce, req.versionInfo, req.errorDetail);
    }

    const change = ts.sub.applySotw(req.resourceNames);
    this.applyChange(ts, change);
    if (!req.namesReused && req.namesBytes && req.resourceNames.length >= MEMO_MIN_NAMES) {
      this.names.set(typeUrl, { bytes: Buffer.from(req.namesBytes), names: req.resourceNames });
    }
    if (ts.requests === 1 && ts.fullState) {
      // The first request for LDS/CDS always gets an answer, even an empty set, so the client
      // learns what exists without waiting for its does-not-exist timer.
      ts.respondAnyway = true;
      ts.dirty = true;
    }
    this.schedule();
  }

  protected plan(ts: TypeState, snap: TypeSnapshot): Plan | null {
    return planSotw(ts, snap);
  }

  protected encode(ts: TypeState, snap: TypeSnapshot, plan: Plan, nonce: () => string): { bytes: Buffer; nonce: string } {
    // Every resource of the snapshot (wildcard, or all names requested): the shared response.
    if (plan.resources.length === snap.resources.size && plan.resources.length > 1) {
      const shared = snap.allResponse('sotw');
      if (ts.lastSent?.nonce !== shared.nonce) return shared;
    }
    const n = nonce();
    const parts: Buffer[] = [snap.versionField];
    for (const r of plan.resources) parts.push(r.sotwField());
    parts.push(snap.typeUrlField, stringField(DiscoveryResponseField.nonce, n));
    return { bytes: concatFields(parts), nonce: n };
  }
}
