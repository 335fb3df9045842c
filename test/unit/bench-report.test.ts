// The benchmark report as data: marked sections replaced in place, tables read back, and the
// summary's ratios computed from them (or a line naming the benchmark to run when one is missing).
import { describe, expect, it } from 'vitest';
import { firstNumber, replaceSection, sectionOf, tablesOf } from '../../bench/report-doc.js';
import { summaryForReadme, summarySection, type SummaryRun } from '../../bench/report-summary.js';

const datapath = `<!-- bench:datapath:start -->
## Data path

### 1 bulk flow

| mode | Gbit/s | vs direct | CPU s/GB | vs direct |
|---|---:|---:|---:|---:|
| direct routing | 4.00 | 1.00x | 4.000 | 1.00x |
| HAProxy | 2.00 | 0.50x | 6.000 | 1.50x |
| SKB splice | 3.00 | 0.75x | 5.000 | 1.25x |
| minimal XDP forwarder | 2.00 | 0.50x | 8.000 | 2.00x |
| XDP splice | 1.90 | 0.48x | 8.800 | 2.20x |
<!-- bench:datapath:end -->`;

const connlat = `<!-- bench:connlat:start -->
### 1 connection at a time (latency)

| mode | connections/s | vs direct | vs HAProxy | first byte p50 / p99 (ms) | complete p50 / p99 (ms) | CPU ms per 1000 connections | vs HAProxy | errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
| direct routing | 1000 | 1.00x | 1.00x | 0.50 / 2.00 | 0.60 / 2.50 | 1000 | 1.00x | 0 |
| HAProxy | 1000 | 1.00x | 1.00x | 0.60 / 3.00 | 0.70 / 3.50 | 1000 | 1.00x | 0 |
| embedded proxy (userspace) | 500 | 0.50x | 0.50x | 1.20 / 6.00 | 1.40 / 7.00 | 2000 | 2.00x | 0 |

### 16 connections at a time (rate)

| mode | connections/s | vs direct | vs HAProxy | first byte p50 / p99 (ms) | complete p50 / p99 (ms) | CPU ms per 1000 connections | vs HAProxy | middlebox processes, CPU ms per 1000 connections | vs HAProxy | errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| direct routing | 3,000 | 1.00x | 1.50x | 1 / 2 | 1 / 2 | 500 | 0.50x | 0 | – | 0 |
| HAProxy | 2000 | 0.67x | 1.00x | 1 / 2 | 1 / 2 | 1000 | 1.00x | 200 | 1.00x | 0 |
| embedded proxy (userspace) | 500 | 0.17x | 0.25x | 1 / 2 | 1 / 2 | 3000 | 3.00x | 400 | 2.00x | 0 |
<!-- bench:connlat:end -->`;

const run: SummaryRun = {
  machine: { cpuModel: 'Test CPU', cores: 2, ramGiB: 4, kernel: '6.18.0', node: 'v20.0.0' },
  loadBefore: [1, 2, 3],
  loadAfter: [2, 2, 3],
  what: 'Ran bench:datapath',
  date: '2026-01-01',
};

describe('report-doc', () => {
  it('replaces a marked section in place, appends a new one, or puts it after the title', () => {
    const doc = '# Benchmarks\n\nIntro line.\n\n<!-- a:start -->\nold\n<!-- a:end -->\n\ntail\n';
    const replaced = replaceSection(doc, 'a', '<!-- a:start -->\nnew\n<!-- a:end -->');
    expect(replaced).toBe('# Benchmarks\n\nIntro line.\n\n<!-- a:start -->\nnew\n<!-- a:end -->\n\ntail\n');
    expect(sectionOf(replaced, 'a')).toBe('\nnew\n');
    expect(replaceSection(doc, 'b', '<!-- b:start -->\nB\n<!-- b:end -->').endsWith('tail\n\n<!-- b:start -->\nB\n<!-- b:end -->\n')).toBe(true);
    const top = replaceSection(doc, 's', '<!-- s:start -->\nS\n<!-- s:end -->', 'after-title');
    expect(top.indexOf('<!-- s:start -->')).toBeGreaterThan(top.indexOf('Intro line.'));
    expect(top.indexOf('<!-- s:start -->')).toBeLessThan(top.indexOf('<!-- a:start -->'));
    // A replacement text with `$` is taken literally.
    expect(replaceSection(doc, 'a', '<!-- a:start -->$&$1<!-- a:end -->')).toContain('$&$1');
  });

  it('reads tables with the heading above them, and numbers from cells', () => {
    const tables = tablesOf(datapath);
    expect(tables).toHaveLength(1);
    expect(tables[0]!.heading).toBe('1 bulk flow');
    expect(tables[0]!.rows.map((r) => r[0])).toContain('XDP splice');
    expect(firstNumber('770 / 1520 ms')).toBe(770);
    expect(firstNumber('3,000')).toBe(3000);
    expect(firstNumber('1.65×')).toBe(1.65);
    expect(firstNumber('–')).toBeUndefined();
  });
});

describe('report-summary', () => {
  it('states the key ratios from the sections', () => {
    const s = summarySection(`# Benchmarks\n\n${datapath}\n\n${connlat}\n`, run);
    expect(s.startsWith('<!-- bench:summary:start -->')).toBe(true);
    expect(s).toContain('2 × Test CPU, 4.0 GiB RAM, Linux 6.18.0, Node v20.0.0');
    expect(s).toContain('1.0 2.0 3.0 before, 2.0 2.0 3.0 after');
    expect(s).toContain('**SKB splice, one bulk flow**: 3.00 Gbit/s, 0.75× direct routing and 1.50× HAProxy; CPU per GB 1.25× direct routing\'s and 0.83× HAProxy\'s.');
    expect(s).toContain('**XDP splice, one bulk flow**: 1.90 Gbit/s, 0.95× the minimal XDP forwarder (the XDP limit on veth) at 1.10× its CPU per GB.');
    expect(s).toContain('the embedded proxy sets up 500 connections/s, 0.25× HAProxy\'s 2000 (direct routing 3000); the proxy\'s own CPU per connection 2.00× HAProxy\'s (the whole machine\'s, with clients and servers: 3.00×).');
    expect(s).toContain('p50 / p99 1.20 / 6.00 ms through the embedded proxy, 0.60 / 3.00 ms through HAProxy, 0.50 / 2.00 ms routed directly');
    expect(s).toContain('The veth caveat');
  });

  it('names the benchmark to run for what the doc lacks', () => {
    const s = summarySection('# Benchmarks\n', { ...run, loadAfter: undefined });
    expect(s).toContain('SKB splice, one bulk flow: not in the data path section (run `npm run bench:datapath`)');
    expect(s).toContain('run `npm run bench:connlat`');
    expect(s).toContain('run `npm run bench:xds`');
    expect(s).toContain('run `npm run bench:pktcost`');
    expect(s).toContain('when this summary was written');
  });

  it('quotes the summary for the README without its heading', () => {
    const r = summaryForReadme(summarySection('# Benchmarks\n', run));
    expect(r).not.toContain('## Summary');
    expect(r).toContain('[docs/benchmarks.md](docs/benchmarks.md)');
    expect(r.startsWith('<!-- bench:summary:start -->')).toBe(true);
    expect(r.endsWith('<!-- bench:summary:end -->')).toBe(true);
  });
});
