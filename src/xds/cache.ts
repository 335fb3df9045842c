// Owns the encoded resources: one snapshot per node group, each type versioned on its own, and
// every distinct resource version encoded into its Any (and delta Resource) exactly once, shared
// by all streams and all groups that send it. The server reads snapshots and watches groups; it
// never mutates them.
import { createHash } from 'node:crypto';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import type { XdsMetrics } from './metrics.js';
import { clusterEdsServiceName, TypeUrl, type ResourceKey, type XdsResource } from './resources.js';
import { concatFields, deltaResourceField, DiscoveryResponseField, DeltaResponseField, encodeAny, lenField, stringField } from './wire.js';

/** Counts encodings; tests and the benchmark use it to prove that streams do not re-encode. */
export interface EncodeStats {
  any: number;
  delta: number;
}

/** One resource version, immutable. Its wire forms are built on first use and then shared. */
export class EncodedResource {
  /** Per-resource version for delta xDS: a hash of the encoded bytes (DESIGN.md, versions). */
  readonly version: string;
  private any?: Buffer;
  private sotw?: Buffer;
  private delta?: Buffer;
  private edsName?: string | null;

  constructor(
    readonly typeUrl: string,
    readonly name: string,
    readonly bytes: Buffer,
    digest: Buffer,
    /** Identity in the cache's intern table: type, name and full digest. */
    readonly internKey: string,
    private readonly onEncode: (kind: 'any' | 'delta') => void,
  ) {
    this.version = digest.subarray(0, 12).toString('base64url');
  }

  private anyBytes(): Buffer {
    if (!this.any) {
      this.any = encodeAny(this.typeUrl, this.bytes);
      this.onEncode('any');
    }
    return this.any;
  }

  /** The `resources` element of a DiscoveryResponse (field 2, an Any). */
  sotwField(): Buffer {
    this.sotw ??= lenField(DiscoveryResponseField.resources, this.anyBytes());
    return this.sotw;
  }

  /** The `resources` element of a DeltaDiscoveryResponse (field 2, a Resource). */
  deltaField(): Buffer {
    if (!this.delta) {
      this.delta = deltaResourceField(this.name, this.version, this.anyBytes());
      this.onEncode('delta');
    }
    return this.delta;
  }

  /** For clusters: the ClusterLoadAssignment name the cluster needs, if it uses EDS. */
  edsServiceName(): string | undefined {
    if (this.typeUrl !== TypeUrl.Cluster) return undefined;
    if (this.edsName === undefined) {
      try {
        this.edsName = clusterEdsServiceName(this.bytes) ?? null;
      } catch {
        // Bytes that do not parse as a Cluster cannot name an EDS resource; nothing to refresh.
        this.edsName = null;
      }
    }
    return this.edsName ?? undefined;
  }
}

/** All resources of one type in one group, with the type's version. Immutable. */
export class TypeSnapshot {
  /** Pre-encoded `version_info` / `system_version_info` (both field 1) and `type_url` (field 4). */
  readonly versionField: Buffer;
  readonly typeUrlField: Buffer;
  /**
   * The snapshot this one replaced in its group, and the names that differ from it (added,
   * changed or removed). A stream that was in step with `base` only needs to look at `changed`.
   * Only one step is kept: the link is dropped when this snapshot is itself replaced.
   */
  base: TypeSnapshot | null = null;
  changed: ReadonlySet<string> | null = null;
  private sotwAll?: SharedResponse;
  private deltaAll?: SharedResponse;

  constructor(
    readonly typeUrl: string,
    readonly version: string,
    readonly resources: ReadonlyMap<string, EncodedResource>,
  ) {
    this.versionField = stringField(DiscoveryResponseField.versionInfo, version);
    this.typeUrlField = stringField(DiscoveryResponseField.typeUrl, typeUrl);
    // Same field numbers in DeltaDiscoveryResponse; keep the assumption checked where it is made.
    if (DeltaResponseField.systemVersionInfo !== DiscoveryResponseField.versionInfo || DeltaResponseField.typeUrl !== DiscoveryResponseField.typeUrl) {
      throw new Error('discovery response field numbers diverged; TypeSnapshot pre-encoding is wrong');
    }
  }

