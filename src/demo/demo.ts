// `ebpf-xds start`: the whole system on one machine. The control plane runs in this process (the
// operator's host: API and xDS on this host's loopback); the agent and its proxy run in a
// middlebox namespace between a client, two servers and a blocked client, and reach xDS through a
// Unix-socket bridge (a namespace has its own loopback). The demo applies an example config
// through the REST API, keeps verified traffic going through every listener, and shows what the
// agent, the BPF counters and the control plane report. Everything it creates is registered
// for cleanup the moment it exists, so stop() undoes a start that failed halfway as well.
import http from 'node:http';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, rmdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import { stringify } from 'yaml';
import { makeCgroup, removeCgroup } from '../agent/bpf/cgroup.js';
import { removePinTree } from '../agent/bpf/pins.js';
import { ApiClient } from '../api/client.js';
import type { NodeView } from '../api/nodes.js';
import { ControlPlane } from '../control-plane.js';
import { bridge } from './bridge.js';
import { DemoChild } from './children.js';
import { DEMO_LISTENERS, DEMO_NODE_ID, DROP_RULE_NAME, SERVER_PORTS, demoConfig } from './config.js';
import { deleteNetns, run, type Netns } from './netns.js';
import { parsePrometheus } from './prom-text.js';
import { runState, sweepStaleDemos, type RunState } from './state.js';
import { renderLine, renderTable } from './table.js';
import { DemoTopology } from './topology.js';
import type { ProbeStats, ProbeTarget, TargetStats } from './traffic.js';
import type { DriveWorker, WorkerSpec } from './traffic-main.js';
import { buildView, type MetricsSample } from './view.js';

export interface DemoOptions {
  dataDir: string;
  apiPort: number;
  xdsPort: number;
  xdsHost: string;
  /** Port on this host's loopback that shows the agent's metrics port. */
  agentMetricsPort: number;
  /** Traffic per listener, MB/s. */
  rateMBps: number;
  output: 'table' | 'lines';
  intervalMs: number;
  pinBase: string;
  logLevel: string;
  write: (text: string) => void;
  /** Terminal width for the table. */
  columns: () => number;
}

/** Ports inside the middlebox namespace (its own loopback: nothing else can hold them). */
const NS_XDS_PORT = 18000;
const NS_METRICS_PORT = 9901;
const READY_TIMEOUT_MS = 90_000;

class Aborted extends Error {
  constructor() {
    super('the demo was stopped while it was starting');
  }
}

interface Cleanup {
  what: string;
  run: () => Promise<unknown> | unknown;
}

export class Demo {
  private readonly cleanups: Cleanup[] = [];
  private readonly children: DemoChild[] = [];
  private aborted = false;
  private starting: Promise<void> | undefined;
  private stopped: Promise<string[]> | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private drawnLines = 0;
  private readonly startedAt = Date.now();
  private readonly state: RunState;
  private readonly logDir: string;
  private cp: ControlPlane | undefined;
  private api: ApiClient | undefined;
  private topo: DemoTopology | undefined;
  private clientNow: { at: number; targets: Record<string, TargetStats> } | undefined;
  private clientPrev: { at: number; targets: Record<string, TargetStats> } | undefined;
  private probes: Record<string, ProbeStats> = {};
  private lastNack: string | undefined;
  private metrics: MetricsSample | undefined;
  private metricsPrev: MetricsSample | undefined;
  private readonly failedSeen = new Map<string, number>();
  private recentErrors: Array<{ listener: string; message: string; at: number }> = [];
  private agentMetricsPort = 0;
  private revision = 0;
  private previousRevision: number | undefined;

  constructor(
    private readonly o: DemoOptions,
    /** Called once when a part of the running demo fails; the caller stops the demo. */
    private readonly onFatal: (err: Error) => void,
  ) {
    this.state = runState(process.pid, o.pinBase);
    this.logDir = join(o.dataDir, 'demo');
  }

