// Runs test/support/xdp-proxy-main.ts inside a topology host and collects its events.
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Host } from './netns.js';

const MAIN = fileURLToPath(new URL('./xdp-proxy-main.ts', import.meta.url));

export interface XdpConnEvent {
  event: 'conn';
  mode: 'xdp' | 'userspace';
  fallbackReason?: string;
  attempts: number;
  userBytes: { downstreamToUpstream: number; upstreamToDownstream: number };
  kernel: { packets: number; bytes: number };
  holdMs?: number;
  rescaled?: boolean;
  end: string;
  error?: string;
}

export interface RunningXdpProxy {
  port: number;
  pid: number;
  conns: XdpConnEvent[];
  errors: string[];
  /** Resolves when n connections have ended. */
  waitConns(n: number, timeoutMs?: number): Promise<XdpConnEvent[]>;
  stop(): Promise<void>;
}

export interface XdpProxyOptions {
  upstream: string;
  maps?: string;
  listen?: number;
  idleMs?: number;
  wscale?: 'rescale' | 'fallback';
  maxAttempts?: number;
  spliceAfter?: number;
  noSplice?: boolean;
}

export async function startXdpProxy(host: Host, o: XdpProxyOptions): Promise<RunningXdpProxy> {
  const args = ['--import', 'tsx', MAIN, '--upstream', o.upstream, '--listen', String(o.listen ?? 0)];
  if (o.maps) args.push('--maps', o.maps);
  if (o.idleMs !== undefined) args.push('--idle-ms', String(o.idleMs));
  if (o.wscale) args.push('--wscale', o.wscale);
  if (o.maxAttempts !== undefined) args.push('--max-attempts', String(o.maxAttempts));
  if (o.spliceAfter !== undefined) args.push('--splice-after', String(o.spliceAfter));
  if (o.noSplice) args.push('--no-splice');
  const child = host.spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const conns: XdpConnEvent[] = [];
  const errors: string[] = [];
  const waiters: Array<() => void> = [];
  let ready!: (v: { port: number; pid: number }) => void;
  const listening = new Promise<{ port: number; pid: number }>((r) => (ready = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const ev = JSON.parse(line) as Record<string, unknown>;
    if (ev['event'] === 'listening') ready({ port: ev['port'] as number, pid: ev['pid'] as number });
    else if (ev['event'] === 'conn') {
      conns.push(ev as unknown as XdpConnEvent);
      for (const w of waiters.splice(0)) w();
    } else if (ev['event'] === 'error') errors.push(String(ev['message']));
  });
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  const info = await Promise.race([
    listening,
    exited.then((code) => Promise.reject(new Error(`xdp proxy exited with ${code} before listening: ${stderr.trim()}`))),
  ]);
  return {
    ...info,
    conns,
    errors,
    async waitConns(n, timeoutMs = 60_000) {
      const t0 = Date.now();
      while (conns.length < n) {
        if (Date.now() - t0 > timeoutMs) throw new Error(`xdp proxy: ${conns.length} of ${n} connections ended within ${timeoutMs} ms; stderr: ${stderr.trim().slice(-2000)}`);
        await Promise.race([new Promise<void>((r) => waiters.push(r)), new Promise((r) => setTimeout(r, 200)), exited]);
      }
      return conns.slice(0, n);
    },
    async stop() {
      child.stdin?.end();
      const code = await exited;
      if (code !== 0) throw new Error(`xdp proxy exited with ${code}: ${stderr.trim().slice(-2000)}`);
    },
  };
}
