// `ebpf-xds start` as a user runs it, as a real process: it must get verified traffic through
// every path (SKB splice, XDP splice, user space with SNI) with the agent reporting the path it
// took, keep the blocked client out at XDP, show the agent's ACKs in the API, and on SIGINT exit 0
// leaving no namespace, pin, cgroup, run directory or process behind. `--no-demo` serves the
// control plane alone and stops cleanly on SIGINT.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cgroup2Mount } from '../../src/agent/bpf/cgroup.js';
import { listPins } from '../../src/agent/bpf/pins.js';
import { demoNetnsList, run } from '../../src/demo/netns.js';
import { DEMO_CGROUP_PREFIX, DEMO_PIN_BASE, DEMO_RUN_BASE, sweepStaleDemos } from '../../src/demo/state.js';

const ROOT = join(import.meta.dirname, '..', '..');
const dirs: string[] = [];
const procs: ChildProcess[] = [];

interface Started {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startCli(args: string[]): Started {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), 'start', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  return { proc, out: () => out, exited };
}

async function waitFor<T>(what: string, s: Started, probe: () => T | undefined | Promise<T | undefined>, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (s.proc.exitCode !== null) throw new Error(`ebpf-xds start exited (${s.proc.exitCode}) before ${what}; output:\n${s.out().slice(-4000)}`);
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; output:\n${s.out().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The fields of the last status line ("[m:ss] bulk-skb ok=3 failed=0 ... | ..."), per section. */
function lastStatus(out: string): Map<string, Record<string, string>> | undefined {
  const line = out
    .split('\n')
    .filter((l) => /^\[\d+:\d\d\] /.test(l))
    .pop();
  if (!line) return undefined;
  const sections = new Map<string, Record<string, string>>();
  for (const part of line.replace(/^\[[^\]]+\] /, '').split(' | ')) {
    const words = part.split(' ');
    const fields: Record<string, string> = {};
    for (const w of words) {
      const eq = w.indexOf('=');
      if (eq > 0) fields[w.slice(0, eq)] = w.slice(eq + 1);
    }
    sections.set(words.filter((w) => !w.includes('=')).join(' '), fields);
  }
  return sections;
}

const num = (f: Record<string, string> | undefined, k: string) => Number(f?.[k] ?? NaN);

interface Proc {
  pid: number;
  /** Start time in clock ticks since boot: with the pid, the identity of a process (pids are reused). */
  start: string;
  cmd: string;
}

/** A live process (not a zombie), or undefined. */
function procInfo(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return { pid, start: fields[19]!, cmd: readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 120) };
  } catch {
    return undefined;
  }
}

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  // A demo killed above (a failed test) left its state; the demo's own sweep removes it.
  await sweepStaleDemos();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('ebpf-xds start', () => {
  it('runs the demo with traffic on every path, and SIGINT removes everything it created', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'exds-demo-'));
    dirs.push(dataDir);
    const s = startCli(['--data-dir', dataDir, '--api-port', '0', '--xds-port', '0', '--agent-metrics-port', '0', '--rate', '2', '--interval', '1', '--output', 'lines']);
    const pid = s.proc.pid!;

    // Every listener: verified connections, carried by the path its mode names, no fallback.
    const status = await waitFor(
      'traffic on every path',
      s,
      () => {
        const st = lastStatus(s.out());
        if (!st) return undefined;
        const ok = (name: string, path: string) => num(st.get(name), 'ok') >= 2 && num(st.get(name), path) >= 2;
        return ok('bulk-skb', 'skb') && ok('bulk-xdp', 'xdp') && ok('tls-sni', 'userspace') && num(st.get('drop blocked'), 'dropped') >= 2 && st.get('path MB/s') ? st : undefined;
      },
      45_000,
    );
    for (const name of ['bulk-skb', 'bulk-xdp', 'tls-sni']) {
      expect(num(status.get(name), 'failed'), `${name} failed connections; output:\n${s.out().slice(-3000)}`).toBe(0);
      expect(num(status.get(name), 'fallbacks')).toBe(0);
    }
    expect(num(status.get('bulk-skb'), 'xdp') + num(status.get('bulk-skb'), 'userspace')).toBe(0);
    expect(num(status.get('bulk-xdp'), 'skb') + num(status.get('bulk-xdp'), 'userspace')).toBe(0);
    expect(num(status.get('drop blocked'), 'through')).toBe(0);
    expect(num(status.get('drop blocked'), 'attempts')).toBeGreaterThanOrEqual(2);
    expect(num(status.get(''), 'nacks')).toBe(0);
    expect(num(status.get('xds demo-mb'), 'Listener')).toBe(1);
    expect(num(status.get('path MB/s'), 'skb')).toBeGreaterThan(0);
    expect(num(status.get('path MB/s'), 'xdp')).toBeGreaterThan(0);

    // What the banner tells the user works: the API with the token file, the agent's metrics.
    const out = s.out();
    const apiUrl = /API {9}(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
    const metricsUrl = /metrics (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(out)![1]!;
    expect(out).toContain(`${apiUrl}/docs`);
    const token = readFileSync(join(dataDir, 'api-token'), 'utf8').trim();
    const nodes = (await (await fetch(`${apiUrl}/v1/nodes`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
      items: Array<{ node: { id: string } | null; types: Array<{ typeUrl: string; acked: { version: string } | null; lastNack: unknown }> }>;
    };
    const me = nodes.items.find((n) => n.node?.id === 'demo-mb');
    expect(me?.types.map((t) => [t.typeUrl.split('.').pop(), t.acked?.version, t.lastNack])).toEqual(
      expect.arrayContaining([
        ['Listener', '1', null],
        ['Cluster', '1', null],
        ['ClusterLoadAssignment', '1', null],
      ]),
    );
    const metrics = await (await fetch(metricsUrl)).text();
    expect(metrics).toMatch(/^exds_spliced_bytes_total\{path="skb"\} [1-9]/m);
    expect(metrics).toMatch(/^exds_spliced_bytes_total\{path="xdp"\} [1-9]/m);
    expect(metrics).toMatch(/^exds_drop_packets_total\{interface="eth3",rule="blocked"\} [1-9]/m);

    // What it made, before it stops.
    const namespaces = (await demoNetnsList()).filter((n) => n.owner === pid).map((n) => n.name);
    expect(namespaces.sort()).toEqual(['blocked', 'client', 'mb', 's1', 's2'].map((h) => `xdsdemo-${pid}-${h}`));
    const children: Proc[] = [];
    for (const ns of namespaces) {
      for (const p of (await run('ip', ['netns', 'pids', ns])).split('\n').filter(Boolean)) {
        const proc = procInfo(Number(p));
        if (proc) children.push(proc);
      }
    }
    // agent, bridge, two servers, client, blocked client
    expect(children.filter((c) => c.cmd.includes('--import tsx')).length, JSON.stringify(children)).toBe(6);
    const pinRoot = join(DEMO_PIN_BASE, String(pid));
    expect(listPins(pinRoot).length).toBeGreaterThan(0);
    const cgroup = join(cgroup2Mount(), `${DEMO_CGROUP_PREFIX}${pid}`);
    expect(existsSync(cgroup)).toBe(true);

    s.proc.kill('SIGINT');
    const exit = await s.exited;
    expect(exit, s.out().slice(-3000)).toEqual({ code: 0, signal: null });
    expect(s.out()).toContain('everything the demo created is removed');
    expect((await demoNetnsList()).filter((n) => n.owner === pid)).toEqual([]);
    expect(existsSync(pinRoot)).toBe(false);
    expect(existsSync(cgroup)).toBe(false);
    expect(existsSync(join(DEMO_RUN_BASE, String(pid)))).toBe(false);
    expect(children.filter((c) => procInfo(c.pid)?.start === c.start)).toEqual([]);
  }, 90_000);

  it('removes what it made when SIGINT arrives in the middle of the start', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'exds-demo-abort-'));
    dirs.push(dataDir);
    const s = startCli(['--data-dir', dataDir, '--api-port', '0', '--xds-port', '0', '--agent-metrics-port', '0', '--output', 'lines']);
    const pid = s.proc.pid!;
    await waitFor('the agent starting', s, () => (s.out().includes('· starting the agent') ? true : undefined), 30_000);
    expect((await demoNetnsList()).filter((n) => n.owner === pid)).toHaveLength(5);
    s.proc.kill('SIGINT');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(s.out()).toContain('everything the demo created is removed');
    expect((await demoNetnsList()).filter((n) => n.owner === pid)).toEqual([]);
    expect(existsSync(join(DEMO_PIN_BASE, String(pid)))).toBe(false);
    expect(existsSync(join(cgroup2Mount(), `${DEMO_CGROUP_PREFIX}${pid}`))).toBe(false);
    expect(existsSync(join(DEMO_RUN_BASE, String(pid)))).toBe(false);
  }, 60_000);

  it('--no-demo serves the control plane alone until SIGINT', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'exds-demo-nodemo-'));
    dirs.push(dataDir);
    const s = startCli(['--no-demo', '--data-dir', dataDir, '--api-port', '0', '--xds-port', '0', '--xds-host', '127.0.0.1']);
    const apiUrl = await waitFor('the API address', s, () => /API on (http:\/\/127\.0\.0\.1:\d+)/.exec(s.out())?.[1], 30_000);
    const health = await fetch(`${apiUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(s.out()).toContain(join(dataDir, 'api-token'));
    expect(await demoNetnsList().then((l) => l.filter((n) => n.owner === s.proc.pid))).toEqual([]);
    s.proc.kill('SIGINT');
    expect(await s.exited).toEqual({ code: 0, signal: null });
  }, 40_000);
});
