// The data path modes bench/datapath.ts compares, and the registry other modes plug into: a
// file bench/datapath-mode-<name>.ts that exports `modes: DatapathMode[]` is picked up by the
// bench without touching it (XDP splice and the minimal XDP forwarder live in such a file).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SkbDatapath } from '../src/agent/bpf/datapath-skb.js';
import type { BpfTestEnv } from '../test/support/bpf-env.js';
import type { Host, Topology } from '../test/support/netns.js';
import { startSkbProxy } from '../test/support/skb-proxy.js';

/** client ↔ mb ↔ server, routed through mb. */
export interface BenchTopology {
  topo: Topology;
  client: Host;
  mb: Host;
  server: Host;
  /** Address of the server as the client (and mb) reach it. */
  serverAddr: string;
  /** Address of the middlebox as the client reaches it. */
  mbAddr: string;
  /** Unique pin root and cgroup for kernel state (removed by the bench at the end). */
  env: BpfTestEnv;
}

export interface ModeInstance {
  /** Where the client connects. */
  host: string;
  port: number;
  /** Anything worth printing after a run (kernel counters, mode of the connections). */
  notes?(): Promise<string>;
  stop(): Promise<void>;
}

/** What the run does: short connections may end before a kernel path takes them over. */
export interface RunKind {
  shortConnections: boolean;
}

export interface DatapathMode {
  id: string;
  /** Column label in the results. */
  label: string;
  /** One line for the docs: what runs on the middlebox. */
  description: string;
  /** Starts the mode for one run; the server's sink listens on serverPort. */
  start(t: BenchTopology, serverPort: number, run?: RunKind): Promise<ModeInstance>;
}

const direct: DatapathMode = {
  id: 'direct',
  label: 'direct routing',
  description: 'no proxy: the middlebox routes (the limit)',
  async start(t, port) {
    return { host: t.serverAddr, port, stop: async () => undefined };
  },
};

function haproxy(splice: boolean): DatapathMode {
  return {
    id: splice ? 'haproxy-splice' : 'haproxy',
    label: splice ? 'HAProxy (splice)' : 'HAProxy',
    description: `HAProxy ${splice ? 'TCP mode with option splice-auto (kernel splice(2) through pipes)' : 'TCP mode, default configuration (user-space copy)'}, 2 threads`,
    async start(t, port) {
      const dir = mkdtempSync(join(tmpdir(), 'exds-haproxy-'));
      const listen = 20000 + Math.floor(Math.random() * 20000);
      const cfg = [
        'global',
        '  nbthread 2',
        '  maxconn 4096',
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 60s',
        '  timeout server 60s',
        ...(splice ? ['  option splice-auto'] : []),
        'frontend fe',
        `  bind :::${listen} v4v6`,
        '  default_backend be',
        'backend be',
        `  server s1 ${t.serverAddr}:${port}`,
      ].join('\n');
      writeFileSync(join(dir, 'haproxy.cfg'), `${cfg}\n`);
      const child = t.mb.spawn('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitForPort(t.mb, listen, () => (child.exitCode !== null ? `haproxy exited: ${stderr.trim()}` : undefined));
      return {
        host: t.mbAddr,
        port: listen,
        async stop() {
          if (child.exitCode === null) {
            const exited = new Promise((r) => child.once('exit', r));
            child.kill('SIGTERM');
            await exited;
          }
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

function spliceProxy(o: { id: string; label: string; description: string; kernel: boolean; sockbuf?: number; verdict?: 'stream_verdict' | 'skb_verdict' }): DatapathMode {
  return {
    id: o.id,
    label: o.label,
    description: o.description,
    async start(t, port, run) {
      let dp: SkbDatapath | undefined;
      if (o.kernel) dp = SkbDatapath.attach({ pins: t.env.pins, cgroup: t.env.cgroup, ...(o.verdict ? { verdict: o.verdict } : {}) });
      const proxy = await startSkbProxy(t.mb, {
        upstream: `${t.serverAddr}:${port}`,
        ...(o.kernel ? { pins: t.env.pins.skb, cgroup: t.env.cgroup } : {}),
        ...(o.sockbuf ? { sockbuf: o.sockbuf } : {}),
      });
      const before = dp?.counters();
      return {
        host: t.mbAddr,
        port: proxy.port,
        async notes() {
          if (!dp || !before) return '';
          const c = dp.counters();
          return `redirected ${fmtBytes(Number(c.redirected_bytes - before.redirected_bytes))}, passed ${fmtBytes(Number(c.passed_bytes - before.passed_bytes))}`;
        },
        async stop() {
          const summary = await proxy.stop();
          dp?.detach();
          if (summary.errors.length > 0) throw new Error(`${o.id}: proxy errors: ${summary.errors.join('; ')}`);
          if (o.kernel && !run?.shortConnections && (summary.modes['kernel'] ?? 0) !== summary.conns) throw new Error(`${o.id}: not every connection was handed to the kernel: ${JSON.stringify(summary.modes)} ${JSON.stringify(summary.fallbackReasons)}`);
        },
      };
    },
  };
}

export const MODES: DatapathMode[] = [
  direct,
  haproxy(false),
  haproxy(true),
  spliceProxy({ id: 'node-pipe', label: 'Node pipe', description: 'plain Node.js proxy copying in user space (the splice proxy without maps)', kernel: false }),
  spliceProxy({ id: 'skb-splice', label: 'SKB splice', description: 'sockmap splice: Node proxy hands each connection to the sk_skb verdict (stream_verdict, egress redirect)', kernel: true }),
  spliceProxy({
    id: 'skb-splice-4m',
    label: 'SKB splice, 4 MB buffers',
    description: 'as SKB splice, with SO_RCVBUF/SO_SNDBUF of 4 MB on both legs (autotuning off)',
    kernel: true,
    sockbuf: 4 << 20,
  }),
  spliceProxy({ id: 'skb-splice-skbv', label: 'SKB splice, skb_verdict', description: 'as SKB splice, verdict attached as BPF_SK_SKB_VERDICT instead of STREAM_VERDICT', kernel: true, verdict: 'skb_verdict' }),
];

export function fmtBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${n} B`;
}

async function waitForPort(host: Host, port: number, dead: () => string | undefined): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const why = dead();
    if (why) throw new Error(why);
    const out = await host.exec('ss', ['-Hltn', `sport = :${port}`], { allowFail: true });
    if (out.trim()) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} in ${host.name} after 10 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Spawns a process in a host and resolves with the JSON line it prints that has event `event`. */
export function runJson(host: Host, cmd: string, args: string[], event: string, onFirst?: (o: Record<string, unknown>) => void): { result: Promise<Record<string, unknown>>; kill: () => void } {
  const child = host.spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const result = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      for (;;) {
        const nl = out.indexOf('\n');
        if (nl < 0) break;
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        const o = JSON.parse(line) as Record<string, unknown>;
        if (o['event'] === event) resolve(o);
        else onFirst?.(o);
      }
    });
    child.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} in ${host.name} exited with ${code}: ${stderr.trim()}`)));
  });
  return { result, kill: () => child.kill('SIGKILL') };
}
