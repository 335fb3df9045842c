// Runs `ebpf-xds agent` as a real process inside a topology host (its metrics port on 127.0.0.1
// there, found from its "agent started" log line), and reads its /metrics, /status and /readyz
// through nsenter. kill() sends a signal (SIGKILL for crash tests); stop() ends it with SIGTERM.
import type { ChildProcess } from 'node:child_process';
import { spawnCli } from './control-plane-process.js';
import type { Host } from './netns.js';
import { nsFetch } from './ns-http.js';

export interface AgentProcessOptions {
  controlPlane: string;
  nodeId: string;
  pinRoot: string;
  cgroup: string;
  proxy?: 'embedded' | 'envoy';
  args?: string[];
  logLevel?: string;
  timeoutMs?: number;
}

export interface AgentProcess {
  proc: ChildProcess;
  pid: number;
  metricsPort: number;
  /** Everything it logged (pino JSON lines). */
  logs(): string;
  get(path: string): Promise<{ status: number; body: string }>;
  metrics(): Promise<string>;
  status(): Promise<Record<string, any>>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON
  /** Resolves once /readyz answers 200. */
  waitReady(ms?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

export async function startAgent(host: Host, o: AgentProcessOptions): Promise<AgentProcess> {
  const args = [
    'agent',
    '--control-plane',
    o.controlPlane,
    '--node-id',
    o.nodeId,
    '--metrics-port',
    '0',
    '--metrics-host',
    '127.0.0.1',
    '--pin-root',
    o.pinRoot,
    '--cgroup',
    o.cgroup,
    '--proxy',
    o.proxy ?? 'embedded',
    ...(o.args ?? []),
  ];
  const proc = spawnCli(args, { LOG_LEVEL: o.logLevel ?? 'info' }, host);
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => proc.once('exit', (code, signal) => res({ code, signal })));
  const started = new Promise<{ pid: number; metricsPort: number }>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`agent did not start in ${o.timeoutMs ?? 30_000} ms; stderr:\n${err}`)), o.timeoutMs ?? 30_000);
    proc.stderr?.on('data', (b: Buffer) => {
      err += b.toString();
      for (const line of err.split('\n')) {
        if (!line.includes('"agent started"')) continue;
        const j = JSON.parse(line) as { pid: number; metricsPort: number };
        clearTimeout(timer);
        res(j);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`agent exited (code ${code}, signal ${signal}) before it started; stderr:\n${err}`));
    });
  });
  const { pid, metricsPort } = await started;
  const get = (path: string) => nsFetch(host, 'GET', `http://127.0.0.1:${metricsPort}${path}`);
  const a: AgentProcess = {
    proc,
    pid,
    metricsPort,
    logs: () => err,
    get,
    metrics: async () => (await get('/metrics')).body,
    status: async () => JSON.parse((await get('/status')).body) as Record<string, any>, // eslint-disable-line @typescript-eslint/no-explicit-any
    async waitReady(ms = 30_000) {
      const until = Date.now() + ms;
      for (;;) {
        const r = await get('/readyz');
        if (r.status === 200) return;
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`agent exited before it was ready; stderr:\n${err}`);
        if (Date.now() > until) throw new Error(`agent not ready within ${ms} ms (${r.status} ${r.body}); stderr:\n${err.slice(-4000)}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    },
    exited,
    async kill(signal) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    async stop() {
      const r = await a.kill('SIGTERM');
      if (r.code !== 0) throw new Error(`agent exited with ${r.code ?? r.signal} on SIGTERM; stderr:\n${err.slice(-4000)}`);
    },
  };
  return a;
}
