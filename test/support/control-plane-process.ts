// Runs `ebpf-xds control-plane` as a real child process for tests: ephemeral ports (read from its
// "control plane ready" log line), a token file, captured stderr, SIGTERM / SIGKILL, and an API
// client. Every process started here is tracked so a test's afterAll can stop them all.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ApiClient } from '../../src/api/client.js';
import type { Host } from './netns.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

export interface ControlPlaneProcess {
  proc: ChildProcess;
  pid: number;
  xdsPort: number;
  apiPort: number;
  apiUrl: string;
  token: string;
  api: ApiClient;
  stderr(): string;
  /** Resolves with the exit code/signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ControlPlaneProcess>();

/** Writes a token file in `dir` (reused across restarts of one test). */
export function writeTokenFile(dir: string): { file: string; token: string } {
  const token = randomBytes(24).toString('base64url');
  const file = join(dir, 'token');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return { file, token };
}

export interface StartOptions {
  dataDir: string;
  tokenFile: { file: string; token: string };
  args?: string[];
  /** Fixed ports (e.g. to restart on the same ones); default ephemeral. */
  xdsPort?: number;
  apiPort?: number;
  timeoutMs?: number;
  /** Run inside this topology host's network namespace (then `api` works only from inside it). */
  host?: Host;
}

/** Spawns the CLI exactly as operators run it (through tsx, no build step), optionally inside a topology host. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, host?: Host): ChildProcess {
  const argv = ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), ...args];
  const opts = { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'] };
  return host ? host.spawn(process.execPath, argv, opts) : spawn(process.execPath, argv, opts);
}

export async function startControlPlane(opts: StartOptions): Promise<ControlPlaneProcess> {
  const args = [
    'control-plane',
    '--xds-port',
    String(opts.xdsPort ?? 0),
    '--xds-host',
    '127.0.0.1',
    '--api-port',
    String(opts.apiPort ?? 0),
    '--data-dir',
    opts.dataDir,
    '--api-token-file',
    opts.tokenFile.file,
    ...(opts.args ?? []),
  ];
  const proc = spawnCli(args, {}, opts.host);
  let err = '';
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => proc.once('exit', (code, signal) => res({ code, signal })));
  const ready = new Promise<{ xdsPort: number; apiPort: number; apiUrl: string }>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`control plane did not become ready in ${opts.timeoutMs ?? 30_000} ms; stderr:\n${err}`)), opts.timeoutMs ?? 30_000);
    proc.stderr?.on('data', (b: Buffer) => {
      err += b.toString();
      for (const line of err.split('\n')) {
        if (!line.includes('"control plane ready"')) continue;
        const j = JSON.parse(line) as { xdsPort: number; apiPort: number; apiUrl: string };
        clearTimeout(timer);
        res(j);
      }
    });
    proc.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`control plane exited (code ${code}, signal ${signal}) before it was ready; stderr:\n${err}\nstdout:\n${out}`));
    });
  });
  const r = await ready;
  const cp: ControlPlaneProcess = {
    proc,
    pid: proc.pid as number,
    ...r,
    token: opts.tokenFile.token,
    api: new ApiClient({ baseUrl: r.apiUrl, token: opts.tokenFile.token }),
    stderr: () => err,
    exited,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const res = await exited;
      running.delete(cp);
      return res;
    },
  };
  running.add(cp);
  void exited.then(() => running.delete(cp));
  return cp;
}

/** Runs the CLI to completion and returns its exit code and output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
  proc.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((res) => proc.once('close', (code) => res({ code, stdout, stderr })));
}

/** SIGKILLs every control plane still running (for afterAll). */
export async function killAllControlPlanes(): Promise<void> {
  for (const cp of [...running]) {
    if (cp.proc.exitCode === null && cp.proc.signalCode === null) cp.proc.kill('SIGKILL');
    await cp.exited;
    running.delete(cp);
  }
}
