// docs/benchmarks.md as data (pure): each benchmark owns a section between
// `<!-- NAME:start -->` and `<!-- NAME:end -->`; this replaces a section in place (or appends
// it), reads one back, and reads the Markdown tables in it with the heading each sits under.

export const start = (name: string) => `<!-- ${name}:start -->`;
export const end = (name: string) => `<!-- ${name}:end -->`;

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The doc with section `name` replaced by `md` (which carries the markers), or `md` appended. */
export function replaceSection(doc: string, name: string, md: string, where: 'end' | 'after-title' = 'end'): string {
  const re = new RegExp(`${escape(start(name))}[\\s\\S]*?${escape(end(name))}`);
  if (re.test(doc)) return doc.replace(re, () => md);
  if (where === 'after-title') {
    const lines = doc.split('\n');
    // After the title and the paragraph under it.
    let i = lines.findIndex((l) => l.startsWith('# '));
    if (i >= 0) {
      i++;
      while (i < lines.length && lines[i]!.trim() === '') i++;
      while (i < lines.length && lines[i]!.trim() !== '' && !lines[i]!.startsWith('<!--')) i++;
      return [...lines.slice(0, i), '', md, ...lines.slice(i)].join('\n').replace(/\n{3,}/g, '\n\n');
    }
  }
  return `${doc.trimEnd()}\n\n${md}\n`;
}

/** The text between the markers of section `name`, if the doc has it. */
export function sectionOf(doc: string, name: string): string | undefined {
  const i = doc.indexOf(start(name));
  const j = doc.indexOf(end(name));
  return i >= 0 && j > i ? doc.slice(i + start(name).length, j) : undefined;
}

export interface MdTable {
  /** The nearest heading above the table (without the #s). */
  heading: string;
  header: string[];
  rows: string[][];
}

const cells = (line: string) =>
  line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split('|')
    .map((c) => c.trim());

export function tablesOf(md: string): MdTable[] {
  const out: MdTable[] = [];
  const lines = md.split('\n');
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const h = /^#+\s+(.*)$/.exec(line);
    if (h) {
      heading = h[1]!.trim();
      continue;
    }
    if (!line.trim().startsWith('|') || !/^\s*\|[\s:|-]+\|\s*$/.test(lines[i + 1] ?? '')) continue;
    const header = cells(line);
    const rows: string[][] = [];
    let k = i + 2;
    for (; k < lines.length && lines[k]!.trim().startsWith('|'); k++) rows.push(cells(lines[k]!));
    out.push({ heading, header, rows });
    i = k - 1;
  }
  return out;
}

/** The cell of `row` under the column whose header starts with `column`. */
export function cell(t: MdTable, row: string[], column: string): string | undefined {
  const c = t.header.findIndex((h) => h.startsWith(column));
  return c >= 0 ? row[c] : undefined;
}

/** The first number in a cell ("770 / 1520 ms" → 770, "1.65×" → 1.65, "4.32" → 4.32). */
export function firstNumber(text: string | undefined): number | undefined {
  const m = /-?\d+(?:\.\d+)?/.exec((text ?? '').replace(/,(?=\d{3})/g, ''));
  return m ? Number(m[0]) : undefined;
}
