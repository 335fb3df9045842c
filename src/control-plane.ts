// The control-plane process, composed: the SQLite store owns the config; on every committed
// revision the config is validated, translated and encoded once, and each node group's snapshot is
// set in the xDS cache with the revision as its version (so versions only go up, across restarts
// too); the REST API edits the store and shows the xDS server's client status.
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { buildApi } from './api/app.js';
import { loadApiToken } from './api/auth.js';
import type { NodeView } from './api/nodes.js';
import { formatFromHint, parseConfigText } from './model/config-text.js';
import { rawResourceRuleProblems } from './model/envoy-rules.js';
import { NodeAudience, nodeGroupName } from './model/node-groups.js';
import type { NodeIdentity } from './model/node-selector.js';
import { decodeRawResource } from './model/raw-resources.js';
import type { ConfigDocument, RawResource } from './model/schema.js';
import { schemaProblems, type Problem } from './model/schema-errors.js';
import { RawResource as RawResourceSchema } from './model/schema.js';
import { ResourceEncoder } from './model/resource-encoder.js';
import { translate, type TranslatedResource } from './model/translate.js';
import { validateConfig } from './model/validate.js';
import { SqliteStore } from './store/sqlite.js';
import type { ConfigSnapshot, Store } from './store/store.js';
import { createLogger, type Logger } from './util/log.js';
import { SnapshotCache } from './xds/cache.js';
import type { ResourceKey, XdsResource } from './xds/resources.js';
import { XdsServer, type ClientStatus, type NodeInfo } from './xds/server.js';
import { loadTlsFiles } from './xds/tls.js';

export interface ControlPlaneOptions {
  dataDir: string;
  xdsPort: number;
  /** Default 0.0.0.0: nodes connect from elsewhere. */
  xdsHost?: string;
  apiPort: number;
  /** Default 127.0.0.1: the API is only reachable from this host unless told otherwise. */
  apiHost?: string;
  /** Raw resources (YAML or JSON list) to load at start; they replace stored ones of the same type and name. */
  resourcesFile?: string;
  apiTokenFile?: string;
  xdsTls?: { cert: string; key: string; clientCa?: string };
  historyLimit?: number;
  apiBodyLimit?: number;
  logger?: Logger;
  /** Where the generated token is announced once (default: stdout). */
  announce?: (line: string) => void;
}

/** A start-up failure the CLI reports as one clear message and exit code 1. */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}

export class ControlPlane {
  private pruneTimer: NodeJS.Timeout | undefined;
  private closed: Promise<void> | undefined;

  private constructor(
    readonly store: Store,
    readonly xds: XdsServer,
    readonly api: FastifyInstance,
    readonly publisher: SnapshotPublisher,
    readonly xdsPort: number,
    readonly apiPort: number,
    readonly apiUrl: string,
    readonly tokenFile: string,
    private readonly log: Logger,
    private readonly unwatch: () => void,
  ) {}

