// The demo's child processes: TypeScript entry points run through tsx inside a namespace, each
// in its own process group (a terminal's Ctrl-C reaches only the demo, which stops them in
// order), with a stdin pipe whose end tells our own scripts that the demo is gone. JSON lines on
// stdout become events; stderr goes to a log file and its tail is kept for error messages.
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Netns } from './netns.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ChildOptions {
  /** Name in messages: "the agent", "server s1". */
  what: string;
  ns: Netns;
  /** Script path relative to the repo root, and its arguments. */
  script: string;
  args: string[];
  /** Where stderr (and non-JSON stdout) goes. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  onEvent?: (e: Record<string, unknown>) => void;
}

export class DemoChild {
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private tail: string[] = [];
  private readonly seen = new Map<string, Record<string, unknown>>();
  private readonly log: WriteStream;
  private expectExit = false;

  constructor(readonly o: ChildOptions) {
    this.log = createWriteStream(o.logFile, { flags: 'a' });
    this.proc = o.ns.spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, o.script), ...o.args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...(o.env ?? {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => this.log.end());
    // A child that is gone makes our writes to its stdin fail with EPIPE; nothing to do about it.
    this.proc.stdin?.on('error', () => undefined);
    let buf = '';
    this.proc.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let event: Record<string, unknown> | undefined;
        try {
          event = JSON.parse(line) as Record<string, unknown>;
        } catch {
          this.keep(line);
        }
        if (!event) continue;
        if (typeof event['event'] === 'string' && !this.seen.has(event['event'])) this.seen.set(event['event'], event);
        o.onEvent?.(event);
      }
    });
    this.proc.stderr?.on('data', (d: Buffer) => {
      this.log.write(d);
      for (const line of d.toString().split('\n')) if (line) this.keep(line);
    });
  }

  private keep(line: string): void {
    this.tail.push(line);
    if (this.tail.length > 40) this.tail.shift();
  }

  /** The last lines it wrote on stderr, for error messages. */
  lastLines(n = 12): string {
    return this.tail.slice(-n).join('\n');
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** True once stop() was asked: its exit is then no failure. */
  get stopping(): boolean {
    return this.expectExit;
  }

  /** Resolves on the first event of `type` (e.g. "ready"); rejects if the child exits first or time runs out. */
  async waitFor(type: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const e = this.seen.get(type);
      if (e) return e;
      if (!this.running) throw new Error(`${this.o.what} exited before it was ready:\n${this.lastLines()}`);
      if (Date.now() > until) throw new Error(`${this.o.what} was not ready after ${timeoutMs / 1000} s:\n${this.lastLines()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM, then SIGKILL after graceMs; resolves with how it ended. */
  async stop(graceMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.expectExit = true;
    if (this.running) {
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.running && this.proc.kill('SIGKILL'), graceMs);
      const r = await this.exited;
      clearTimeout(timer);
      return r;
    }
    return this.exited;
  }
}
