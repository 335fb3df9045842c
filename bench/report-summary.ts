// The summary at the top of docs/benchmarks.md (pure): reads the key figures back from the
// tables each benchmark wrote into its own section and states them as ratios. A section or row
// that is missing gives a line saying which benchmark to run instead of a number.
import { cell, firstNumber, sectionOf, tablesOf, type MdTable } from './report-doc.js';

export const SUMMARY_SECTION = 'bench:summary';

export interface Machine {
  cpuModel: string;
  cores: number;
  ramGiB: number;
  kernel: string;
  node: string;
}

export interface SummaryRun {
  machine: Machine;
  /** 1, 5 and 15 minute load averages; without `loadAfter` nothing ran (the summary was recomputed). */
  loadBefore: number[];
  loadAfter?: number[];
  /** What ran ("bench:xds, bench:datapath, …", or that the summary was only recomputed). */
  what: string;
  date: string;
}

const x = (n: number) => `${n.toFixed(2)}×`;

/** Row `label` (first cell) of the table under `heading` in section `name`. */
function row(doc: string, name: string, heading: (h: string) => boolean, label: string): { t: MdTable; r: string[] } | undefined {
  const md = sectionOf(doc, name);
  if (!md) return undefined;
  for (const t of tablesOf(md)) {
    if (!heading(t.heading)) continue;
    const r = t.rows.find((cells) => cells[0] === label);
    if (r) return { t, r };
  }
  return undefined;
}

const num = (hit: { t: MdTable; r: string[] } | undefined, column: string) => (hit ? firstNumber(cell(hit.t, hit.r, column)) : undefined);

function datapathLines(doc: string): string[] {
  const out: string[] = [];
  for (const [heading, what] of [
    ['1 bulk flow', 'one bulk flow'],
    ['8 parallel flows', '8 parallel flows'],
  ] as const) {
    const at = (label: string) => row(doc, 'bench:datapath', (h) => h === heading, label);
    const direct = at('direct routing');
    const ha = at('HAProxy');
    const skb = at('SKB splice');
    const fwd = at('minimal XDP forwarder');
    const xdp = at('XDP splice');
    const g = (h: typeof direct) => num(h, 'Gbit/s');
    const c = (h: typeof direct) => num(h, 'CPU s/GB');
    const [gd, gh, gs, gf, gx] = [g(direct), g(ha), g(skb), g(fwd), g(xdp)];
    const [cd, ch, cs, cf, cx] = [c(direct), c(ha), c(skb), c(fwd), c(xdp)];
    if (gd && gh && gs && cd && ch && cs) {
      out.push(
        `- **SKB splice, ${what}**: ${gs.toFixed(2)} Gbit/s, ${x(gs / gd)} direct routing and ${x(gs / gh)} HAProxy; CPU per GB ${x(cs / cd)} direct routing's and ${x(cs / ch)} HAProxy's.`,
      );
    } else out.push(`- SKB splice, ${what}: not in the data path section (run \`npm run bench:datapath\`).`);
    if (gf && gx && cf && cx) {
      out.push(`- **XDP splice, ${what}**: ${gx.toFixed(2)} Gbit/s, ${x(gx / gf)} the minimal XDP forwarder (the XDP limit on veth) at ${x(cx / cf)} its CPU per GB.`);
    } else out.push(`- XDP splice, ${what}: not in the data path section (run \`npm run bench:datapath\`).`);
  }
  return out;
}

function connlatLines(doc: string): string[] {
  const out: string[] = [];
  const rate = (label: string) => row(doc, 'bench:connlat', (h) => h.includes('at a time (rate)'), label);
  const lat = (label: string) => row(doc, 'bench:connlat', (h) => h.includes('1 connection at a time'), label);
  const [ha, user, direct] = [rate('HAProxy'), rate('embedded proxy (userspace)'), rate('direct routing')];
  const [rh, ru, rd] = [num(ha, 'connections/s'), num(user, 'connections/s'), num(direct, 'connections/s')];
  const conc = /^(\d+) connections/.exec(ha?.t.heading ?? '')?.[1];
  if (rh && ru && rd) {
    out.push(
      `- **Short connections, ${conc ?? 'many'} at a time** (100 B request, 1 KiB answer): the embedded proxy sets up ${ru.toFixed(0)} connections/s, ${x(ru / rh)} HAProxy's ${rh.toFixed(0)} (direct routing ${rd.toFixed(0)}); the proxy's own CPU per connection ${x((num(user, 'middlebox processes') ?? NaN) / (num(ha, 'middlebox processes') ?? NaN))} HAProxy's (the whole machine's, with clients and servers: ${x((num(user, 'CPU ms') ?? NaN) / (num(ha, 'CPU ms') ?? NaN))}).`,
    );
  } else out.push('- Short connections: not in the report yet (run `npm run bench:connlat`).');
  const [lh, lu, ld] = [lat('HAProxy'), lat('embedded proxy (userspace)'), lat('direct routing')];
  const fb = (h: typeof lh) => {
    const c = h ? cell(h.t, h.r, 'first byte') : undefined;
    const m = c ? /([\d.]+)\s*\/\s*([\d.]+)/.exec(c) : null;
    return m ? { p50: m[1]!, p99: m[2]! } : undefined;
  };
  const [bh, bu, bd] = [fb(lh), fb(lu), fb(ld)];
  if (bh && bu && bd) {
    out.push(
      `- **Latency, one connection at a time**: connect to first answer byte p50 / p99 ${bu.p50} / ${bu.p99} ms through the embedded proxy, ${bh.p50} / ${bh.p99} ms through HAProxy, ${bd.p50} / ${bd.p99} ms routed directly. Connections this short end before a kernel handover pays off, so every embedded mode serves nearly all of them in user space (the section counts them by path).`,
    );
  }
  return out;
}

