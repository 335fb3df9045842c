// The node agent process: probes what the node can do, presents it as the xDS Node, and wires
// the xDS client → decode → reconciler (kernel datapaths) + embedded proxy, with /healthz,
// /readyz, /status and /metrics on its metrics port. Failures of single listeners become NACKs
// and are retried until they apply; the last good configuration stays in force meanwhile.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ResourceType } from '../model/type-urls.js';
import { probeAttachTypes, type AttachProbe } from './attach-probe.js';
import { cgroupOf, moveToCgroup } from './bpf/cgroup.js';
import { onLibbpfMessage } from './bpf/libbpf.js';
import { PinLayout } from './bpf/pins.js';
import { decodeState, type ProxyMode, type ResourceView } from './decode.js';
import { listInterfaces } from './interfaces.js';
import { nodeInfo } from './node-info.js';
import { EmbeddedProxy } from './proxy/proxy.js';
import { SkbKeeper } from './proxy/skb-keeper.js';
import { Reconciler, type ReconcileReport } from './reconciler.js';
import { XdsClient, type ApplyOutcome, type ApplyTrigger } from './xds-client.js';

export interface AgentTlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export interface AgentOptions {
  /** host:port of the control plane's xDS port. */
  controlPlane: string;
  nodeId?: string;
  cluster?: string;
  proxy: ProxyMode;
  metricsPort: number;
  metricsHost: string;
  pinRoot: string;
  /** cgroup v2 directory of the proxy's sockets (SKB splice cleanup runs for it); embedded mode moves the agent into it. Default: the agent's own. */
  cgroup?: string;
  tls?: AgentTlsFiles;
  logger: Logger;
  /** How often a failed listener (or a draining datapath) is tried again (default 5 s). */
  retryIntervalMs?: number;
  /** Remove every attachment and pin on exit (uninstall) instead of leaving them to the next agent. */
  detachOnExit?: boolean;
  /** xDS protocol: auto (Delta, SotW if the server has no Delta), delta or sotw. */
  xdsProtocol?: 'auto' | 'delta' | 'sotw';
}

export class AgentStartError extends Error {}

