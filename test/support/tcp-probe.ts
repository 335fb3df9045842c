// One TCP connection attempt from inside a topology host, for tests that check where a
// connection lands (steering) or whether it gets through at all (drop rules).
import type { Host } from './netns.js';

export interface ProbeResult {
  outcome: 'connected' | 'refused' | 'timeout' | 'error';
  /** What the server sent back before closing (connected only). */
  reply: string;
  detail?: string;
}

const SCRIPT = `
const net = require('node:net');
const [host, port, ms, send] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
let reply = '';
const done = (outcome, detail) => { process.stdout.write(JSON.stringify({ outcome, reply, detail })); process.exit(0); };
const t = setTimeout(() => done('timeout'), Number(ms));
s.on('connect', () => s.end(send));
s.on('data', (d) => (reply += d));
s.on('end', () => { clearTimeout(t); done('connected'); });
s.on('error', (e) => { clearTimeout(t); done(e.code === 'ECONNREFUSED' ? 'refused' : 'error', e.code || e.message); });
`;

export async function tcpProbe(host: Host, address: string, port: number, opts: { timeoutMs?: number; send?: string } = {}): Promise<ProbeResult> {
  const out = await host.exec(process.execPath, ['-e', SCRIPT, address, String(port), String(opts.timeoutMs ?? 1500), opts.send ?? 'probe']);
  return JSON.parse(out) as ProbeResult;
}

const LISTENER = new URL('./listener-main.ts', import.meta.url).pathname;

/** Starts listener-main.ts in a host; stop() ends it. */
export async function startListener(host: Host, o: { port?: number; pins?: string; slot?: number } = {}): Promise<{ port: number; stop: () => Promise<void> }> {
  const args = ['--import', 'tsx', LISTENER, '--port', String(o.port ?? 0)];
  if (o.pins) args.push('--pins', o.pins, '--slot', String(o.slot ?? 0));
  const child = host.spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"port":(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`listener exited with ${code}: ${stderr.trim()}`)));
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.stdin?.end();
      }),
  };
}