function xdsLines(doc: string): string[] {
  const md = sectionOf(doc, 'bench:xds');
  if (!md) return ['- xDS fan-out: not in the report yet (run `npm run bench:xds`).'];
  const t = tablesOf(md).find((tb) => tb.heading.startsWith('Through the control plane'));
  if (!t) return ['- xDS fan-out: the control-plane table is missing (run `npm run bench:xds`).'];
  const parts: string[] = [];
  for (const clients of ['1000', '100']) {
    const rows = t.rows.filter((r) => r[0] === clients && r[1] === '1000');
    const each = rows.map((r) => `${r[2]} ${cell(t, r, 'PUT → last ACK (median') ?? '?'}`);
    if (each.length) parts.push(`${Number(clients).toLocaleString('en')} clients × 1,000 clusters: ${each.join(', ')} (median / max)`);
  }
  if (!parts.length) return ['- xDS fan-out: no run with 1,000 clusters in the report (run `npm run bench:xds`).'];
  return [`- **xDS fan-out**, one endpoint changed through the REST API until the last client's ACK: ${parts.join('; ')}.`];
}

function pktcostLines(doc: string): string[] {
  const md = sectionOf(doc, 'bench:pktcost');
  const t = md ? tablesOf(md)[0] : undefined;
  if (!t) return ['- Per-packet cost: not in the report yet (run `npm run bench:pktcost`).'];
  const best = (program: string, payload: string) => firstNumber(cell(t, t.rows.find((r) => r[0] === program && r[1] === payload) ?? [], 'min'));
  const ratios: string[] = [];
  for (const p of ['64 B', '1448 B']) {
    const s = best('XDP splice (data, TS)', p);
    const f = best('minimal forwarder', p);
    if (s && f) ratios.push(`${p} ${s} ns, ${x(s / f)} the forwarder`);
  }
  return ratios.length ? [`- **XDP splice per packet** (BPF_PROG_TEST_RUN, best runs): ${ratios.join('; ')}.`] : ['- Per-packet cost: the table has no splice and forwarder rows.'];
}

/** The summary section (with its markers) for `doc` as it stands. */
export function summarySection(doc: string, run: SummaryRun): string {
  const m = run.machine;
  const load = (l: number[]) => l.map((v) => v.toFixed(1)).join(' ');
  return [
    `<!-- ${SUMMARY_SECTION}:start -->`,
    '## Summary',
    '',
    `Machine: ${m.cores} × ${m.cpuModel}, ${m.ramGiB.toFixed(1)} GiB RAM, Linux ${m.kernel}, Node ${m.node}. ${run.loadAfter ? `Load average (1, 5, 15 min) ${load(run.loadBefore)} before, ${load(run.loadAfter)} after.` : `Load average (1, 5, 15 min) ${load(run.loadBefore)} when this summary was written; each section states the load of its own run.`} ${run.what}, ${run.date}. Every figure below is read from the sections that follow, and every ratio compares modes within one run of its benchmark.`,
    '',
    ...datapathLines(doc),
    ...connlatLines(doc),
    ...xdsLines(doc),
    ...pktcostLines(doc),
    '',
    'The veth caveat: client, middlebox and server are namespaces joined by veth on one machine. Attaching any XDP program to a veth takes GSO/GRO aggregation away from its peer, so the XDP modes move MTU-sized packets where the others move 64 kB GSO packets: on veth XDP splice can only be compared with a minimal XDP forwarder, not with direct routing. On a NIC with native XDP the picture differs. The absolute numbers also move with other work on the machine; the ratios within one run are what these benchmarks are for.',
    `<!-- ${SUMMARY_SECTION}:end -->`,
  ].join('\n');
}

/**
 * The same summary for README.md (between the same markers there): without the heading, with
 * the machine line pointing at the full report.
 */
export function summaryForReadme(section: string): string {
  return section
    .split('\n')
    .filter((l) => l !== '## Summary')
    .join('\n')
    .replace(/\n\n+/, '\n\n')
    .replace('Every figure below is read from the sections that follow', 'Quoted from the summary of [docs/benchmarks.md](docs/benchmarks.md), which has the tables and charts; every figure below comes from its sections');
}