  /**
   * A complete response carrying every resource of this snapshot, for the streams that receive
   * all of them (wildcard, or every name requested): built once and written as is to each of
   * them, so a large initial sync costs no per-stream encoding or copying on our side. Its nonce
   * is shared by those streams; nonces only need to be unique within a stream, and a stream that
   * would get the same one twice in a row builds its own response instead.
   */
  allResponse(kind: 'sotw' | 'delta'): SharedResponse {
    if (kind === 'sotw') {
      this.sotwAll ??= this.buildAll(DiscoveryResponseField.nonce, (r) => r.sotwField());
      return this.sotwAll;
    }
    this.deltaAll ??= this.buildAll(DeltaResponseField.nonce, (r) => r.deltaField());
    return this.deltaAll;
  }

  private buildAll(nonceFieldNo: number, field: (r: EncodedResource) => Buffer): SharedResponse {
    const nonce = `all.${(++sharedNonceSeq).toString(36)}`;
    const bytes = concatFields([this.versionField, ...[...this.resources.values()].map(field), this.typeUrlField, stringField(nonceFieldNo, nonce)]);
    return { bytes, nonce };
  }
}

/** A response shared by several streams (see TypeSnapshot.allResponse). */
export interface SharedResponse {
  bytes: Buffer;
  nonce: string;
}

let sharedNonceSeq = 0;

/** Names whose resource differs between two snapshots of a type (added, changed or removed). */
function changedNames(before: ReadonlyMap<string, EncodedResource>, after: ReadonlyMap<string, EncodedResource>): Set<string> {
  const out = new Set<string>();
  for (const [name, r] of after) if (before.get(name) !== r) out.add(name);
  for (const name of before.keys()) if (!after.has(name)) out.add(name);
  return out;
}

/** One node group's resources at one version. Immutable; replaced as a whole by setSnapshot. */
export class GroupSnapshot {
  constructor(
    readonly group: string,
    /** The version given to setSnapshot. */
    readonly version: string,
    private readonly types: ReadonlyMap<string, TypeSnapshot>,
    private readonly empties: Map<string, TypeSnapshot>,
    /** Version reported for types this group has never had: the group's first version. */
    private readonly emptyVersion: string,
  ) {}

  /** The type's snapshot; a type the group has never had is empty at the group's first version. */
  type(typeUrl: string): TypeSnapshot {
    const t = this.types.get(typeUrl);
    if (t) return t;
    let e = this.empties.get(typeUrl);
    if (!e) {
      e = new TypeSnapshot(typeUrl, this.emptyVersion, new Map());
      this.empties.set(typeUrl, e);
    }
    return e;
  }

  typeUrls(): string[] {
    return [...this.types.keys()];
  }

  resourceCount(): number {
    let n = 0;
    for (const t of this.types.values()) n += t.resources.size;
    return n;
  }
}

/** What a watcher is told: the type URLs whose snapshot changed, or 'all' (group set or cleared). */
export type GroupChange = ReadonlySet<string> | 'all';
export type GroupListener = (change: GroupChange) => void;

interface GroupState {
  snapshot: GroupSnapshot;
  types: Map<string, TypeSnapshot>;
  /** Bumped when the same version is set again with different content, so versions stay unique. */
  sameVersionCount: number;
}

/** A type's new name table, and the names that differ from the old one (null: the type is new). */
interface TypeChange {
  after: Map<string, EncodedResource>;
  changed: ReadonlySet<string> | null;
}

interface Interned {
  res: EncodedResource;
  refs: number;
}

const NUMERIC = /^\d+$/;

export class SnapshotCache {
  private readonly logger: Logger;
  private metrics: XdsMetrics | undefined;
  private readonly states = new Map<string, GroupState>();
  private readonly listeners = new Map<string, Set<GroupListener>>();
  private readonly interned = new Map<string, Interned>();
  /**
   * What each caller object was interned as. Callers hand the same XdsResource objects to many
   * groups and to revision after revision (the control plane keeps unchanged resources' objects),
   * so a known object skips validation, hashing and byte comparison: setting a snapshot costs a
   * lookup per resource, and hashing only for resources not seen before.
   */
  private readonly seen = new WeakMap<XdsResource, { res: EncodedResource; bytes: Uint8Array; typeUrl: string; name: string }>();
  private readonly encodes: EncodeStats = { any: 0, delta: 0 };
  /** Resources whose bytes were hashed: with identity recognition, only objects not seen before. */
  private hashed = 0;
  /** Empty-type snapshots survive group replacement so their identity (and version) is stable. */
  private readonly empties = new Map<string, Map<string, TypeSnapshot>>();
  private readonly emptyVersions = new Map<string, string>();

