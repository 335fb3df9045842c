// Owns one stream's state for one resource type (subscription, what the client holds, the
// outstanding nonce, ACK/NACK history) and the pure decision of what to send next. SotW and Delta
// share this state; they differ only in the plan functions at the bottom.
import type { EncodedResource, TypeSnapshot } from './cache.js';
import { allowsLegacyWildcard, isFullStateType } from './resources.js';
import { Subscription } from './subscription.js';

export interface SentInfo {
  version: string;
  nonce: string;
  /** Epoch milliseconds. */
  at: number;
  resources: number;
  removed: number;
}

export interface AckInfo {
  version: string;
  nonce: string;
  at: number;
}

export interface NackInfo {
  /** The version the client rejected (the one we sent with `nonce`). */
  version: string;
  nonce: string;
  /** The version the client says it still uses. */
  clientVersion: string;
  code: number;
  message: string;
  at: number;
}

export class TypeState {
  readonly sub: Subscription;
  readonly fullState: boolean;
  /** name → per-resource version the client holds, as far as the server knows. */
  readonly known = new Map<string, string>();
  /** Names to send even if the client holds the current version (newly subscribed, fresh EDS). */
  readonly forced = new Set<string>();
  /** Delta: names whose presence must be confirmed or denied (unsubscribed under a wildcard). */
  readonly announce = new Set<string>();
  /** Answer even with nothing new: SotW LDS/CDS first request or newly named resources; Delta first wildcard request. */
  respondAnyway = false;
  /** Something may need sending: snapshot or subscription changed since the last plan. */
  dirty = false;
  /**
   * The snapshot the client is in step with (a plan against it would be empty, triggers aside).
   * When the next snapshot's `base` is this one, planning only looks at the names that changed.
   * Null forces a full scan (new stream, wildcard added, reconnect with initial versions).
   */
  synced: TypeSnapshot | null = null;
  /** Nonce of the response awaiting ACK/NACK; nothing more is sent for this type until then. */
  pendingNonce: string | null = null;
  requests = 0;
  lastSent: SentInfo | null = null;
  acked: AckInfo | null = null;
  lastNack: NackInfo | null = null;

  constructor(readonly typeUrl: string) {
    this.sub = new Subscription(allowsLegacyWildcard(typeUrl));
    this.fullState = isFullStateType(typeUrl);
  }

  /** Forgets what the client holds for names it no longer receives. */
  forgetUnsubscribed(names: readonly string[]): void {
    for (const n of names) {
      if (!this.sub.includes(n)) {
        this.known.delete(n);
        this.forced.delete(n);
      }
    }
  }

  /** After the wildcard is dropped: forget every name that is not explicitly subscribed. */
  forgetAllButNamed(): void {
    for (const n of [...this.known.keys()]) if (!this.sub.names.has(n)) this.known.delete(n);
  }
}

/** What to put in the next response of one type. */
export interface Plan {
  /** Resources to send. SotW LDS/CDS: the complete subscribed set. */
  resources: EncodedResource[];
  /** Delta only: names for removed_resources. */
  removed: string[];
  /** The resources the client did not hold at this version (a subset of `resources`). */
  changed: EncodedResource[];
  /** True when `resources` is the complete set the client should hold (SotW LDS/CDS). */
  complete: boolean;
}

/**
 * SotW. LDS/CDS: if anything the client receives changed, appeared or vanished, send the full set
 * ("Grouping Resources into Responses"); absence means deletion ("Deleting Resources"). Other
 * types: send only resources that changed or were newly requested; SotW cannot signal their
 * deletion, so the client keeps them and so does `known`.
 */
