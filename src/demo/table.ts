// Renders the demo's view (pure): a block of lines redrawn in place on a terminal, or one line
// per refresh when the output is a pipe or a file (`key=value` fields, stable for scripts).
import { PATHS, type DemoView } from './view.js';

/** Aligned rows, and where each column starts. */
function grid(rows: string[][], right: Set<number>): { lines: string[]; starts: number[] } {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const starts = widths.map((_, c) => widths.slice(0, c).reduce((a, w) => a + w + 2, 0));
  return { lines: rows.map((r) => r.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd()), starts };
}

const mbps = (n: number) => n.toFixed(1);
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

export function renderTable(v: DemoView, width = 120): string[] {
  const out: string[] = [];
  out.push(`ebpf-xds demo · up ${v.uptime} · Ctrl-C stops it and removes what it created`);
  out.push('');
  const rows: string[][] = [['listener', 'port', 'mode', 'ok', 'failed', 'open', 'MB/s', 'xdp', 'skb', 'userspace', 'fallbacks', 'answered by']];
  for (const l of v.listeners) {
    rows.push([l.name, String(l.port), l.mode, String(l.ok), String(l.failed), String(l.open), mbps(l.clientMBps), ...PATHS.map((p) => String(l.byPath[p])), String(l.fallbacks), l.answeredBy]);
  }
  const { lines, starts } = grid(rows, new Set([1, 3, 4, 5, 6, 7, 8, 9, 10]));
  const clients = 'clients (verified)';
  out.push(`  ${clients.padStart(starts[3]! + clients.length)}${'agent: connections by path'.padStart(starts[7]! - starts[3]! - clients.length + 26)}`);
  out.push(...lines.map((l) => `  ${l}`));
  out.push('');
  out.push(
    v.pathMBps
      ? `  throughput by path (agent /metrics; xdp and skb from the BPF counters): ${PATHS.map((p) => `${p} ${mbps(v.pathMBps![p])} MB/s`).join('   ')}`
      : '  throughput by path: waiting for a second sample of the agent\'s /metrics',
  );
  const d = v.drops;
  out.push(`  drop rule "${d.rule}" (${d.cidr}): ${d.attempts} connection attempts from the blocked client, ${d.gotThrough} got through; XDP dropped ${d.droppedPackets} packets`);
  if (v.nodes.length === 0) out.push('  xDS: no node connected yet');
  for (const n of v.nodes) out.push(`  xDS node ${n.id} (${n.stream}): ${n.types.map((t) => `${t.type} ${t.acked ?? '-'}${t.sent !== null && t.sent !== t.acked ? ` (sent ${t.sent})` : ''}`).join(' · ')}`);
  out.push(`  NACKs: ${v.nacks.length === 0 ? 'none' : ''}`);
  for (const n of v.nacks) out.push(`    ${n.node} ${n.type} version ${n.version}: ${clip(n.message, width - 30)}`);
  for (const e of v.recentErrors.slice(-3)) out.push(`  ! ${e.listener}: ${clip(e.message, width - 8)}`);
  for (const p of v.problems) out.push(`  ! ${clip(p, width - 4)}`);
  return out;
}

/** One line: `[0:42] bulk-skb ok=19 failed=0 skb=19 ... | MB/s xdp=8.0 ... | drops ... | xds ...`. */
export function renderLine(v: DemoView): string {
  const parts = v.listeners.map((l) => `${l.name} ok=${l.ok} failed=${l.failed} ${PATHS.map((p) => `${p}=${l.byPath[p]}`).join(' ')} fallbacks=${l.fallbacks} MB/s=${mbps(l.clientMBps)}`);
  if (v.pathMBps) parts.push(`path MB/s ${PATHS.map((p) => `${p}=${mbps(v.pathMBps![p])}`).join(' ')}`);
  parts.push(`drop ${v.drops.rule} attempts=${v.drops.attempts} through=${v.drops.gotThrough} dropped=${v.drops.droppedPackets}`);
  parts.push(...v.nodes.map((n) => `xds ${n.id} ${n.types.map((t) => `${t.type}=${t.acked ?? '-'}`).join(' ')}`));
  parts.push(`nacks=${v.nacks.length}`);
  let line = `[${v.uptime}] ${parts.join(' | ')}`;
  for (const n of v.nacks) line += `\n  NACK ${n.node} ${n.type} ${n.version}: ${n.message}`;
  for (const e of v.recentErrors) line += `\n  failure ${e.listener}: ${e.message}`;
  for (const p of v.problems) line += `\n  problem: ${p}`;
  return line;
}
