// Short-connection benchmark (`npm run bench:connlat`): connection setup rate and latency of
// one request/response per connection (100 B up, 1 KiB down), through the middlebox: direct
// routing, HAProxy, and the real agent's embedded proxy (started as `ebpf-xds agent` with the
// control plane, configured through the REST API) with a user-space, an SKB and an XDP listener.
// One connection at a time gives the latency a connection adds; many at a time give the rate.
// CPU is system-wide (/proc/stat) per 1000 connections. Prints as it goes; rewrites its section
// of docs/benchmarks.md and the chart docs/benchmarks-connlat.svg. The middlebox's own share is
// the CPU of the processes in its namespace (the proxy: HAProxy or the agent), from /proc/PID/stat.
//   --seconds S (default 5)   --concurrency 1,16   --modes direct,haproxy,embedded-user,...
//   --no-write   --profile DIR (the agent runs with node --cpu-prof, its profile written to DIR; the
//                profiler's SIGPROF interrupts the verifier, which stops with EAGAIN when a signal is
//                pending: the XDP program fails to load and the xdp mode cannot run under --profile)
//   --agent-root DIR (run the agent of another checkout, with node_modules, e.g. the code before a change)
//   --warmup S (default 1: connections before a mode's first run, not counted)
//   --tw-reuse 0|1|2 (net.ipv4.tcp_tw_reuse in the namespaces, default 1; see timeWaitReuse)
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePrometheus, sumOf } from '../src/demo/prom-text.js';
import { bpfTestEnv, type BpfTestEnv } from '../test/support/bpf-env.js';
import { killAllControlPlanes, spawnCli, startControlPlane, writeTokenFile } from '../test/support/control-plane-process.js';
import { Topology, type Host } from '../test/support/netns.js';
import { NsApi, nsFetch } from '../test/support/ns-http.js';
import { MODES as DATAPATH_MODES, runJson, type BenchTopology, type ModeInstance } from './datapath-modes.js';
import { replaceSection } from './report-doc.js';
import { barChartSvg } from './svg-bars.js';

const DOC = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));
const SVG = fileURLToPath(new URL('../docs/benchmarks-connlat.svg', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const ENDPOINT = fileURLToPath(new URL('./connlat-endpoint.mjs', import.meta.url));
export const CONNLAT_SECTION = 'bench:connlat';

const argv = process.argv.slice(2);
const arg = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const SECONDS = Number(arg('seconds') ?? 5);
/** Connections before the first measured run of a mode, not counted (Node's JIT, HAProxy's pools). */
const WARMUP_SECONDS = Number(arg('warmup') ?? 1);
const CONCURRENCY = (arg('concurrency') ?? '1,16').split(',').map(Number);
const WRITE = !argv.includes('--no-write');
const PROFILE_DIR = arg('profile');
/** Another checkout whose agent runs instead of this one (a before/after comparison on one machine). */
const AGENT_ROOT = arg('agent-root') ?? ROOT;
const TW_REUSE = arg('tw-reuse') ?? '1';
if (!['0', '1', '2'].includes(TW_REUSE)) throw new Error(`--tw-reuse ${TW_REUSE}: use 0, 1 or 2 (net.ipv4.tcp_tw_reuse)`);
const REQ = 100;
const RESP = 1024;
const SERVER_PORT = 9000;
/** Inside mb, whose loopback is its own. */
const AGENT_METRICS_PORT = 9901;

interface Mode {
  id: string;
  label: string;
  description: string;
  /** Listener of the agent's config (embedded modes). */
  listener?: { name: string; port: number; mode: 'userspace' | 'skb' | 'xdp' };
}

const ALL_MODES: Mode[] = [
  { id: 'direct', label: 'direct routing', description: 'no proxy: the middlebox routes (the limit)' },
  { id: 'haproxy', label: 'HAProxy', description: 'HAProxy TCP mode, default configuration, 2 threads (as in bench:datapath)' },
  { id: 'node-pipe', label: 'Node pipe', description: 'a plain Node.js proxy copying in user space (as in bench:datapath): what Node itself costs per connection' },
  { id: 'embedded-user', label: 'embedded proxy (userspace)', description: 'the agent\'s embedded proxy, a `mode: userspace` listener (user-space copy)', listener: { name: 'user', port: 7001, mode: 'userspace' } },
  { id: 'embedded-skb', label: 'embedded proxy (skb)', description: 'a `mode: skb` listener: the proxy hands each connection to the sockmap once it holds no byte in flight; a connection this short usually ends first', listener: { name: 'skb', port: 7002, mode: 'skb' } },
  { id: 'embedded-xdp', label: 'embedded proxy (xdp)', description: 'a `mode: xdp` listener on the client-facing interface: pairing waits for 128 KiB or 1 s, so these connections stay in user space, with XDP splice attached to both interfaces', listener: { name: 'xdp', port: 7003, mode: 'xdp' } },
];
const MODES = ALL_MODES.filter((m) => !arg('modes') || arg('modes')!.split(',').includes(m.id));

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface ConnlatResult {
  mode: string;
  label: string;
  concurrency: number;
  connsPerSec: number;
  errors: number;
  connect: Percentiles;
  ttfb: Percentiles;
  total: Percentiles;
  cpuMsPerKConn: number;
  /** CPU of the processes in the middlebox's namespace (the proxy), per 1000 connections. */
  mbCpuMsPerKConn: number;
  /** Of which in user space (the rest is the kernel's, in system calls and the softirqs they run). */
  mbUserCpuMsPerKConn: number;
  notes: string;
}

function cpuJiffies(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  return user + nice + system + irq + softirq + steal;
}
const HZ = 100; // USER_HZ, the unit of /proc/stat

/**
 * utime + stime (jiffies) of every process whose network namespace is the host's: the proxy
 * (and an idle control plane). A process that ends between the listing and the read is skipped.
 */
function nsProcessJiffies(host: Host): { user: number; sys: number } {
  const want = `net:[${statSync(host.nsPath).ino}]`;
  const total = { user: 0, sys: 0 };
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readlinkSync(`/proc/${pid}/ns/net`) !== want) continue;
      // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total.user += Number(f[11]);
      total.sys += Number(f[12]);
    } catch {
      continue; // the process ended meanwhile
    }
  }
  return total;
}