  static async start(opts: ControlPlaneOptions): Promise<ControlPlane> {
    const log = opts.logger ?? createLogger({ name: 'ebpf-xds' });
    const tls = opts.xdsTls ? loadTlsFiles(opts.xdsTls) : undefined;
    // Read and check the resources file before touching the store: a bad file changes nothing.
    const fileResources = opts.resourcesFile ? readResourcesFile(opts.resourcesFile) : undefined;

    let store: SqliteStore;
    try {
      store = SqliteStore.open({ dataDir: opts.dataDir, ...(opts.historyLimit ? { historyLimit: opts.historyLimit } : {}), logger: log.child({ component: 'store' }) });
    } catch (err) {
      throw new StartupError((err as Error).message, { cause: err });
    }
    const cleanup: (() => Promise<unknown>)[] = [() => store.close()];
    try {
      const token = loadApiToken({ dataDir: opts.dataDir, ...(opts.apiTokenFile ? { tokenFile: opts.apiTokenFile } : {}) });
      if (token.generated) (opts.announce ?? ((l) => process.stdout.write(`${l}\n`)))(`generated API token (stored in ${token.file}, shown only now): ${token.token}`);

      if (fileResources && opts.resourcesFile) await loadResources(store, opts.resourcesFile, fileResources, log);

      const registry = new Registry();
      collectDefaultMetrics({ register: registry });
      const cache = new SnapshotCache({ logger: log });
      const publisher = new SnapshotPublisher(cache, registry, log.child({ component: 'publisher' }));
      const xds = new XdsServer({ cache, grouper: (node) => publisher.groupFor(node), logger: log, registry, ...(tls ? { tls } : {}) });
      publisher.bindStreams(xds);
      publisher.publish(await store.current());
      const unwatch = store.watch((snap) => publisher.publish(snap));

      const xdsPort = await xds.listen(opts.xdsPort, opts.xdsHost ?? '0.0.0.0');
      cleanup.unshift(() => xds.close());
      const api = await buildApi({
        store,
        token: token.token,
        registry,
        logger: log,
        nodes: () => xds.status().map(nodeView),
        ...(opts.apiBodyLimit ? { bodyLimit: opts.apiBodyLimit } : {}),
      });
      cleanup.unshift(() => api.close());
      const apiHost = opts.apiHost ?? '127.0.0.1';
      await api.listen({ port: opts.apiPort, host: apiHost });
      const addr = api.server.address();
      const apiPort = typeof addr === 'object' && addr ? addr.port : opts.apiPort;
      const apiUrl = `http://${apiHost.includes(':') ? `[${apiHost}]` : apiHost}:${apiPort}`;
      const cp = new ControlPlane(store, xds, api, publisher, xdsPort, apiPort, apiUrl, token.file, log, unwatch);
      cp.pruneTimer = setInterval(() => publisher.prune(), 60_000).unref();
      log.info({ xdsPort, apiPort, apiUrl, revision: (await store.current()).revision, tls: !!tls, mtls: !!tls?.clientCa }, 'control plane ready');
      return cp;
    } catch (err) {
      for (const c of cleanup) await c().catch(() => undefined);
      if (err instanceof StartupError) throw err;
      throw new StartupError((err as Error).message, { cause: err });
    }
  }

  /** Stops accepting API requests and xDS streams, then closes the store. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.pruneTimer);
      this.unwatch();
      await this.api.close();
      await this.xds.close();
      await this.store.close();
      this.log.info('control plane stopped');
    })();
    return this.closed;
  }
}

/**
 * Parses and strictly checks (proto decode and Envoy's field rules) a --resources file: a list of
 * raw resources, or { resources: [...] }.
 */
function readResourcesFile(file: string): RawResource[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new StartupError(`cannot read --resources ${file}: ${(err as Error).message}`, { cause: err });
  }
  const parsed = parseConfigText(text, formatFromHint(file));
  const fail = (problems: Problem[]) =>
    new StartupError(`--resources ${file} is invalid; nothing was loaded:\n${problems.map((p) => `  ${file}: ${p.path}: ${p.message}`).join('\n')}`);
  if (!parsed.ok) throw fail(parsed.problems);
  const value = parsed.value;
  const list = Array.isArray(value) ? value : value && typeof value === 'object' && Array.isArray((value as { resources?: unknown }).resources) ? (value as { resources: unknown[] }).resources : undefined;
  if (!list) throw fail([{ path: '$', message: 'expected a list of resources with "@type", or an object with a "resources" list' }]);
  const problems: Problem[] = [];
  list.forEach((item, i) => {
    const shape = schemaProblems(RawResourceSchema, item, `$[${i}]`);
    if (shape.length > 0) return problems.push(...shape);
    const d = decodeRawResource(item as RawResource, `$[${i}]`);
    if ('problems' in d) problems.push(...d.problems);
    else problems.push(...rawResourceRuleProblems(d.resource, `$[${i}]`));
  });
  if (problems.length > 0) throw fail(problems);
  return list as RawResource[];
}

/** Upserts the file's resources (by type and name) into the stored config as one revision. */
async function loadResources(store: Store, file: string, resources: RawResource[], log: Logger): Promise<void> {
  const cur = await store.current();
  const ids = (r: RawResource) => {
    const d = decodeRawResource(r, '$');
    return 'resource' in d ? `${d.resource.typeUrl}|${d.resource.name}` : '';
  };
  const fromFile = new Set(resources.map(ids));
  const next: ConfigDocument = { ...cur.config, resources: [...cur.config.resources.filter((r) => !fromFile.has(ids(r))), ...resources] };
  const v = validateConfig(next);
  if (!v.ok) throw new StartupError(`--resources ${file} does not fit the stored config; nothing was loaded:\n${v.problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`);
  const r = await store.apply(v.config, { message: `--resources ${file}` });
  log.info({ file, resources: resources.length, revision: r.snapshot.revision, changed: r.changed }, 'loaded raw resources');
}