export function planSotw(ts: TypeState, snap: TypeSnapshot): Plan | null {
  const changed: EncodedResource[] = [];
  let vanished = false;
  const res = snap.resources;
  const visit = (name: string, r: EncodedResource | undefined): void => {
    if (r) {
      if (ts.forced.has(name) || ts.known.get(name) !== r.version) changed.push(r);
    } else if (ts.known.has(name)) vanished = true;
  };
  const delta = changedSince(ts, snap);
  if (delta) {
    for (const name of delta) if (ts.sub.includes(name)) visit(name, res.get(name));
  } else if (ts.sub.wildcard) {
    for (const [name, r] of res) visit(name, r);
    for (const name of ts.sub.names) if (!res.has(name)) visit(name, undefined);
    if (ts.fullState) for (const name of ts.known.keys()) if (!res.has(name)) vanished = true;
  } else {
    for (const name of ts.sub.names) visit(name, res.get(name));
  }
  if (!ts.fullState) return changed.length > 0 ? { resources: changed, removed: [], changed, complete: false } : null;
  if (changed.length === 0 && !vanished && !ts.respondAnyway) return null;
  let resources: EncodedResource[];
  if (ts.sub.wildcard) {
    resources = [...res.values()];
  } else {
    resources = [];
    for (const name of ts.sub.names) {
      const r = res.get(name);
      if (r) resources.push(r);
    }
  }
  return { resources, removed: [], changed, complete: true };
}

/**
 * The names worth looking at when the client is in step with the snapshot this one replaced:
 * those that changed between them, plus the one-shot triggers. Null means "scan everything".
 */
function changedSince(ts: TypeState, snap: TypeSnapshot): Iterable<string> | null {
  let base: ReadonlySet<string>;
  if (ts.synced === snap) base = EMPTY;
  else if (ts.synced !== null && snap.base === ts.synced && snap.changed) base = snap.changed;
  else return null;
  if (ts.forced.size === 0 && ts.announce.size === 0) return base;
  return new Set([...base, ...ts.forced, ...ts.announce]);
}

const EMPTY: ReadonlySet<string> = new Set();

/**
 * Delta. Send resources whose version the client does not hold (or that were just subscribed),
 * and name in removed_resources those that vanished, and subscribed names that do not exist
 * ("Knowing When a Requested Resource Does Not Exist", incremental section).
 */
export function planDelta(ts: TypeState, snap: TypeSnapshot): Plan | null {
  const changed: EncodedResource[] = [];
  const removed = new Set<string>();
  const res = snap.resources;
  const visit = (name: string, r: EncodedResource | undefined): void => {
    if (r) {
      if (ts.forced.has(name) || ts.known.get(name) !== r.version) changed.push(r);
    } else if (ts.known.has(name) || ts.forced.has(name)) removed.add(name);
  };
  const delta = changedSince(ts, snap);
  if (delta) {
    for (const name of delta) if (ts.sub.includes(name)) visit(name, res.get(name));
  } else if (ts.sub.wildcard) {
    for (const [name, r] of res) visit(name, r);
    for (const name of ts.sub.names) if (!res.has(name)) visit(name, undefined);
    for (const name of ts.known.keys()) if (!res.has(name)) removed.add(name);
  } else {
    for (const name of ts.sub.names) visit(name, res.get(name));
  }
  // "Unsubscribing from Resources": a name dropped while a wildcard is active must be confirmed
  // (sent, if the wildcard covers it) or denied (removed_resources).
  for (const name of ts.announce) if (!(ts.sub.includes(name) && res.has(name))) removed.add(name);
  if (changed.length === 0 && removed.size === 0 && !ts.respondAnyway) return null;
  return { resources: changed, removed: [...removed], changed, complete: false };
}

/** Records that `plan` went out: the client now holds what was sent and dropped what was removed. */
export function commitPlan(ts: TypeState, plan: Plan, snap: TypeSnapshot): void {
  // A SotW LDS/CDS response is the complete set: the client holds exactly what it carries.
  if (plan.complete) ts.known.clear();
  for (const r of plan.resources) ts.known.set(r.name, r.version);
  for (const name of plan.removed) ts.known.delete(name);
  clearTriggers(ts, snap);
}

/** Clears the one-shot reasons to respond once served (or found moot); the client is now in step with `snap`. */
export function clearTriggers(ts: TypeState, snap: TypeSnapshot): void {
  ts.synced = snap;
  ts.forced.clear();
  ts.announce.clear();
  ts.respondAnyway = false;
  ts.dirty = false;
}