const log = (s: string) => process.stderr.write(`[bench:connlat] ${s}\n`);
const ms = (n: number) => (n < 10 ? n.toFixed(2) : n.toFixed(1));

/** The agent with its control plane in mb, configured through the REST API. */
interface Agent {
  api: NsApi;
  /** Applies listeners (and the one cluster) and waits until the agent has them. */
  configure(listeners: NonNullable<Mode['listener']>[]): Promise<void>;
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

async function startEmbedded(t: BenchTopology, env: BpfTestEnv): Promise<Agent> {
  const dataDir = mkdtempSync(join(tmpdir(), 'exds-connlat-'));
  const cp = await startControlPlane({ dataDir, tokenFile: writeTokenFile(dataDir), host: t.mb });
  const api = new NsApi(t.mb, cp.apiUrl, cp.token);
  // Logging at warn into a file: the proxy's per-connection info lines, and a parent reading
  // them, would be part of what is measured.
  const logFile = join(dataDir, 'agent.log');
  if (AGENT_ROOT !== ROOT) log(`the agent runs from ${AGENT_ROOT}`);
  const agentArgs = ['agent', '--control-plane', `127.0.0.1:${cp.xdsPort}`, '--node-id', 'bench-mb', '--metrics-port', String(AGENT_METRICS_PORT), '--pin-root', env.pins.root, '--cgroup', env.cgroup, '--detach-on-exit', '--log-level', 'warn'];
  // --cpu-prof is not allowed in NODE_OPTIONS, so it goes on the agent's command line.
  const proc =
    PROFILE_DIR || AGENT_ROOT !== ROOT
      ? t.mb.spawn(process.execPath, [...(PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []), '--import', 'tsx', join(AGENT_ROOT, 'src', 'cli.ts'), ...agentArgs], {
          cwd: AGENT_ROOT,
          env: { ...process.env, LOG_LEVEL: 'warn' },
          stdio: ['ignore', 'pipe', 'pipe'],
        })
      : spawnCli(agentArgs, {}, t.mb);
  proc.stdout?.resume();
  proc.stderr?.pipe(createWriteStream(logFile));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const get = (path: string) => nsFetch(t.mb, 'GET', `http://127.0.0.1:${AGENT_METRICS_PORT}${path}`);
  const agentLog = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-3000) : '');
  const iface = (await t.mb.exec('ip', ['-o', '-4', 'addr', 'show', 'to', t.mbAddr])).split(/\s+/)[1]!;
  return {
    api,
    async configure(listeners) {
      const config = {
        listeners: listeners.map((l) => ({ name: l.name, address: '0.0.0.0', port: l.port, mode: l.mode, cluster: 'server', ...(l.mode === 'xdp' ? { interface: iface } : {}) })),
        clusters: [{ name: 'server', connectTimeout: '1s', endpoints: [{ address: t.serverAddr, port: SERVER_PORT }] }],
      };
      await api.request('PUT', '/v1/config', config);
      const until = Date.now() + 30_000;
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`the agent exited with ${proc.exitCode}; its log:\n${agentLog()}`);
        const r = await get('/metrics');
        const m = r.status === 200 ? parsePrometheus(r.body) : [];
        if (listeners.every((l) => sumOf(m, 'exds_listener_applied', { listener: l.name }) === 1)) return;
        if (Date.now() > until) throw new Error(`the agent did not apply ${listeners.map((l) => l.name).join(', ')} in 30 s; its log:\n${agentLog()}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    metrics: async () => (await get('/metrics')).body,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) log(`the agent exited with ${code} on SIGTERM; its log:\n${agentLog()}`);
      await killAllControlPlanes();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function measure(t: BenchTopology, target: { host: string; port: number }, concurrency: number, seconds = SECONDS): Promise<Omit<ConnlatResult, 'mode' | 'label' | 'notes'>> {
  const c0 = cpuJiffies();
  const m0 = nsProcessJiffies(t.mb);
  const args = [ENDPOINT, 'client', '--host', target.host, '--port', String(target.port), '--conns', String(concurrency), '--seconds', String(seconds), '--req', String(REQ), '--resp', String(RESP)];
  const done = await runJson(t.client, process.execPath, args, 'done').result;
  const c1 = cpuJiffies();
  const m1 = nsProcessJiffies(t.mb);
  const conns = done['conns'] as number;
  if (conns === 0) throw new Error(`no connection completed through ${target.host}:${target.port} (${done['errors']} errors, last: ${done['lastError']})`);
  return {
    concurrency,
    connsPerSec: (conns * 1000) / (done['ms'] as number),
    errors: done['errors'] as number,
    connect: done['connect'] as Percentiles,
    ttfb: done['ttfb'] as Percentiles,
    total: done['total'] as Percentiles,
    cpuMsPerKConn: (((c1 - c0) / HZ) * 1e6) / conns,
    mbCpuMsPerKConn: (((m1.user + m1.sys - m0.user - m0.sys) / HZ) * 1e6) / conns,
    mbUserCpuMsPerKConn: (((m1.user - m0.user) / HZ) * 1e6) / conns,
  };
}

/**
 * The side that sends the first FIN keeps the connection in TIME_WAIT for 60 s: the client
 * toward the proxy, and the proxy toward the server (it passes the client's FIN on). At these
 * rates that is tens of thousands of sockets to one server address and port, and once they hold
 * the even half of the ephemeral range, every connect() walks it before it finds a free port:
 * the rate collapsed to a tenth within a run, for HAProxy as for the agent, and a mode paid for
 * the TIME_WAIT sockets the modes before it left. tcp_tw_reuse=1 (per namespace) lets connect()
 * reuse a TIME_WAIT port to the same destination when TCP timestamps make it safe, as a
 * production middlebox with many short connections is configured (docs/proxy.md).
 */
async function timeWaitReuse(hosts: Host[]): Promise<void> {
  for (const h of hosts) await h.exec('sysctl', ['-qw', `net.ipv4.tcp_tw_reuse=${TW_REUSE}`]);
}

/** Same interface settings for every mode: what XDP splice needs (complete checksums, GRO). */
async function prepareEnds(hosts: Host[]): Promise<void> {
  for (const h of hosts) await h.exec('ethtool', ['-K', 'eth0', 'tx', 'off', 'gro', 'on']);
}

function table(results: ConnlatResult[], concurrency: number): string {
  const rows = results.filter((r) => r.concurrency === concurrency);
  const base = rows.find((r) => r.mode === 'direct');
  const ha = rows.find((r) => r.mode === 'haproxy');
  const lines = [
    '| mode | connections/s | vs direct | vs HAProxy | first byte p50 / p99 (ms) | complete p50 / p99 (ms) | CPU ms per 1000 connections | vs HAProxy | middlebox processes, CPU ms per 1000 connections | vs HAProxy | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const vs = (x: ConnlatResult | undefined, f: (y: ConnlatResult) => number) => (x ? `${(f(r) / f(x)).toFixed(2)}x` : '–');
    lines.push(
      `| ${r.label} | ${r.connsPerSec.toFixed(0)} | ${vs(base, (y) => y.connsPerSec)} | ${vs(ha, (y) => y.connsPerSec)} | ${ms(r.ttfb.p50)} / ${ms(r.ttfb.p99)} | ${ms(r.total.p50)} / ${ms(r.total.p99)} | ${r.cpuMsPerKConn.toFixed(0)} | ${vs(ha, (y) => y.cpuMsPerKConn)} | ${r.mbCpuMsPerKConn.toFixed(0)} | ${r.mode === 'direct' ? '–' : vs(ha, (y) => y.mbCpuMsPerKConn)} | ${r.errors} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  log(`${MODES.length} modes × concurrency ${CONCURRENCY.join(', ')}, ${SECONDS} s each; load average ${load}`);
  const env = bpfTestEnv('connlat');
  const topo = await Topology.create({
    label: 'connlat',
    hosts: ['client', 'mb', 'server'],
    links: [
      { a: 'client', b: 'mb' },
      { a: 'mb', b: 'server' },
    ],
    gateways: { client: 'mb', server: 'mb' },
    routers: ['mb'],
  });
  const results: ConnlatResult[] = [];
  let embedded: Agent | undefined;
  try {
    const t: BenchTopology = { topo, env, client: topo.host('client'), mb: topo.host('mb'), server: topo.host('server'), serverAddr: topo.iface('server', 'mb').ipv4, mbAddr: topo.iface('mb', 'client').ipv4 };
    await prepareEnds([t.client, t.server]);
    await timeWaitReuse([t.client, t.mb, t.server]);
    let listening!: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    // It runs until the topology is destroyed: its result never resolves, and its exit is expected.
    const server = runJson(t.server, process.execPath, [ENDPOINT, 'server', '--port', String(SERVER_PORT), '--req', String(REQ), '--resp', String(RESP)], 'none', (o) => o['event'] === 'listening' && listening());
    server.result.catch(() => undefined);
    await ready;
    // Modes without the agent first, then the agent's listeners, the XDP one last: XDP splice
    // attached to mb's interfaces must not be there while the others run.
    const order = [...MODES].sort((a, b) => (a.listener ? (a.listener.mode === 'xdp' ? 2 : 1) : 0) - (b.listener ? (b.listener.mode === 'xdp' ? 2 : 1) : 0));
    for (const mode of order) {
      let inst: ModeInstance | undefined;
      let target: { host: string; port: number };
      if (mode.listener) {
        embedded ??= await startEmbedded(t, env);
        const listeners = order.filter((m) => m.listener && (m.listener.mode !== 'xdp' || m === mode)).map((m) => m.listener!);
        await embedded.configure(listeners);
        target = { host: t.mbAddr, port: mode.listener.port };
      } else if (mode.id === 'direct') {
        target = { host: t.serverAddr, port: SERVER_PORT };
      } else {
        inst = await DATAPATH_MODES.find((m) => m.id === mode.id)!.start(t, SERVER_PORT, { shortConnections: true });
        target = { host: inst.host, port: inst.port };
      }
      try {
        if (WARMUP_SECONDS > 0) await measure(t, target, Math.max(...CONCURRENCY), WARMUP_SECONDS);
        for (const c of CONCURRENCY) {
          const before = embedded && mode.listener ? parsePrometheus(await embedded.metrics()) : undefined;
          const r = await measure(t, target, c);
          let notes = '';
          if (before && embedded && mode.listener) {
            const after = parsePrometheus(await embedded.metrics());
            const by = ['userspace', 'skb', 'xdp']
              .map((p) => [p, sumOf(after, 'exds_proxy_connections_total', { listener: mode.listener!.name, path: p }) - sumOf(before, 'exds_proxy_connections_total', { listener: mode.listener!.name, path: p })] as const)
              .filter(([, n]) => n > 0);
            notes = by.map(([p, n]) => `${p} ${n}`).join(', ') || 'none';
          }
          results.push({ mode: mode.id, label: mode.label, notes, ...r });
          log(`${mode.label.padEnd(28)} ${String(c).padStart(3)} at a time: ${r.connsPerSec.toFixed(0).padStart(6)} conn/s  first byte p50 ${ms(r.ttfb.p50)} p99 ${ms(r.ttfb.p99)} ms  complete p50 ${ms(r.total.p50)} p99 ${ms(r.total.p99)} ms  ${r.cpuMsPerKConn.toFixed(0)} CPU ms/1000 (middlebox processes ${r.mbCpuMsPerKConn.toFixed(0)}, user ${r.mbUserCpuMsPerKConn.toFixed(0)})${r.errors ? `  ${r.errors} errors` : ''}${notes ? `  (by path: ${notes})` : ''}`);
        }
      } finally {
        await inst?.stop();
      }
    }
  } finally {
    await embedded?.stop().catch((e: unknown) => log(`stopping the agent: ${(e as Error).message}`));
    await killAllControlPlanes();
    await topo.destroy();
    env.cleanup();
  }

  const endLoad = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  const md = [
    `<!-- ${CONNLAT_SECTION}:start -->`,
    '## Short connections: setup rate and latency (`npm run bench:connlat`)',
    '',
    `Client, middlebox and server namespaces joined by veth (as in bench:datapath). Each connection carries one request/response: the client connects, sends ${REQ} B and closes its side; the server answers ${RESP} B and closes. "First byte" is connect() to the first answer byte (through a proxy it includes the proxy's accept and its upstream connect); "complete" is connect() to the whole answer and the server's FIN. ${SECONDS} s per run, closed loop with the given number of connections at a time, after ${WARMUP_SECONDS} s of connections per mode that are not counted (so a Node proxy is measured with its code compiled by the JIT, not while it compiles). \`net.ipv4.tcp_tw_reuse\` is ${TW_REUSE} in the three namespaces${TW_REUSE === '1' ? ' (connect() may reuse a port whose earlier connection to the same destination is in TIME_WAIT; with the default, 2, the TIME_WAIT sockets of earlier runs made every connect() search the ephemeral range and the rate collapsed within a run, for HAProxy as for the agent)' : ''}. CPU is system-wide (/proc/stat) per 1000 connections, which on a shared machine includes other work; "middlebox processes" is the CPU of the processes in the middlebox's namespace (the proxy, and the idle control plane for the embedded modes; packet processing the kernel does in their context counts too) per 1000 connections. The embedded proxy is the real agent (\`ebpf-xds agent\`, logging at warn) configured through the control plane's REST API. Client and server send complete checksums and receive with GRO in every mode (what XDP splice needs). Load average ${load} at the start, ${endLoad} at the end.`,
    '',
    '![short connections](benchmarks-connlat.svg)',
    '',
    ...CONCURRENCY.flatMap((c) => [`### ${c === 1 ? '1 connection at a time (latency)' : `${c} connections at a time (rate)`}`, '', table(results, c), '']),
    ...(results.some((r) => r.notes) ? ['Connections by the path the agent reported (`exds_proxy_connections_total`): ' + results.filter((r) => r.notes).map((r) => `${r.label}, ${r.concurrency} at a time: ${r.notes}`).join('; ') + '.', ''] : []),
    '### Modes',
    '',
    ...MODES.map((m) => `- **${m.label}**: ${m.description}.`),
    '',
    `Run on ${new Date().toISOString().slice(0, 10)}; regenerate with \`npm run bench:connlat\` (flags: \`--seconds\`, \`--concurrency 1,16\`, \`--modes\`, \`--no-write\`).`,
    `<!-- ${CONNLAT_SECTION}:end -->`,
  ].join('\n');
  process.stdout.write(`${md}\n`);
  if (!WRITE) return;
  writeFileSync(DOC, replaceSection(readFileSync(DOC, 'utf8'), CONNLAT_SECTION, md));
  const byConc = (f: (r: ConnlatResult) => number, unit: string) =>
    CONCURRENCY.map((c) => ({ label: `${c} at a time`, bars: results.filter((r) => r.concurrency === c).map((r) => ({ label: r.label, value: f(r), note: unit === 'conn/s' ? f(r).toFixed(0) : f(r).toFixed(2) })) }));
  writeFileSync(
    SVG,
    barChartSvg(
      [
        { title: 'Connections per second', unit: 'conn/s', groups: byConc((r) => r.connsPerSec, 'conn/s') },
        { title: 'Complete, p99', unit: 'ms', groups: byConc((r) => r.total.p99, 'ms') },
      ],
      { title: `short connections (${REQ} B request, ${RESP} B answer) through the middlebox`, caption: `load average at start ${load}; ${SECONDS} s per run` },
    ),
  );
  log(`wrote ${DOC} and ${SVG}`);
}

await main();
