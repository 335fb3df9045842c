// A grouped bar chart as a standalone SVG, for the benchmark pages in docs/. Pure: data in,
// markup out. Each panel has groups (e.g. workloads) of bars (e.g. modes) with value labels.

export interface BarPanel {
  title: string;
  unit: string;
  groups: Array<{ label: string; bars: Array<{ label: string; value: number; note?: string }> }>;
}

const COLORS = ['#7f7f7f', '#d62728', '#ff9896', '#9467bd', '#1f77b4', '#aec7e8', '#17becf', '#2ca02c', '#98df8a', '#bcbd22'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function barChartSvg(panels: BarPanel[], opts: { title: string; caption?: string }): string {
  const barW = 22;
  const gap = 26;
  const panelH = 230;
  const top = 56;
  const left = 56;
  const labels = [...new Set(panels.flatMap((p) => p.groups.flatMap((g) => g.bars.map((b) => b.label))))];
  const color = (l: string) => COLORS[labels.indexOf(l) % COLORS.length]!;
  const panelW = (p: BarPanel) => p.groups.reduce((w, g) => w + g.bars.length * barW + gap, gap) + left;
  const width = Math.max(640, panels.reduce((w, p) => w + panelW(p) + 20, 20));
  const legendRows = Math.ceil(labels.length / 4);
  const height = top + panelH + 60 + legendRows * 18 + (opts.caption ? 20 : 0);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(opts.title)}</text>`);
  let x0 = 20;
  for (const p of panels) {
    const max = Math.max(...p.groups.flatMap((g) => g.bars.map((b) => b.value)), 1e-9) * 1.15;
    const y = (v: number) => top + panelH - (v / max) * panelH;
    out.push(`<text x="${x0 + panelW(p) / 2}" y="42" text-anchor="middle" font-weight="bold">${esc(p.title)} (${esc(p.unit)})</text>`);
    out.push(`<line x1="${x0 + left - 4}" y1="${top}" x2="${x0 + left - 4}" y2="${top + panelH}" stroke="#333"/>`);
    out.push(`<line x1="${x0 + left - 4}" y1="${top + panelH}" x2="${x0 + panelW(p)}" y2="${top + panelH}" stroke="#333"/>`);
    for (let i = 0; i <= 4; i++) {
      const v = (max / 1.15) * (i / 4);
      out.push(`<text x="${x0 + left - 8}" y="${y(v) + 4}" text-anchor="end" fill="#555">${v >= 10 ? v.toFixed(0) : v.toFixed(1)}</text>`);
      out.push(`<line x1="${x0 + left - 4}" y1="${y(v)}" x2="${x0 + panelW(p)}" y2="${y(v)}" stroke="#eee"/>`);
    }
    let x = x0 + left + gap / 2;
    for (const g of p.groups) {
      const gx = x;
      for (const b of g.bars) {
        out.push(`<rect x="${x}" y="${y(b.value)}" width="${barW - 3}" height="${top + panelH - y(b.value)}" fill="${color(b.label)}"><title>${esc(`${b.label}: ${b.value.toFixed(2)} ${p.unit}`)}</title></rect>`);
        if (b.note) out.push(`<text x="${x + (barW - 3) / 2}" y="${y(b.value) - 3}" text-anchor="middle" font-size="9" fill="#333">${esc(b.note)}</text>`);
        x += barW;
      }
      out.push(`<text x="${(gx + x) / 2}" y="${top + panelH + 16}" text-anchor="middle">${esc(g.label)}</text>`);
      x += gap;
    }
    x0 += panelW(p) + 20;
  }
  const ly = top + panelH + 36;
  labels.forEach((l, i) => {
    const lx = 20 + (i % 4) * ((width - 40) / 4);
    const yy = ly + Math.floor(i / 4) * 18;
    out.push(`<rect x="${lx}" y="${yy - 9}" width="10" height="10" fill="${color(l)}"/><text x="${lx + 14}" y="${yy}">${esc(l)}</text>`);
  });
  if (opts.caption) out.push(`<text x="20" y="${height - 8}" fill="#555">${esc(opts.caption)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
