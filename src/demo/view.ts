// What the demo shows, computed from what it samples (pure): the traffic driver's counters (what
// the clients saw, verified end to end), the agent's /metrics (which path carried the
// connections, kernel and proxy throughput from the BPF counters, drops) and GET /v1/nodes
// (xDS versions and NACKs per node). Rates come from two samples of each.
import type { NodeView } from '../api/nodes.js';
import type { DemoListener } from './config.js';
import { sumOf, type Sample } from './prom-text.js';
import type { ProbeStats, TargetStats } from './traffic.js';

export const PATHS = ['xdp', 'skb', 'userspace'] as const;
export type PathName = (typeof PATHS)[number];

export interface DriveSample {
  at: number;
  targets: Record<string, TargetStats>;
  probes: Record<string, ProbeStats>;
}

export interface MetricsSample {
  at: number;
  samples: Sample[];
}

export interface ViewInput {
  uptimeMs: number;
  listeners: DemoListener[];
  drive?: DriveSample;
  drivePrev?: DriveSample;
  metrics?: MetricsSample;
  metricsPrev?: MetricsSample;
  nodes: NodeView[];
  dropRule: { name: string; cidr: string };
  /** Failures the clients saw lately, newest last. */
  recentErrors: Array<{ listener: string; message: string }>;
  /** Things the demo could not sample (e.g. the agent's metrics port). */
  problems: string[];
}

export interface ListenerRow {
  name: string;
  port: number;
  mode: string;
  ok: number;
  failed: number;
  open: number;
  /** Client → server payload rate the clients sent, MB/s (10^6 bytes). */
  clientMBps: number;
  /** Connections the agent handed to each path. */
  byPath: Record<PathName, number>;
  fallbacks: number;
  /** Who answered: "s1 6 · s2 5", or per SNI name "a.demo.test→s1 40". */
  answeredBy: string;
}

export interface NodeRow {
  id: string;
  stream: string;
  types: Array<{ type: string; acked: string | null; sent: string | null }>;
}

export interface NackRow {
  node: string;
  type: string;
  version: string;
  message: string;
}

export interface DemoView {
  uptime: string;
  listeners: ListenerRow[];
  /** Bytes per second carried by each path, MB/s, from the agent's counters. */
  pathMBps: Record<PathName, number> | undefined;
  drops: { rule: string; cidr: string; attempts: number; gotThrough: number; droppedPackets: number };
  nodes: NodeRow[];
  nacks: NackRow[];
  recentErrors: Array<{ listener: string; message: string }>;
  problems: string[];
}

const MB = 1e6;

function rate(cur: number, prev: number | undefined, dtMs: number | undefined): number {
  if (prev === undefined || !dtMs || dtMs <= 0) return 0;
  return Math.max(0, ((cur - prev) * 1000) / dtMs / MB);
}

export function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

const shortType = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf('.') + 1);

export function buildView(i: ViewInput): DemoView {
  const dtDrive = i.drive && i.drivePrev ? i.drive.at - i.drivePrev.at : undefined;
  const samples = i.metrics?.samples ?? [];
  const listeners = i.listeners.map((l): ListenerRow => {
    const targets = Object.entries(i.drive?.targets ?? {}).filter(([, t]) => t.listener === l.name);
    const sum = (f: (t: TargetStats) => number) => targets.reduce((a, [, t]) => a + f(t), 0);
    const prevSent = i.drivePrev ? targets.reduce((a, [id]) => a + (i.drivePrev!.targets[id]?.sent ?? 0), 0) : undefined;
    const answeredBy = l.sni
      ? l.sni.map((r) => `${r.serverName}→${r.server} ${targets.filter(([id]) => id.endsWith(`/${r.serverName}`)).reduce((a, [, t]) => a + (t.servers[r.server] ?? 0), 0)}`).join(' · ')
      : Object.entries(targets.reduce<Record<string, number>>((acc, [, t]) => {
          for (const [s, n] of Object.entries(t.servers)) acc[s] = (acc[s] ?? 0) + n;
          return acc;
        }, {}))
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([s, n]) => `${s} ${n}`)
          .join(' · ');
    return {
      name: l.name,
      port: l.port,
      mode: l.mode,
      ok: sum((t) => t.ok),
      failed: sum((t) => t.failed),
      open: sum((t) => t.active),
      clientMBps: rate(sum((t) => t.sent), prevSent, dtDrive),
      byPath: Object.fromEntries(PATHS.map((p) => [p, sumOf(samples, 'exds_proxy_connections_total', { listener: l.name, path: p })])) as Record<PathName, number>,
      fallbacks: sumOf(samples, 'exds_proxy_fallbacks_total', { listener: l.name }),
      answeredBy,
    };
  });

  let pathMBps: DemoView['pathMBps'];
  if (i.metrics && i.metricsPrev) {
    const dt = i.metrics.at - i.metricsPrev.at;
    const bytes = (s: Sample[], p: PathName) => (p === 'userspace' ? sumOf(s, 'exds_proxy_userspace_bytes_total') : sumOf(s, 'exds_spliced_bytes_total', { path: p }));
    pathMBps = Object.fromEntries(PATHS.map((p) => [p, rate(bytes(i.metrics!.samples, p), bytes(i.metricsPrev!.samples, p), dt)])) as Record<PathName, number>;
  }

  const probes = Object.values(i.drive?.probes ?? {});
  const drops = {
    rule: i.dropRule.name,
    cidr: i.dropRule.cidr,
    attempts: probes.reduce((a, p) => a + p.attempts, 0),
    gotThrough: probes.reduce((a, p) => a + p.connected, 0),
    droppedPackets: sumOf(samples, 'exds_drop_packets_total', { rule: i.dropRule.name }),
  };

  const nodes: NodeRow[] = i.nodes.map((n) => ({
    id: n.node?.id ?? '(no request yet)',
    stream: `${n.service}/${n.protocol}`,
    types: n.types.map((t) => ({ type: shortType(t.typeUrl), acked: t.acked?.version ?? null, sent: t.sent?.version ?? null })),
  }));
  const nacks: NackRow[] = i.nodes.flatMap((n) =>
    n.types.filter((t) => t.lastNack).map((t) => ({ node: n.node?.id ?? '?', type: shortType(t.typeUrl), version: t.lastNack!.version, message: t.lastNack!.message })),
  );

  return { uptime: formatUptime(i.uptimeMs), listeners, pathMBps, drops, nodes, nacks, recentErrors: i.recentErrors, problems: i.problems };
}
