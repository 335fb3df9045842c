// The whole benchmark report (`npm run bench`): runs bench:xds, bench:datapath, bench:pktcost and
// bench:connlat one after another as child processes (each rewrites its own section of
// docs/benchmarks.md and its chart), showing their output as it comes, then writes the summary
// at the top of docs/benchmarks.md: the machine, the load average before and after, and the key
// ratios read back from the sections (bench/report-summary.ts).
//   --quick          a short sanity subset: the benches run briefly with --no-write, so the
//                    published sections stay; the summary of the doc as it stands is printed
//   --only a,b       some of xds, datapath, pktcost, connlat
//   --summary-only   run nothing; rewrite the summary from the sections in the doc
//   --no-write       print the summary instead of writing it
// The README's benchmark summary (between the same markers) is rewritten with it.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { replaceSection } from './report-doc.js';
import { summaryForReadme, summarySection, SUMMARY_SECTION, type Machine } from './report-summary.js';

const DOC = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));
const README = fileURLToPath(new URL('../README.md', import.meta.url));
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const SUMMARY_ONLY = argv.includes('--summary-only');
const WRITE = !argv.includes('--no-write') && !QUICK;
const onlyAt = argv.indexOf('--only');
const ONLY = onlyAt >= 0 ? (argv[onlyAt + 1] ?? '').split(',') : undefined;

interface Bench {
  id: string;
  script: string;
  /** Flags of a full run and of a --quick sanity run. */
  full: string[];
  quick: string[];
  /** What it covers, for the progress line. */
  about: string;
}

const BENCHES: Bench[] = [
  { id: 'xds', script: 'xds.ts', full: [], quick: ['--clients', '100', '--clusters', '100', '--protocols', 'sotw,delta', '--changes', '2'], about: 'xDS fan-out to 100 and 1,000 clients' },
  { id: 'pktcost', script: 'pktcost.ts', full: [], quick: ['--repeat', '100000', '--runs', '1'], about: 'per-packet cost of the XDP programs' },
  { id: 'datapath', script: 'datapath.ts', full: [], quick: ['--seconds', '1', '--modes', 'direct,haproxy,skb-splice,xdp-fwd,xdp-splice', '--workloads', 'bulk,short'], about: 'throughput and CPU per GB by data path' },
  { id: 'connlat', script: 'connlat.ts', full: [], quick: ['--seconds', '1', '--concurrency', '1,8'], about: 'short connections: setup rate and latency' },
];

const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const elapsed = (t0: number) => {
  const s = Math.round((Date.now() - t0) / 1000);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
};

function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown CPU',
    cores: cpus.length,
    ramGiB: os.totalmem() / 2 ** 30,
    kernel: os.release(),
    node: process.version,
  };
}

let stopping = false;
let current: ReturnType<typeof spawn> | undefined;
// Ctrl-C reaches the running bench through the terminal's process group and it cleans up what it
// made; this process stays to show that and then stops. SIGTERM is passed on.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    stopping = true;
    if (sig === 'SIGTERM') current?.kill('SIGTERM');
    log(`${sig}: stopping once the running bench has cleaned up`);
  });
}

/** Runs one bench, its output lines prefixed with its name; rejects with its exit status. */
function run(b: Bench, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const tsx = fileURLToPath(new URL('../node_modules/tsx/dist/cli.mjs', import.meta.url));
    const child = spawn(process.execPath, [tsx, fileURLToPath(new URL(`./${b.script}`, import.meta.url)), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const prefix = (stream: NodeJS.ReadableStream, out: NodeJS.WriteStream) => {
      let rest = '';
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        const lines = (rest + d).split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) out.write(`  ${b.id} │ ${l}\n`);
      });
      stream.on('end', () => rest && out.write(`  ${b.id} │ ${rest}\n`));
    };
    current = child;
    prefix(child.stdout, process.stdout);
    prefix(child.stderr, process.stderr);
    child.once('error', (e) => reject(new Error(`bench:${b.id} could not start: ${e.message}`)));
    child.once('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`bench:${b.id} failed (${signal ?? `exit ${code}`}); its output above says why; run \`npm run bench:${b.id}\` alone to repeat it`)),
    );
  });
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg();
  const m = machine();
  const benches = SUMMARY_ONLY ? [] : BENCHES.filter((b) => !ONLY || ONLY.includes(b.id));
  if (ONLY && benches.length !== ONLY.length) throw new Error(`--only takes some of ${BENCHES.map((b) => b.id).join(', ')} (got ${ONLY.join(', ')})`);
  log(`${m.cores} × ${m.cpuModel}, ${(m.ramGiB).toFixed(1)} GiB RAM, Linux ${m.kernel}, Node ${m.node}; load average ${loadBefore.map((l) => l.toFixed(1)).join(' ')}`);
  if (loadBefore[0]! > m.cores / 2) log(`the machine is busy (load ${loadBefore[0]!.toFixed(1)} on ${m.cores} cores): absolute numbers will be low; ratios within a run still hold`);
  if (QUICK) log('quick sanity run: short runs, nothing written to docs/benchmarks.md');
  const t0 = Date.now();
  const failed: string[] = [];
  for (const [i, b] of benches.entries()) {
    if (stopping) {
      failed.push(...benches.slice(i).map((x) => x.id));
      break;
    }
    const args = QUICK ? [...b.quick, '--no-write'] : b.full;
    log(`(${i + 1}/${benches.length}) bench:${b.id}: ${b.about}${args.length ? ` [${args.join(' ')}]` : ''}; ${elapsed(t0)} so far`);
    const t = Date.now();
    try {
      await run(b, args);
      log(`bench:${b.id} done in ${elapsed(t)}`);
    } catch (e) {
      // The others still run: one broken bench should not cost the rest of a long report.
      log((e as Error).message);
      failed.push(b.id);
    }
  }
  const loadAfter = os.loadavg();
  const ran = benches.filter((b) => !failed.includes(b.id)).map((b) => `bench:${b.id}`);
  const doc = readFileSync(DOC, 'utf8');
  const section = summarySection(doc, {
    machine: m,
    loadBefore,
    ...(benches.length ? { loadAfter } : {}),
    what: SUMMARY_ONLY || QUICK ? 'Summary recomputed from the benchmarks\' sections' : `Ran ${ran.join(', ')} (\`npm run bench\`, ${elapsed(t0)})`,
    date: new Date().toISOString().slice(0, 10),
  });
  if (WRITE && !stopping) {
    // Re-read: the benches wrote their sections while this ran.
    writeFileSync(DOC, replaceSection(readFileSync(DOC, 'utf8'), SUMMARY_SECTION, section, 'after-title'));
    log(`wrote the summary at the top of ${DOC}`);
    // The README quotes it between the same markers; elsewhere in the README nothing changes.
    const readme = readFileSync(README, 'utf8');
    if (readme.includes(`<!-- ${SUMMARY_SECTION}:start -->`)) {
      writeFileSync(README, replaceSection(readme, SUMMARY_SECTION, summaryForReadme(section)));
      log(`and quoted it in ${README}`);
    }
  } else process.stdout.write(`\n${section}\n`);
  log(`load average ${loadAfter.map((l) => l.toFixed(1)).join(' ')} at the end; ${elapsed(t0)} in all`);
  if (failed.length) {
    log(`failed: ${failed.map((id) => `bench:${id}`).join(', ')}`);
    process.exitCode = 1;
  }
}

main().catch((e: Error) => {
  log(`failed: ${e.message}`);
  process.exit(1);
});