/** What the publisher needs from the xDS server: where open streams are, and a way to move them. */
export interface GroupedStreams {
  /** Node groups with at least one open stream. */
  groupsInUse(): ReadonlyMap<string, number>;
  /** Asks the grouper again for every open stream; returns how many moved. */
  regroup(): number;
}

/**
 * Turns committed revisions into xDS snapshots. Each revision is translated, and each resource
 * encoded only when its content changed, so unchanged resources keep their objects. A node's group
 * is the set of node selectors it matches (model/node-groups.ts): every node in a group receives
 * the same resources, so there is one snapshot (and one response body) per distinct set, not per
 * node. When a revision changes the selectors, open streams are regrouped before the snapshots
 * are set. Existing groups get only what changed (SnapshotCache.updateSnapshot), so a one-endpoint
 * change costs the same per group whatever the config's size. Groups are created when a node of
 * theirs connects and dropped when none is left.
 */
export class SnapshotPublisher {
  private streams: GroupedStreams = { groupsInUse: () => new Map(), regroup: () => 0 };
  private revision = -1;
  private audience = new NodeAudience({ resources: [] });
  private selectorsKey = this.audience.selectorsKey();
  private encoded = new Map<TranslatedResource, XdsResource>();
  /** The current revision's resources by type and name. */
  private items = new Map<string, Served>();
  /** The full resource list per group under the current revision, built on first use. */
  private lists = new Map<string, XdsResource[]>();
  /** Unchanged resources keep their encoded objects across revisions. */
  private readonly encoder = new ResourceEncoder();
  /** The matched selector keys each known group stands for. */
  private readonly selectorsOf = new Map<string, ReadonlySet<string>>();
  private readonly revisionGauge: Gauge;
  private readonly publishSeconds: Histogram;
  private readonly failures: Counter;

  constructor(
    private readonly cache: SnapshotCache,
    registry: Registry,
    private readonly log: Logger,
  ) {
    this.revisionGauge = new Gauge({ name: 'ebpf_xds_config_revision', help: 'the config revision being served', registers: [registry] });
    this.publishSeconds = new Histogram({
      name: 'ebpf_xds_snapshot_publish_seconds',
      help: 'time from a committed revision to snapshots set for every node group (validate, translate, encode, regroup, set)',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    });
    this.failures = new Counter({ name: 'ebpf_xds_snapshot_publish_failures_total', help: 'revisions that could not be translated and were not served', registers: [registry] });
  }

  get servedRevision(): number {
    return this.revision;
  }

  /** Connects the xDS server's streams (it is built after the publisher, which it uses as grouper). */
  bindStreams(streams: GroupedStreams): void {
    this.streams = streams;
  }

