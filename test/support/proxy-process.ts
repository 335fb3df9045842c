// Starts test/support/proxy-main.ts (an EmbeddedProxy from a JSON DesiredState) inside a
// topology host and talks to it: apply a new state, read stats and metrics, read its logs.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { DesiredState } from '../../src/agent/desired-state.js';
import type { ListenerApplyResult, ProxyStats } from '../../src/agent/proxy/proxy.js';
import type { Host } from './netns.js';

const MAIN = fileURLToPath(new URL('./proxy-main.ts', import.meta.url));

export interface ProxyProcessOptions {
  state: DesiredState;
  skbPins?: string;
  xdpPins?: string;
  cgroup?: string;
  inspectTimeoutMs?: number;
  logLevel?: string;
}

export interface ProxyProcess {
  pid: number;
  /** Results of the initial apply. */
  results: ListenerApplyResult[];
  apply(state: DesiredState): Promise<ListenerApplyResult[]>;
  stats(): Promise<ProxyStats>;
  metrics(): Promise<string>;
  /** Everything it logged so far (pino JSON lines). */
  logs(): string;
  /**
   * The log lines that contain `text`, once there are at least `count` of them. A connection's
   * last line comes after its peers saw its end (the proxy logs once both sockets closed), so
   * tests wait for it rather than read the log at once.
   */
  logLines(text: string, count?: number, timeoutMs?: number): Promise<string[]>;
  /** Closes stdin, waits for a clean exit. */
  stop(): Promise<void>;
}

export async function startProxyProcess(host: Host, o: ProxyProcessOptions): Promise<ProxyProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'exds-proxy-'));
  const statePath = join(dir, 'state.json');
  writeFileSync(statePath, JSON.stringify(o.state));
  const args = ['--import', 'tsx', MAIN, '--state', statePath, '--log-level', o.logLevel ?? 'info'];
  if (o.skbPins) args.push('--skb-pins', o.skbPins);
  if (o.xdpPins) args.push('--xdp-pins', o.xdpPins);
  if (o.cgroup) args.push('--cgroup', o.cgroup);
  if (o.inspectTimeoutMs) args.push('--inspect-timeout-ms', String(o.inspectTimeoutMs));
  const child = host.spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const waiting = new Map<string, Array<(ev: Record<string, unknown>) => void>>();
  const next = (event: string) => new Promise<Record<string, unknown>>((r) => waiting.set(event, [...(waiting.get(event) ?? []), r]));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const ev = JSON.parse(line) as Record<string, unknown>;
    const q = waiting.get(ev['event'] as string);
    q?.shift()?.(ev);
  });
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  exited.then(() => rmSync(dir, { recursive: true, force: true }));
  const died = exited.then((code) => Promise.reject(new Error(`proxy fixture exited with ${code}: ${stderr.trim().slice(-2000)}`)));
  died.catch(() => undefined);
  const ask = async (cmd: object, event: string) => {
    const reply = next(event);
    child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    return Promise.race([reply, died]);
  };
  const ready = await Promise.race([next('ready'), died]);
  return {
    pid: ready['pid'] as number,
    results: ready['results'] as ListenerApplyResult[],
    apply: async (state) => (await ask({ cmd: 'apply', state }, 'applied'))['results'] as ListenerApplyResult[],
    stats: async () => (await ask({ cmd: 'stats' }, 'stats'))['stats'] as ProxyStats,
    metrics: async () => (await ask({ cmd: 'metrics' }, 'metrics'))['text'] as string,
    logs: () => stderr,
    async logLines(text, count = 1, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const lines = stderr.split('\n').filter((l) => l.includes(text));
        if (lines.length >= count) return lines;
        if (Date.now() > deadline) throw new Error(`the proxy logged ${lines.length} of ${count} lines with ${text} in ${timeoutMs} ms; its log ends:\n${stderr.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin!.end();
      const code = await exited;
      if (code !== 0) throw new Error(`proxy fixture exited with ${code}: ${stderr.trim().slice(-2000)}`);
    },
  };
}

/** The sum of the Prometheus samples of `name` whose labels include `labels` (0 when none). */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