  constructor(opts: { logger?: Logger; metrics?: XdsMetrics } = {}) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'xds-cache' });
    this.metrics = opts.metrics;
  }

  /** Attaches metrics after construction (the server does this when the cache was built without). */
  bindMetrics(metrics: XdsMetrics): void {
    if (this.metrics === metrics) return;
    this.metrics = metrics;
    metrics.snapshotGroups.set(this.states.size);
    metrics.cachedResources.set(this.interned.size);
  }

  /**
   * Replaces the whole resource set of a node group. `version` comes from the persisted store
   * revision and must not go backwards. A type whose (name, bytes) set did not change keeps its
   * previous version, so it is not resent. Throws (and changes nothing) on invalid input.
   * Resource objects (and their bytes) must not be mutated once handed over: the cache recognises
   * an object it has seen by identity instead of hashing its bytes again.
   */
  setSnapshot(group: string, version: string, resources: XdsResource[]): void {
    const prev = this.checkVersion('setSnapshot', group, version);
    const byType = this.groupByType(group, resources);

    // Interning: the same (type, name, bytes) anywhere in the cache is one EncodedResource.
    const newTypes = new Map<string, Map<string, EncodedResource>>();
    for (const [typeUrl, byName] of byType) {
      const m = new Map<string, EncodedResource>();
      const before = prev?.types.get(typeUrl)?.resources;
      for (const [name, r] of byName) m.set(name, this.intern(r, before?.get(name)));
      newTypes.set(typeUrl, m);
    }

    const next = new Map<string, TypeChange>();
    for (const typeUrl of new Set([...(prev?.types.keys() ?? []), ...newTypes.keys()])) {
      const before = prev?.types.get(typeUrl);
      const after = newTypes.get(typeUrl) ?? new Map<string, EncodedResource>();
      if (before && sameResources(before.resources, after)) continue;
      if (!before && after.size === 0) continue;
      next.set(typeUrl, { after, changed: before ? changedNames(before.resources, after) : null });
    }
    this.commit(group, version, prev, next);
    if (prev) this.release(prev.types.values());
  }

  /**
   * Changes part of a group's resources: `set` adds or replaces resources by type and name,
   * `remove` drops names (absent ones are ignored). The result is what setSnapshot with the full
   * list would give, but the cost follows the change, not the group's size: a resource in `set`
   * that the group already holds is recognised and skipped, and each type that really changes
   * costs one copy of its name table. This is what keeps a revision that changes one endpoint
   * cheap when there are many groups. The group must have a snapshot; throws (and changes
   * nothing) on invalid input.
   */
  updateSnapshot(group: string, version: string, change: { set?: XdsResource[]; remove?: readonly ResourceKey[] }): void {
    const prev = this.checkVersion('updateSnapshot', group, version);
    if (!prev) throw new Error(`updateSnapshot(${JSON.stringify(group)}): the group has no snapshot yet; give it one with setSnapshot`);
    const sets = this.groupByType(group, change.set ?? []);
    const removes = new Map<string, Set<string>>();
    (change.remove ?? []).forEach((k, i) => {
      if (typeof k?.typeUrl !== 'string' || typeof k.name !== 'string') throw new Error(`updateSnapshot(${JSON.stringify(group)}): remove[${i}] must be { typeUrl, name } strings`);
      if (sets.get(k.typeUrl)?.has(k.name)) throw new Error(`updateSnapshot(${JSON.stringify(group)}): ${k.typeUrl} ${JSON.stringify(k.name)} is both set and removed`);
      let names = removes.get(k.typeUrl);
      if (!names) {
        names = new Set();
        removes.set(k.typeUrl, names);
      }
      names.add(k.name);
    });

    const next = new Map<string, TypeChange>();
    const replaced: EncodedResource[] = [];
    for (const typeUrl of new Set([...sets.keys(), ...removes.keys()])) {
      const before = prev.types.get(typeUrl);
      const beforeMap = before?.resources ?? new Map<string, EncodedResource>();
      const changed = new Set<string>();
      const put = new Map<string, EncodedResource>();
      for (const [name, r] of sets.get(typeUrl) ?? []) {
        const old = beforeMap.get(name);
        const res = this.intern(r, old);
        if (res === old) {
          this.releaseOne(res); // already held: undo the extra reference
          continue;
        }
        put.set(name, res);
        changed.add(name);
      }
      for (const name of removes.get(typeUrl) ?? []) if (beforeMap.has(name)) changed.add(name);
      if (changed.size === 0) continue;
      const after = new Map(beforeMap);
      for (const name of changed) {
        const old = beforeMap.get(name);
        if (old) replaced.push(old);
        const res = put.get(name);
        if (res) after.set(name, res);
        else after.delete(name);
      }
      if (!before && after.size === 0) continue;
      next.set(typeUrl, { after, changed: before ? changed : null });
    }
    this.commit(group, version, prev, next);
    for (const r of replaced) this.releaseOne(r);
  }

  /** The group's current state, after checking the group name and that `version` does not go backwards. */
  private checkVersion(op: string, group: string, version: string): GroupState | undefined {
    if (typeof group !== 'string' || group === '') throw new Error(`${op}: the node group name must be a non-empty string`);
    if (typeof version !== 'string' || version === '') throw new Error(`${op}(${JSON.stringify(group)}): version must be a non-empty string`);
    const prev = this.states.get(group);
    if (prev && NUMERIC.test(version) && NUMERIC.test(prev.snapshot.version) && BigInt(version) < BigInt(prev.snapshot.version)) {
      throw new Error(
        `${op}(${JSON.stringify(group)}): version ${version} is older than the current ${prev.snapshot.version}; ` +
          'versions must never go backwards (derive them from the persisted store revision)',
      );
    }
    return prev;
  }

  /** Installs the group's new snapshot: changed types get new TypeSnapshots, the others are kept. */
  private commit(group: string, version: string, prev: GroupState | undefined, next: ReadonlyMap<string, TypeChange>): void {
    const sameVersionCount = prev && prev.snapshot.version === version ? prev.sameVersionCount + 1 : 0;
    const typeVersion = sameVersionCount > 0 ? `${version}.${sameVersionCount}` : version;
    const types = new Map<string, TypeSnapshot>(prev?.types ?? []);
    for (const [typeUrl, { after, changed }] of next) {
      const before = prev?.types.get(typeUrl);
      const snap = new TypeSnapshot(typeUrl, typeVersion, after);
      if (before) {
        snap.base = before;
        snap.changed = changed;
        // Keep one step only, so old snapshots are not chained in memory.
        before.base = null;
        before.changed = null;
      }
      types.set(typeUrl, snap);
    }

    if (!this.emptyVersions.has(group)) this.emptyVersions.set(group, version);
    let empties = this.empties.get(group);
    if (!empties) {
      empties = new Map();
      this.empties.set(group, empties);
    }
    const snapshot = new GroupSnapshot(group, version, types, empties, this.emptyVersions.get(group) as string);
    this.states.set(group, { snapshot, types, sameVersionCount });
    this.metrics?.snapshotGroups.set(this.states.size);
    this.metrics?.cachedResources.set(this.interned.size);
    if (this.logger.isLevelEnabled('debug')) this.logger.debug({ group, version, types: types.size, changed: [...next.keys()] }, 'snapshot set');
    if (!prev) this.notify(group, 'all');
    else if (next.size > 0) this.notify(group, new Set(next.keys()));
  }

  /** Removes a group's snapshot. Its streams keep what they have and get nothing new. */
  clearSnapshot(group: string): void {
    const prev = this.states.get(group);
    if (!prev) return;
    this.states.delete(group);
    this.empties.delete(group);
    this.emptyVersions.delete(group);
    this.release(prev.types.values());
    this.metrics?.snapshotGroups.set(this.states.size);
    this.metrics?.cachedResources.set(this.interned.size);
    this.notify(group, 'all');
  }

  groups(): string[] {
    return [...this.states.keys()];
  }

  snapshot(group: string): GroupSnapshot | undefined {
    return this.states.get(group)?.snapshot;
  }

  /** Calls `listener` (asynchronously, after setSnapshot returns) whenever the group changes. */
  watch(group: string, listener: GroupListener): () => void {
    let set = this.listeners.get(group);
    if (!set) {
      set = new Set();
      this.listeners.set(group, set);
    }
    set.add(listener);
    return () => {
      const s = this.listeners.get(group);
      if (!s) return;
      s.delete(listener);
      if (s.size === 0) this.listeners.delete(group);
    };
  }

  stats(): { groups: number; resources: number; encodes: EncodeStats; hashed: number } {
    return { groups: this.states.size, resources: this.interned.size, encodes: { ...this.encodes }, hashed: this.hashed };
  }

  /** Validates the input (all of it, before anything changes) and splits it by type and name. */
  private groupByType(group: string, resources: XdsResource[]): Map<string, Map<string, XdsResource>> {
    if (!Array.isArray(resources)) throw new Error(`setSnapshot(${JSON.stringify(group)}): resources must be an array`);
    const byType = new Map<string, Map<string, XdsResource>>();
    resources.forEach((r, i) => {
      const where = `setSnapshot(${JSON.stringify(group)}): resources[${i}]`;
      if (!this.recognised(r)) {
        if (typeof r?.typeUrl !== 'string' || !/^[^/\s]+\/[A-Za-z_][\w.]*$/.test(r.typeUrl)) {
          throw new Error(`${where}: typeUrl ${JSON.stringify(r?.typeUrl)} is not a type URL like "${TypeUrl.Cluster}"`);
        }
        if (typeof r.name !== 'string' || r.name === '') throw new Error(`${where}: a ${r.typeUrl} resource needs a non-empty name`);
        if (!(r.bytes instanceof Uint8Array)) throw new Error(`${where} (${r.name}): bytes must be a Uint8Array with the encoded message`);
      }
      let byName = byType.get(r.typeUrl);
      if (!byName) {
        byName = new Map();
        byType.set(r.typeUrl, byName);
      }
      if (byName.has(r.name)) {
        // xds_protocol.rst, "Duplicate Resource Names": a response must not carry a name twice.
        throw new Error(`${where}: duplicate ${r.typeUrl} resource named ${JSON.stringify(r.name)}; names must be unique per type`);
      }
      byName.set(r.name, r);
    });
    return byType;
  }

  /** The resource this very object was interned as, if it is still cached and unchanged. */
  private recognised(r: XdsResource): EncodedResource | undefined {
    const m = this.seen.get(r);
    if (!m || m.bytes !== r.bytes || m.name !== r.name || m.typeUrl !== r.typeUrl) return undefined;
    return this.interned.get(m.res.internKey)?.res === m.res ? m.res : undefined;
  }

  private intern(r: XdsResource, previous: EncodedResource | undefined): EncodedResource {
    const known = this.recognised(r);
    if (known) {
      (this.interned.get(known.internKey) as Interned).refs++;
      return known;
    }
    const res = this.internNew(r, previous);
    this.seen.set(r, { res, bytes: r.bytes, typeUrl: r.typeUrl, name: r.name });
    return res;
  }

  private internNew(r: XdsResource, previous: EncodedResource | undefined): EncodedResource {
    // A new object often carries unchanged bytes (a caller that re-encodes everything): comparing
    // them with the group's previous version is much cheaper than hashing them.
    if (previous && previous.bytes.equals(r.bytes)) {
      const same = this.interned.get(previous.internKey);
      if (same) {
        same.refs++;
        return same.res;
      }
    }
    this.hashed++;
    const digest = createHash('sha256').update(r.bytes).digest();
    const key = `${r.typeUrl}\n${r.name}\n${digest.toString('base64')}`;
    let entry = this.interned.get(key);
    if (!entry) {
      const res = new EncodedResource(r.typeUrl, r.name, Buffer.from(r.bytes), digest, key, (kind) => {
        this.encodes[kind]++;
        this.metrics?.resourceEncodes.inc({ kind });
      });
      entry = { res, refs: 0 };
      this.interned.set(key, entry);
    }
    entry.refs++;
    return entry.res;
  }

  /** Drops the references replaced type snapshots held; resources nobody holds are forgotten. */
  private release(types: Iterable<TypeSnapshot>): void {
    for (const t of types) for (const res of t.resources.values()) this.releaseOne(res);
  }

  private releaseOne(res: EncodedResource): void {
    const entry = this.interned.get(res.internKey);
    if (!entry || entry.res !== res) return;
    entry.refs--;
    if (entry.refs <= 0) this.interned.delete(res.internKey);
  }

  private notify(group: string, change: GroupChange): void {
    const set = this.listeners.get(group);
    if (!set || set.size === 0) return;
    const targets = [...set];
    // After setSnapshot returns, so callers are never re-entered and one failing stream cannot
    // break the caller or the other streams.
    queueMicrotask(() => {
      for (const l of targets) {
        try {
          l(change);
        } catch (err) {
          this.logger.error({ err, group }, 'snapshot watcher failed');
        }
      }
    });
  }
}

function sameResources(a: ReadonlyMap<string, EncodedResource>, b: ReadonlyMap<string, EncodedResource>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, res] of a) if (b.get(name) !== res) return false;
  return true;
}