  publish(snap: ConfigSnapshot): void {
    const started = process.hrtime.bigint();
    const v = validateConfig(snap.config);
    if (!v.ok) {
      // Only possible when validation rules got stricter than those the revision was stored under.
      this.failures.inc();
      this.log.error({ revision: snap.revision, problems: v.problems.slice(0, 20) }, 'stored config is invalid; still serving the previous revision. Fix it with PUT /v1/config');
      return;
    }
    const translation = translate(v);
    const version = String(snap.revision);
    this.encoded = this.encoder.encodeAll(translation.resources);
    this.revision = snap.revision;
    this.audience = new NodeAudience(translation);
    this.lists = new Map();
    this.revisionGauge.set(snap.revision);

    // What differs from the previous revision, by type and name: content, audience, presence.
    const previous = this.items;
    this.items = new Map();
    translation.resources.forEach((r, index) => {
      this.items.set(`${r.typeUrl}\u0000${r.name}`, { typeUrl: r.typeUrl, name: r.name, index, resource: this.encoded.get(r) as XdsResource, audience: this.audience.audienceKey(index) });
    });
    const changed: Served[] = [];
    for (const [key, it] of this.items) {
      const was = previous.get(key);
      if (!was || was.resource !== it.resource || was.audience !== it.audience) changed.push(it);
    }
    for (const [key, was] of previous) if (!this.items.has(key)) changed.push(was);

    // Selectors changed: a node may now match a different set, so move streams first. The grouper
    // (groupFor) gives groups that appear their full snapshot at this revision.
    const selectorsKey = this.audience.selectorsKey();
    let moved = 0;
    if (selectorsKey !== this.selectorsKey) {
      this.selectorsKey = selectorsKey;
      moved = this.streams.regroup();
    }
    const inUse = this.streams.groupsInUse();
    let updated = 0;
    // Groups in use without a snapshot exist only when no revision could be served before.
    for (const group of new Set([...this.cache.groups(), ...inUse.keys()])) {
      const matched = this.selectorsOf.get(group);
      const current = this.cache.snapshot(group);
      if (!inUse.has(group) || !matched) {
        this.drop(group);
        continue;
      }
      if (!current) {
        this.cache.setSnapshot(group, version, this.listFor(group, matched));
        updated++;
        continue;
      }
      if (current.version === version || changed.length === 0) continue; // set by groupFor just now, or nothing to do
      if (changed.length > this.items.size / 2) {
        this.cache.setSnapshot(group, version, this.listFor(group, matched));
        updated++;
        continue;
      }
      const set: XdsResource[] = [];
      const remove: ResourceKey[] = [];
      for (const it of changed) {
        const now = this.items.get(`${it.typeUrl}\u0000${it.name}`);
        if (now && this.audience.receives(now.index, matched)) set.push(now.resource);
        else if (current.type(it.typeUrl).resources.has(it.name)) remove.push({ typeUrl: it.typeUrl, name: it.name });
      }
      if (set.length === 0 && remove.length === 0) continue;
      this.cache.updateSnapshot(group, version, { set, remove });
      updated++;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.publishSeconds.observe(seconds);
    this.log.info(
      { revision: snap.revision, resources: translation.resources.length, changed: changed.length, groups: this.cache.groups().length, updated, moved, ms: Math.round(seconds * 1000) },
      'published revision',
    );
  }

  /** The NodeGrouper: a node's group under the current revision, its snapshot created on first sight. */
  groupFor(node: NodeInfo): string {
    const identity: NodeIdentity = { id: node.id, cluster: node.cluster, metadata: node.metadata };
    const matched = this.audience.matchedSelectors(identity);
    const group = nodeGroupName(matched);
    if (!this.selectorsOf.has(group)) this.selectorsOf.set(group, new Set(matched));
    if (this.revision >= 0 && !this.cache.snapshot(group)) {
      this.cache.setSnapshot(group, String(this.revision), this.listFor(group, this.selectorsOf.get(group) as ReadonlySet<string>));
    }
    return group;
  }

  /** Drops snapshots of groups with no connected stream; they are rebuilt when a node returns. */
  prune(): void {
    const inUse = this.streams.groupsInUse();
    for (const group of this.cache.groups()) if (!inUse.has(group)) this.drop(group);
  }

  private drop(group: string): void {
    this.cache.clearSnapshot(group);
    this.selectorsOf.delete(group);
  }

  private listFor(group: string, matched: ReadonlySet<string>): XdsResource[] {
    let list = this.lists.get(group);
    if (!list) {
      list = this.audience.resourcesFor(matched).map((r) => this.encoded.get(r) as XdsResource);
      this.lists.set(group, list);
    }
    return list;
  }
}

/** One resource of the served revision: its encoding and who receives it. */
interface Served {
  typeUrl: string;
  name: string;
  /** Position in the revision's translation (for NodeAudience.receives). */
  index: number;
  resource: XdsResource;
  audience: string;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** The API's view of one xDS stream. */
function nodeView(s: ClientStatus): NodeView {
  const node = s.node;
  const userAgent = node?.userAgentName ? `${node.userAgentName}${node.userAgentVersion ? `/${node.userAgentVersion}` : ''}` : undefined;
  return {
    streamId: s.streamId,
    protocol: s.protocol,
    service: s.service,
    peer: s.peer,
    connectedAt: s.connectedAt,
    node: node ? { id: node.id, cluster: node.cluster, metadata: node.metadata, ...(userAgent ? { userAgent } : {}) } : null,
    group: s.group,
    types: s.types.map((t) => ({
      typeUrl: t.typeUrl,
      wildcard: t.subscription.wildcard,
      subscribedNames: t.subscription.nameCount,
      sent: t.lastSent ? { version: t.lastSent.version, nonce: t.lastSent.nonce, at: iso(t.lastSent.at), resources: t.lastSent.resources } : null,
      acked: t.acked ? { version: t.acked.version, at: iso(t.acked.at) } : null,
      lastNack: t.lastNack ? { version: t.lastNack.version, message: t.lastNack.message, at: iso(t.lastNack.at) } : null,
      awaitingAck: t.awaitingAck,
    })),
  };
}

