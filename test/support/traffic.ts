// Drives test/support/tcp-tool.mjs inside topology hosts and collects its JSON results.
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Host } from './netns.js';

export const TCP_TOOL = fileURLToPath(new URL('./tcp-tool.mjs', import.meta.url));

export interface ConnOptions {
  send?: number;
  waitFirst?: boolean;
  rstAfter?: number;
  pauseMs?: number;
  holdMs?: number;
  /** No result per connection (runClientSummary gives the totals): for many short connections. */
  quiet?: boolean;
  /** The FIN rides on the last bytes, in one segment (TCP_CORK before the last write). */
  finWithData?: boolean;
}

export interface ConnResult {
  event: 'done';
  role: 'client' | 'server';
  id: number;
  sent: number;
  sentSha: string;
  recv: number;
  recvSha: string;
  endedBy: 'fin' | 'rst-sent' | 'rst-received';
  ms: number;
  local: string;
  error?: string;
}

function connArgs(o: ConnOptions): string[] {
  const a: string[] = [];
  if (o.send) a.push('--send', String(o.send));
  if (o.waitFirst) a.push('--wait-first');
  if (o.rstAfter !== undefined) a.push('--rst-after', String(o.rstAfter));
  if (o.pauseMs) a.push('--pause-ms', String(o.pauseMs));
  if (o.holdMs) a.push('--hold-ms', String(o.holdMs));
  if (o.quiet) a.push('--quiet');
  if (o.finWithData) a.push('--fin-with-data');
  return a;
}

export interface ClientSummary {
  event: 'summary';
  conns: number;
  ms: number;
  bytes: number;
  sent: number;
  recv: number;
  /** Connections that did not end by FIN, or saw an error. */
  failed: number;
  failures: ConnResult[];
}

function collect(host: Host, args: string[], onLine?: (o: Record<string, unknown>) => void): Promise<ConnResult[]> {
  const child = host.spawn(process.execPath, [TCP_TOOL, ...args]);
  const results: ConnResult[] = [];
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const o = JSON.parse(line) as Record<string, unknown>;
    if (o['event'] === 'done') results.push(o as unknown as ConnResult);
    onLine?.(o);
  });
  return new Promise((resolve, reject) => {
    // 'close', not 'exit': 'exit' can come before the last lines of stdout were read.
    child.on('close', (code, signal) => {
      if (code === 0) resolve(results);
      else reject(new Error(`tcp-tool ${args[0]} in ${host.name} exited with ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}

export interface Server {
  port: number;
  /** Resolves once the server has handled `conns` connections and exited. */
  done: Promise<ConnResult[]>;
}

export async function startServer(host: Host, o: ConnOptions & { port?: number; bind?: string; conns?: number } = {}): Promise<Server> {
  let ready!: (port: number) => void;
  const listening = new Promise<number>((r) => (ready = r));
  const args = ['serve', '--port', String(o.port ?? 0), '--host', o.bind ?? '::', '--conns', String(o.conns ?? 1), ...connArgs(o)];
  const done = collect(host, args, (ev) => {
    if (ev['event'] === 'listening') ready(ev['port'] as number);
  });
  const port = await Promise.race([listening, done.then(() => Promise.reject(new Error('server exited before listening')))]);
  return { port, done };
}

export function runClient(host: Host, o: ConnOptions & { host: string; port: number; conns?: number; parallel?: number }): Promise<ConnResult[]> {
  const args = ['connect', '--host', o.host, '--port', String(o.port), '--conns', String(o.conns ?? 1), '--parallel', String(o.parallel ?? 1), ...connArgs(o)];
  return collect(host, args);
}

/** Like runClient, but returns the client's totals (use with quiet for many connections). */
export async function runClientSummary(host: Host, o: ConnOptions & { host: string; port: number; conns?: number; parallel?: number }): Promise<ClientSummary> {
  let summary: ClientSummary | undefined;
  const args = ['connect', '--host', o.host, '--port', String(o.port), '--conns', String(o.conns ?? 1), '--parallel', String(o.parallel ?? 1), ...connArgs(o)];
  await collect(host, args, (ev) => {
    if (ev['event'] === 'summary') summary = ev as unknown as ClientSummary;
  });
  if (!summary) throw new Error(`tcp-tool connect in ${host.name} ended without a summary`);
  return summary;
}
