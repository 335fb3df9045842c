// Owns what one stream wants of one resource type: a wildcard flag and a set of names. SotW and
// Delta requests both update it here, so the two protocol variants share one subscription model.
// Rules: xds_protocol.rst, "How the client specifies what resources to return" and
// "Unsubscribing From Resources".

export const WILDCARD = '*';

export interface SubscriptionChange {
  /** Names that became subscribed (the server must send them even if the client had them). */
  added: string[];
  /** Names no longer subscribed. */
  removed: string[];
  wildcardAdded: boolean;
  wildcardRemoved: boolean;
}

const NO_CHANGE: SubscriptionChange = Object.freeze({ added: [], removed: [], wildcardAdded: false, wildcardRemoved: false }) as SubscriptionChange;

export class Subscription {
  private wildcardOn = false;
  private readonly named = new Set<string>();
  /** True once the client named anything (including "*"); ends the legacy empty-list wildcard. */
  private explicit = false;
  /** The last SotW list as received, to skip rebuilding the set when an ACK repeats it. */
  private lastSotwList: readonly string[] = [];

  constructor(private readonly legacyWildcardAllowed: boolean) {}

  get wildcard(): boolean {
    return this.wildcardOn;
  }

  /** Explicitly subscribed names (without "*"). */
  get names(): ReadonlySet<string> {
    return this.named;
  }

  /** True when the client receives this resource: explicitly named, or covered by the wildcard. */
  includes(name: string): boolean {
    return this.wildcardOn || this.named.has(name);
  }

  /**
   * Applies a SotW request's resource_names, which replace the previous set. An empty list means
   * wildcard while the stream has never named a resource (legacy, LDS/CDS only), afterwards it
   * means "nothing".
   */
  applySotw(names: readonly string[]): SubscriptionChange {
    if (names.length === 0 && !this.explicit) {
      if (!this.legacyWildcardAllowed || this.wildcardOn) return NO_CHANGE;
      this.wildcardOn = true;
      return { added: [], removed: [], wildcardAdded: true, wildcardRemoved: false };
    }
    if (this.explicit && sameList(names, this.lastSotwList)) return NO_CHANGE;
    this.explicit = true;
    this.lastSotwList = names;
    const next = new Set<string>();
    let wantWildcard = false;
    for (const n of names) {
      if (n === WILDCARD) wantWildcard = true;
      else next.add(n);
    }
    const added: string[] = [];
    const removed: string[] = [];
    for (const n of next) if (!this.named.has(n)) added.push(n);
    for (const n of this.named) if (!next.has(n)) removed.push(n);
    for (const n of removed) this.named.delete(n);
    for (const n of added) this.named.add(n);
    const wildcardAdded = wantWildcard && !this.wildcardOn;
    const wildcardRemoved = !wantWildcard && this.wildcardOn;
    this.wildcardOn = wantWildcard;
    return { added, removed, wildcardAdded, wildcardRemoved };
  }

  /**
   * Applies a delta request. The legacy wildcard applies when a stream's first request for the
   * type subscribes to and unsubscribes from nothing. Subscribing to a name already held is
   * reported as added: the spec ("Subscribing to Resources") requires sending it again.
   */
  applyDelta(subscribe: readonly string[], unsubscribe: readonly string[], firstForType: boolean): SubscriptionChange {
    if (firstForType && subscribe.length === 0 && unsubscribe.length === 0) {
      if (!this.legacyWildcardAllowed) return NO_CHANGE;
      this.wildcardOn = true;
      return { added: [], removed: [], wildcardAdded: true, wildcardRemoved: false };
    }
    if (subscribe.length === 0 && unsubscribe.length === 0) return NO_CHANGE;
    this.explicit = true;
    const added: string[] = [];
    const removed: string[] = [];
    let wildcardAdded = false;
    let wildcardRemoved = false;
    for (const n of unsubscribe) {
      if (n === WILDCARD) {
        if (this.wildcardOn) wildcardRemoved = true;
        this.wildcardOn = false;
      } else if (this.named.delete(n)) removed.push(n);
    }
    for (const n of subscribe) {
      if (n === WILDCARD) {
        if (!this.wildcardOn) wildcardAdded = true;
        this.wildcardOn = true;
        wildcardRemoved = false;
      } else {
        this.named.add(n);
        added.push(n);
      }
    }
    // A name both unsubscribed and resubscribed in one request ends up subscribed.
    const stillRemoved = removed.filter((n) => !this.named.has(n));
    return { added, removed: stillRemoved, wildcardAdded, wildcardRemoved };
  }

  /** Number of explicitly named resources. */
  get size(): number {
    return this.named.size;
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
