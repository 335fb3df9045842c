// Runs test/support/skb-proxy-main.ts inside a topology host and collects its events.
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Host } from './netns.js';

const MAIN = fileURLToPath(new URL('./skb-proxy-main.ts', import.meta.url));

export interface ProxySummary {
  conns: number;
  active: number;
  modes: Record<string, number>;
  ends: Record<string, number>;
  fallbackReasons: Record<string, number>;
  userBytes: number;
  kernelBytes: number;
  errors: string[];
}

export interface ConnEvent {
  event: 'conn';
  mode: string;
  fallbackReason?: string;
  handoverMs?: number;
  downstreamToUpstream: { userBytes: number; kernelBytes: number };
  upstreamToDownstream: { userBytes: number; kernelBytes: number };
  end: string;
  error?: string;
}

export interface RunningProxy {
  port: number;
  pid: number;
  conns: ConnEvent[];
  /** What the proxy logged (pino JSON lines, warnings and errors). */
  stderr(): string;
  /** Stops the proxy and returns its summary. */
  stop(): Promise<ProxySummary>;
}

export interface ProxyOptions {
  upstream: string;
  listen?: number;
  pins?: string;
  cgroup?: string;
  /** handoverTimeoutMs of each splice (0: give up at once when bytes are in flight). */
  handoverTimeoutMs?: number;
  /** Read the downstream's first bytes before splicing and pass them as `initial`. */
  peek?: boolean;
  each?: boolean;
  sockbuf?: number;
  /** Open the maps but never hand over: a plain user-space copy. */
  noHandover?: boolean;
}

export async function startSkbProxy(host: Host, o: ProxyOptions): Promise<RunningProxy> {
  // SKB_PROXY_CPU_PROF=<dir> writes a V8 CPU profile of the proxy there (where does a run's time go?)
  const prof = process.env['SKB_PROXY_CPU_PROF'];
  const args = [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), '--import', 'tsx', MAIN, '--upstream', o.upstream, '--listen', String(o.listen ?? 0)];
  if (o.pins) args.push('--pins', o.pins);
  if (o.cgroup) args.push('--cgroup', o.cgroup);
  if (o.handoverTimeoutMs !== undefined) args.push('--handover-timeout', String(o.handoverTimeoutMs));
  if (o.peek) args.push('--peek');
  if (o.each) args.push('--each');
  if (o.sockbuf) args.push('--sockbuf', String(o.sockbuf));
  if (o.noHandover) args.push('--no-handover');
  const child = host.spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const conns: ConnEvent[] = [];
  let summary: ProxySummary | undefined;
  let ready!: (v: { port: number; pid: number }) => void;
  const listening = new Promise<{ port: number; pid: number }>((r) => (ready = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const ev = JSON.parse(line) as Record<string, unknown>;
    if (ev['event'] === 'listening') ready({ port: ev['port'] as number, pid: ev['pid'] as number });
    else if (ev['event'] === 'conn') conns.push(ev as unknown as ConnEvent);
    else if (ev['event'] === 'summary') summary = ev as unknown as ProxySummary;
  });
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  const info = await Promise.race([
    listening,
    exited.then((code) => Promise.reject(new Error(`skb proxy exited with ${code} before listening: ${stderr.trim()}`))),
  ]);
  return {
    ...info,
    conns,
    stderr: () => stderr,
    async stop() {
      child.stdin?.end();
      const code = await exited;
      if (!summary) throw new Error(`skb proxy exited with ${code} without a summary: ${stderr.trim()}`);
      return summary;
    },
  };
}