export class Agent {
  private ready = false;
  private readonly seen = new Set<string>();
  private retryTimer: NodeJS.Timeout | undefined;
  private lastReport: ReconcileReport | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly opts: AgentOptions,
    readonly nodeId: string,
    readonly probe: AttachProbe,
    readonly registry: Registry,
    readonly reconciler: Reconciler,
    readonly proxy: EmbeddedProxy | undefined,
    private readonly http: http.Server,
    private client: XdsClient | undefined,
    private readonly skbKeeper: SkbKeeper | undefined,
  ) {}

  /** The metrics port actually bound (0 in the options picks a free one). */
  get metricsPort(): number {
    return (this.http.address() as AddressInfo).port;
  }

  static async start(opts: AgentOptions): Promise<Agent> {
    const log = opts.logger;
    onLibbpfMessage((m) => (m.level === 'warn' ? log.warn({ libbpf: m.text.trim() }, 'libbpf') : log.debug({ libbpf: m.text.trim() }, 'libbpf')));
    const credentials = opts.tls ? xdsTlsCredentials(opts.tls) : undefined;
    let pins: PinLayout;
    try {
      pins = new PinLayout(opts.pinRoot);
    } catch (e) {
      throw new AgentStartError(`--pin-root ${opts.pinRoot}: ${(e as Error).message}`);
    }
    // Sockets belong to the cgroup of the process that creates them, and the SKB splice's release
    // program runs only for that cgroup's: in embedded mode the agent joins the cgroup before it opens any socket.
    let cgroup: string;
    try {
      const own = cgroupOf('self');
      cgroup = opts.cgroup ?? own;
      if (opts.proxy === 'embedded' && cgroup !== own) {
        moveToCgroup(cgroup, process.pid);
        log.info({ cgroup, from: own }, 'joined the SKB splice cgroup (embedded proxy sockets must be in it)');
      }
    } catch (e) {
      throw new AgentStartError(`--cgroup ${opts.cgroup ?? '(own)'}: ${(e as Error).message}`);
    }
    const probe = probeAttachTypes();
    if (probe.supported.length === 0) log.warn({ missing: probe.missing }, 'no BPF attach type works here; the agent proxies in user space only');
    const interfaces = await listInterfaces();
    const node = nodeInfo({ ...(opts.nodeId ? { nodeId: opts.nodeId } : {}), ...(opts.cluster ? { cluster: opts.cluster } : {}), proxy: opts.proxy, interfaces, probe });
    const nodeId = node['id'] as string;
    log.info({ node: nodeId, cluster: opts.cluster ?? '', kernel: probe.kernel, attachTypes: probe.supported, missing: probe.missing, interfaces: interfaces.map((i) => i.name), proxy: opts.proxy, pinRoot: pins.root, cgroup }, 'agent starting');

    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    // SKB-spliced pairs go to a keeper process after their handover, so they outlive this one.
    const skbKeeper = opts.proxy === 'embedded' ? new SkbKeeper({ pinDir: pins.skb, logger: log, registry }) : undefined;
    const reconciler = new Reconciler({ pins, nodeId, mode: opts.proxy, cgroup, probe, logger: log, registry, ...(skbKeeper ? { skbKeeper } : {}) });
    const proxy = opts.proxy === 'embedded' ? new EmbeddedProxy({ logger: log, registry, hooks: reconciler.spliceHooks() }) : undefined;
    if (proxy) reconciler.useServer(proxy);

    let agent: Agent | undefined;
    const server = http.createServer((req, res) => {
      if (!agent) {
        res.writeHead(503).end();
        return;
      }
      agent.serveHttp(req, res).catch((e: unknown) => {
        log.error({ err: e, path: req.url }, 'metrics endpoint failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`error: ${(e as Error).message}\n`);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new AgentStartError(`--metrics-port ${opts.metricsPort} on ${opts.metricsHost}: ${e.code === 'EADDRINUSE' ? 'the port is in use; stop what holds it or choose another port' : e.message}`)),
      );
      server.listen(opts.metricsPort, opts.metricsHost, () => resolve());
    });
    agent = new Agent(opts, nodeId, probe, registry, reconciler, proxy, server, undefined, skbKeeper);
    const client = new XdsClient({
      target: opts.controlPlane,
      node,
      logger: log,
      registry,
      ...(credentials ? { credentials } : {}),
      protocol: opts.xdsProtocol ?? 'auto',
      handler: (view, trigger) => agent!.onConfig(view, trigger),
    });
    agent.client = client;
    client.start();
    log.info({ node: nodeId, controlPlane: opts.controlPlane, metricsUrl: `http://${opts.metricsHost}:${agent.metricsPort}`, metricsPort: agent.metricsPort, tls: !!opts.tls }, 'agent started');
    return agent;
  }

  /** Stops xDS and the proxy; leaves every attachment pinned for the next agent (unless detachOnExit). */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.retryTimer) clearTimeout(this.retryTimer);
      await this.client?.close();
      await this.proxy?.close();
      // The keeper finishes the pairs it holds and exits by itself.
      this.skbKeeper?.close();
      if (this.opts.detachOnExit) await this.reconciler.detach();
      else await this.reconciler.release();
      await new Promise<void>((r) => this.http.close(() => r()));
      this.opts.logger.info({ detached: !!this.opts.detachOnExit }, this.opts.detachOnExit ? 'agent stopped; attachments removed' : 'agent stopped; attachments stay pinned for the next agent');
    })();
    return this.stopping;
  }

  /** The xDS handler: decode the view, apply it, and say what to NACK. */
  private async onConfig(view: ResourceView, trigger: ApplyTrigger): Promise<ApplyOutcome> {
    const decoded = decodeState(view, { proxy: this.opts.proxy });
    for (const s of decoded.skipped) this.opts.logger.debug({ listener: s.name, reason: s.reason }, 'listener skipped');
    const problemsOf = (kind: string) => decoded.problems.filter((p) => p.kind === kind).map((p) => p.message);
    const problems = new Map<string, string[]>([
      [ResourceType.Listener, problemsOf('listener')],
      [ResourceType.Cluster, problemsOf('cluster')],
      [ResourceType.ClusterLoadAssignment, problemsOf('cluster_load_assignment')],
    ]);
    if (trigger.kind === 'response') this.seen.add(trigger.typeUrl);
    // Nothing is reconciled before the first listeners and clusters are both known: a partial
    // view (clusters without listeners, right after a restart) would detach what the next
    // response needs again, and an Envoy on this node would lose its datapaths meanwhile.
    if (!this.seen.has(ResourceType.Listener) || !this.seen.has(ResourceType.Cluster)) return { problems, edsNames: decoded.edsNames };
    const listenerProblems = new Map(decoded.problems.filter((p) => p.kind === 'listener').map((p) => [p.name, p.message]));
    const report = await this.reconciler.apply(decoded.state, listenerProblems);
    this.lastReport = report;
    // The keeper starts with the SKB datapath, so the first long pair does not wait for it.
    if (report.listeners.length > 0 && this.reconciler.status().skb) this.skbKeeper?.prepare();
    problems.set(ResourceType.Listener, report.listeners.filter((l) => !l.ok).map((l) => l.error ?? `listener "${l.name}" failed`));
    if (!this.ready) {
      this.ready = true;
      this.opts.logger.info({ listeners: report.listeners.length, failed: report.listeners.filter((l) => !l.ok).length }, 'first configuration applied; ready');
    }
    this.scheduleRetry(report);
    return { problems, edsNames: decoded.edsNames };
  }

  /** Failed listeners (a missing interface may appear) and draining datapaths are looked at again. */
  private scheduleRetry(report: ReconcileReport): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (report.listeners.every((l) => l.ok) && report.draining.length === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.client?.reapply().catch((e: unknown) => this.opts.logger.error({ err: e }, 'retrying the configuration failed'));
    }, this.opts.retryIntervalMs ?? 5000);
    this.retryTimer.unref();
  }

  status(): Record<string, unknown> {
    return {
      node: this.nodeId,
      ready: this.ready,
      proxy: this.opts.proxy,
      attachTypes: this.probe.supported,
      xds: this.client?.status(),
      reconciler: this.reconciler.status(),
      listeners: this.lastReport?.listeners ?? [],
      ...(this.proxy ? { proxyStats: this.proxy.stats() } : {}),
    };
  }

  private async serveHttp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const json = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'only GET' });
    switch (path) {
      case '/healthz':
        return json(200, { status: 'ok' });
      case '/readyz': {
        const xds = this.client?.status();
        if (this.ready) return json(200, { ready: true, connected: xds?.connected ?? false, failedListeners: (this.lastReport?.listeners ?? []).filter((l) => !l.ok) });
        return json(503, { ready: false, reason: `waiting for the first configuration from ${this.opts.controlPlane}`, connected: xds?.connected ?? false, ...(xds?.lastError ? { lastError: xds.lastError } : {}) });
      }
      case '/status':
        return json(200, this.status());
      case '/metrics': {
        const text = await this.registry.metrics();
        res.writeHead(200, { 'content-type': this.registry.contentType });
        res.end(text);
        return;
      }
      default:
        return json(404, { error: `no ${path}; try /healthz, /readyz, /status or /metrics` });
    }
  }
}

/** gRPC channel credentials for xDS over TLS with a client certificate; errors name the file and the flag. */
export function xdsTlsCredentials(files: AgentTlsFiles): grpc.ChannelCredentials {
  const read = (file: string, flag: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new AgentStartError(`${flag} ${file}: ${(e as Error).message}`);
    }
  };
  const ca = read(files.ca, '--tls-ca');
  const key = read(files.key, '--tls-key');
  const cert = read(files.cert, '--tls-cert');
  try {
    return grpc.credentials.createSsl(ca, key, cert);
  } catch (e) {
    throw new AgentStartError(`--tls-cert/--tls-key/--tls-ca: ${(e as Error).message}`);
  }
}