  private say(line: string): void {
    this.o.write(`${line}\n`);
  }

  private later(what: string, fn: () => Promise<unknown> | unknown): void {
    this.cleanups.push({ what, run: fn });
  }

  private check(): void {
    if (this.aborted) throw new Aborted();
  }

  private async step<T>(what: string, fn: () => Promise<T>): Promise<T> {
    this.check();
    this.say(`· ${what}`);
    const r = await fn();
    this.check();
    return r;
  }

  /** Polls cond until it holds; stops early when the demo is stopped. */
  private async until(what: string, cond: () => Promise<boolean>, timeoutMs: number, explain: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.check();
      if (await cond().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`${what}: not done after ${timeoutMs / 1000} s. ${explain()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const o = this.o;
    const swept = await sweepStaleDemos(o.pinBase);
    if (swept.length > 0) this.say(`· removed what an earlier demo left behind: ${swept.join(', ')}`);
    mkdirSync(this.logDir, { recursive: true });
    mkdirSync(this.state.runDir, { recursive: true });
    this.later(`run directory ${this.state.runDir}`, () => {
      rmSync(this.state.runDir, { recursive: true, force: true });
      removeIfEmpty(join(this.state.runDir, '..'));
    });

    const cpLog = join(this.logDir, 'control-plane.log');
    const logger: Logger = pino({ name: 'ebpf-xds', level: o.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: cpLog, sync: true }));
    this.cp = await this.step(`starting the control plane (store in ${o.dataDir}, log ${cpLog})`, () =>
      ControlPlane.start({ dataDir: o.dataDir, xdsPort: o.xdsPort, xdsHost: o.xdsHost, apiPort: o.apiPort, apiHost: '127.0.0.1', logger, announce: (l) => this.say(`  ${l}`) }),
    );
    const cp = this.cp;
    this.later('the control plane', () => cp.close());
    this.api = new ApiClient({ baseUrl: cp.apiUrl, token: readFileSync(cp.tokenFile, 'utf8').trim() });
    // The agent's metrics port on this host: a Unix socket that the bridge in mb serves later.
    // Bound now, so a port in use fails the start before anything else is built.
    const metricsSock = join(this.state.runDir, 'agent-metrics.sock');
    const metricsBridge = await bridge({ tcp: { host: '127.0.0.1', port: o.agentMetricsPort } }, { unix: metricsSock }).catch((e: unknown) => {
      throw new Error(`--agent-metrics-port ${o.agentMetricsPort}: ${(e as Error).message}`);
    });
    this.agentMetricsPort = metricsBridge.port!;
    this.later('the metrics bridge', () => metricsBridge.close());

    this.topo = await this.step('building the namespaces: client, middlebox (mb), servers s1 and s2, and a blocked client', () =>
      DemoTopology.create(process.pid, (ns) => this.later(`namespace ${ns.name}`, () => deleteNetns(ns.name))),
    );
    const topo = this.topo;
    const a = topo.addresses;

    const { cert, key } = await this.step('making a TLS certificate for a.demo.test and b.demo.test (openssl)', () => this.makeCert());
    await this.step('applying the example config through the REST API', () => this.applyConfig());

    // xDS: the agent dials 127.0.0.1:18000 inside mb; the bridge there hands the connection to a
    // Unix socket, and this process connects it to the control plane's xDS port.
    const xdsSock = join(this.state.runDir, 'xds.sock');
    const toXds = await bridge({ unix: xdsSock }, { tcp: { host: '127.0.0.1', port: cp.xdsPort } });
    this.later('the xDS bridge', () => toXds.close());
    const nsBridge = this.spawn({
      what: 'the bridge in the middlebox namespace',
      ns: topo.host('mb'),
      script: 'src/demo/bridge-main.ts',
      args: [
        JSON.stringify([
          { from: { tcp: { host: '127.0.0.1', port: NS_XDS_PORT } }, to: { unix: xdsSock } },
          { from: { unix: metricsSock }, to: { tcp: { host: '127.0.0.1', port: NS_METRICS_PORT } } },
        ]),
      ],
      log: 'bridge.log',
    });
    await this.step('connecting the middlebox namespace to the control plane (xDS bridge)', () => nsBridge.waitFor('ready', 30_000));

    makeCgroup(join(this.state.cgroup, '..'), this.state.cgroup.slice(this.state.cgroup.lastIndexOf('/') + 1));
    this.later(`cgroup ${this.state.cgroup}`, () => removeCgroup(this.state.cgroup));
    this.later(`pins under ${this.state.pinRoot}`, () => {
      removePinTree(this.state.pinRoot);
      removeIfEmpty(o.pinBase);
    });
    const agentLog = join(this.logDir, 'agent.log');
    const agent = this.spawn({
      what: 'the agent',
      ns: topo.host('mb'),
      script: 'src/cli.ts',
      args: [
        'agent',
        '--control-plane', `127.0.0.1:${NS_XDS_PORT}`,
        '--node-id', DEMO_NODE_ID,
        '--cluster', 'demo',
        '--metrics-port', String(NS_METRICS_PORT),
        '--metrics-host', '127.0.0.1',
        '--pin-root', this.state.pinRoot,
        '--cgroup', this.state.cgroup,
        '--detach-on-exit',
        '--log-level', o.logLevel,
      ],
      log: 'agent.log',
      // The agent stops before anything it needs goes: it detaches its programs on SIGTERM.
      graceMs: 20_000,
    });
    await this.step(`starting the agent in namespace ${topo.host('mb').name} (log ${agentLog}); waiting until it applied revision ${this.revision}`, () =>
      this.until('the agent applying the example config', () => this.agentApplied(), READY_TIMEOUT_MS, () =>
        [this.lastNack ? `The agent NACKed it: ${this.lastNack}` : '', `Last lines of ${agentLog}:\n${agent.lastLines()}`].filter(Boolean).join('\n'),
      ),
    );

    const servers = (['s1', 's2'] as const).map((name) =>
      this.spawn({
        what: `server ${name}`,
        ns: topo.host(name),
        script: 'src/demo/traffic-main.ts',
        args: [JSON.stringify({ kind: 'serve', name, host: '0.0.0.0', ports: [{ port: SERVER_PORTS.plain }, { port: SERVER_PORTS.tls, tls: { certFile: cert, keyFile: key } }] } satisfies WorkerSpec)],
        log: `server-${name}.log`,
      }),
    );
    await this.step('starting the servers s1 and s2 (plain on 9000, TLS on 9443)', () => Promise.all(servers.map((s) => s.waitFor('ready', 30_000))));

    const rate = o.rateMBps * 1e6;
    const targets: DriveWorker['targets'] = DEMO_LISTENERS.flatMap((l): DriveWorker['targets'] =>
      l.sni
        ? l.sni.map((r) => ({ id: `${l.name}/${r.serverName}`, listener: l.name, host: a.mbForClient, port: l.port, conns: 2, bytesPerConn: Math.round(rate / l.sni!.length), rate: rate / l.sni!.length, tls: { servername: r.serverName, caFile: cert, expect: r.server } }))
        : [{ id: l.name, listener: l.name, host: a.mbForClient, port: l.port, conns: 2, bytesPerConn: Math.round(rate * 2), rate }],
    );
    const probes: ProbeTarget[] = DEMO_LISTENERS.map((l) => ({ id: l.name, host: a.mbForBlocked, port: l.port, intervalMs: 1000, timeoutMs: 800 }));
    const reportMs = Math.min(1000, o.intervalMs);
    const client = this.spawn({
      what: 'the client',
      ns: topo.host('client'),
      script: 'src/demo/traffic-main.ts',
      args: [JSON.stringify({ kind: 'drive', targets, probes: [], reportMs } satisfies WorkerSpec)],
      log: 'client.log',
      onEvent: (e) => e['event'] === 'stats' && this.onClientStats(e['targets'] as Record<string, TargetStats>),
    });
    const blocked = this.spawn({
      what: 'the blocked client',
      ns: topo.host('blocked'),
      script: 'src/demo/traffic-main.ts',
      args: [JSON.stringify({ kind: 'drive', targets: [], probes, reportMs } satisfies WorkerSpec)],
      log: 'blocked.log',
      onEvent: (e) => {
        if (e['event'] === 'stats') this.probes = e['probes'] as Record<string, ProbeStats>;
      },
    });
    await this.step(`sending traffic: ${o.rateMBps} MB/s through each listener, and connection attempts from the blocked client`, () =>
      Promise.all([client.waitFor('ready', 30_000), blocked.waitFor('ready', 30_000)]),
    );
    this.banner();
    this.scheduleRefresh();
  }

  private spawn(c: { what: string; ns: Netns; script: string; args: string[]; log: string; graceMs?: number; onEvent?: (e: Record<string, unknown>) => void }): DemoChild {
    this.check();
    const child = new DemoChild({
      what: c.what,
      ns: c.ns,
      script: c.script,
      args: c.args,
      logFile: join(this.logDir, c.log),
      env: { LOG_LEVEL: this.o.logLevel },
      ...(c.onEvent ? { onEvent: c.onEvent } : {}),
    });
    this.children.push(child);
    this.later(c.what, () => child.stop(c.graceMs ?? 5000));
    void child.exited.then(({ code, signal }) => {
      if (child.stopping || this.stopped) return;
      this.onFatal(new Error(`${c.what} exited unexpectedly (${signal ?? `code ${code}`}); last lines of ${join(this.logDir, c.log)}:\n${child.lastLines()}`));
    });
    return child;
  }

  /** A self-signed certificate for both server names; returns the files (the key is mode 0600). */
  private async makeCert(): Promise<{ cert: string; key: string }> {
    const crt = join(this.state.runDir, 'demo-tls.crt');
    const key = join(this.state.runDir, 'demo-tls.key');
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', crt, '-days', '30', '-subj', '/CN=ebpf-xds demo',
      '-addext', 'subjectAltName=DNS:a.demo.test,DNS:b.demo.test',
    ]);
    chmodSync(key, 0o600);
    return { cert: crt, key };
  }

  private async applyConfig(): Promise<void> {
    const api = this.api!;
    const config = demoConfig(this.topo!.addresses);
    const cur = await api.request<Record<string, unknown[] | undefined>>('GET', '/v1/config?format=json');
    const curRevision = Number(cur.headers.get('x-config-revision') ?? 0);
    const file = join(this.logDir, 'config.yaml');
    writeFileSync(file, `# The demo's example config, as applied by \`ebpf-xds start\`.\n# Edit it and apply it again: npx ebpf-xds apply -f ${relativePath(file)}\n${stringify(config)}`);
    const put = await api.request<{ revision: number; changed: boolean }>('PUT', '/v1/config', { body: config });
    this.revision = put.body.revision;
    const hadOwn = ['listeners', 'clusters', 'dropRules', 'resources'].some((k) => (cur.body[k]?.length ?? 0) > 0);
    if (put.body.changed && hadOwn) this.previousRevision = curRevision;
    this.say(`  revision ${this.revision}${put.body.changed ? '' : ' (already current)'}; the config is also in ${relativePath(file)}`);
  }

  /** True once the agent ACKed the demo's revision and applied every listener. */
  private async agentApplied(): Promise<boolean> {
    const { body } = await this.api!.request<{ items: NodeView[] }>('GET', '/v1/nodes');
    const me = body.items.find((n) => n.node?.id === DEMO_NODE_ID);
    const lds = me?.types.find((t) => t.typeUrl.endsWith('.Listener'));
    if (lds?.lastNack && Number(lds.lastNack.version) >= this.revision && lds.lastNack.message !== this.lastNack) {
      this.lastNack = lds.lastNack.message;
      this.say(`  the agent NACKed the example config (it tries again every 5 s): ${this.lastNack}`);
    }
    if (!lds || Number(lds.acked?.version ?? -1) < this.revision) return false;
    const samples = parsePrometheus(await this.agentGet('/metrics'));
    return DEMO_LISTENERS.every((l) => samples.some((s) => s.name === 'exds_listener_applied' && s.labels['listener'] === l.name && s.value === 1));
  }

  /** GET on the agent's metrics port, through the bridge's Unix socket. */
  private agentGet(path: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = http.get({ socketPath: join(this.state.runDir, 'agent-metrics.sock'), path, timeout: 3000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`agent ${path}: HTTP ${res.statusCode}: ${body.trim()}`))));
      });
      req.on('timeout', () => req.destroy(new Error(`agent ${path}: no answer in 3 s`)));
      req.on('error', reject);
    });
  }

  private onClientStats(targets: Record<string, TargetStats>): void {
    const at = Date.now();
    for (const [id, t] of Object.entries(targets)) {
      if (t.failed > (this.failedSeen.get(id) ?? 0) && t.lastError) this.recentErrors.push({ listener: t.listener, message: t.lastError, at });
      this.failedSeen.set(id, t.failed);
    }
    this.clientPrev = this.clientNow;
    this.clientNow = { at, targets };
  }

  private banner(): void {
    const o = this.o;
    const cp = this.cp!;
    const topo = this.topo!;
    const a = topo.addresses;
    const token = relativePath(cp.tokenFile);
    const logs = relativePath(this.logDir);
    const lines = [
      '',
      'ebpf-xds is running: the control plane on this host, the agent in a middlebox namespace.',
      '',
      `  API         ${cp.apiUrl}   OpenAPI docs: ${cp.apiUrl}/docs   token: ${token}`,
      `  xDS         ${o.xdsHost}:${cp.xdsPort} (ADS, SotW and Delta); the agent reaches it through a bridge into its namespace`,
      `  agent       node ${DEMO_NODE_ID} in namespace ${topo.host('mb').name}; metrics http://127.0.0.1:${this.agentMetricsPort}/metrics (also /status, /readyz)`,
      `  network     client ${a.client} → mb ${a.mbForClient} (eth0) → s1 ${a.s1}, s2 ${a.s2}; blocked client ${a.blocked} → mb ${a.mbForBlocked} (eth3)`,
      `  config      revision ${this.revision} (${logs}/config.yaml): bulk-skb :7001 SKB splice, bulk-xdp :7002 XDP splice on eth0,`,
      `              tls-sni :7443 user space, SNI a.demo.test → s1 and b.demo.test → s2; drop rule "${DROP_RULE_NAME}" ${a.blockedNet}`,
      `  kernel      pins ${this.state.pinRoot}, cgroup ${this.state.cgroup}`,
      `  logs        ${logs}/ (control-plane.log, agent.log, ...)`,
      ...(this.previousRevision !== undefined
        ? [`  note        the config you had (revision ${this.previousRevision}) is in the history: POST /v1/revisions/${this.previousRevision}/rollback restores it`]
        : []),
      '',
      'Try, in another terminal (as root, in this directory):',
      `  export EBPF_XDS_API=${cp.apiUrl} EBPF_XDS_TOKEN=$(cat ${token})`,
      '  npx ebpf-xds get nodes                  # xDS versions ACKed per node, and the last NACK',
      '  npx ebpf-xds get listeners',
      `  curl -s -H "Authorization: Bearer $EBPF_XDS_TOKEN" ${cp.apiUrl}/v1/nodes`,
      `  curl -s http://127.0.0.1:${this.agentMetricsPort}/metrics | grep -E 'exds_(spliced_bytes|proxy_connections|drop_packets)_total'`,
      `  npx ebpf-xds apply -f ${logs}/config.yaml   # after editing it, e.g. a listener on eth9 to see a NACK`,
      `  nsenter --net=/var/run/netns/${topo.host('client').name} curl -sv telnet://${a.mbForClient}:7001`,
      '',
      'Ctrl-C stops the demo and removes everything it created.',
      '',
    ];
    this.say(lines.join('\n'));
  }

  private scheduleRefresh(): void {
    const tick = async () => {
      if (this.stopped) return;
      await this.refresh();
      if (!this.stopped) this.refreshTimer = setTimeout(() => void tick(), this.o.intervalMs);
    };
    this.refreshTimer = setTimeout(() => void tick(), this.o.output === 'table' ? 500 : this.o.intervalMs);
  }

  private async refresh(): Promise<void> {
    const problems: string[] = [];
    try {
      const text = await this.agentGet('/metrics');
      this.metricsPrev = this.metrics;
      this.metrics = { at: Date.now(), samples: parsePrometheus(text) };
    } catch (e) {
      problems.push(`agent metrics: ${(e as Error).message}`);
    }
    let nodes: NodeView[] = [];
    try {
      nodes = (await this.api!.request<{ items: NodeView[] }>('GET', '/v1/nodes')).body.items;
    } catch (e) {
      problems.push(`control plane: ${(e as Error).message}`);
    }
    if (this.stopped) return;
    const now = Date.now();
    this.recentErrors = this.recentErrors.filter((e) => now - e.at < 30_000);
    const view = buildView({
      uptimeMs: now - this.startedAt,
      listeners: DEMO_LISTENERS,
      ...(this.clientNow ? { drive: { ...this.clientNow, probes: this.probes } } : {}),
      ...(this.clientPrev ? { drivePrev: { ...this.clientPrev, probes: this.probes } } : {}),
      ...(this.metrics ? { metrics: this.metrics } : {}),
      ...(this.metricsPrev ? { metricsPrev: this.metricsPrev } : {}),
      nodes,
      dropRule: { name: DROP_RULE_NAME, cidr: this.topo!.addresses.blockedNet },
      recentErrors: this.recentErrors.map(({ listener, message }) => ({ listener, message })),
      problems,
    });
    if (this.o.output === 'lines') {
      this.say(renderLine(view));
      return;
    }
    const width = Math.max(60, this.o.columns());
    const lines = renderTable(view, width).map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
    // Move up over the previous block and clear it, then draw the new one.
    this.o.write(`${this.drawnLines > 0 ? `\x1b[${this.drawnLines}A\r\x1b[J` : ''}${lines.join('\n')}\n`);
    this.drawnLines = lines.length;
  }

  /**
   * Stops the traffic, the agent (which detaches its programs), the bridges and the control
   * plane, and removes the namespaces, pins, cgroup and run directory, newest first. Returns
   * what could not be removed (empty when everything went). Safe to call at any time, also
   * while start() is still running, and more than once.
   */
  stop(): Promise<string[]> {
    this.stopped ??= (async () => {
      this.aborted = true;
      if (this.refreshTimer) clearTimeout(this.refreshTimer);
      await this.starting?.catch(() => undefined);
      if (this.drawnLines > 0) this.o.write('\n');
      this.say('stopping: traffic, agent (detaching its programs), bridges, control plane; removing namespaces, pins, cgroup');
      const errors: string[] = [];
      for (const c of [...this.cleanups].reverse()) {
        try {
          await c.run();
        } catch (e) {
          errors.push(`${c.what}: ${(e as Error).message}`);
        }
      }
      return errors;
    })();
    return this.stopped;
  }
}

function relativePath(p: string): string {
  const r = relative(process.cwd(), resolve(p));
  return r.startsWith('..') ? resolve(p) : `./${r}`;
}

function removeIfEmpty(dir: string): void {
  if (existsSync(dir) && readdirSync(dir).length === 0) rmdirSync(dir);
}

export { Aborted };
