// Entry point of a demo traffic process, started inside a namespace by the demo:
//   traffic-main.ts '<json WorkerSpec>'
// Prints JSON lines on stdout: {"event":"ready"} once serving or driving, then
// {"event":"stats",...} every reportMs (drivers) and {"event":"error","message"} for problems a
// server sees. Exits when its stdin closes (the demo process is gone) or on SIGTERM/SIGINT.
import { readFileSync } from 'node:fs';
import { drive, probe, serve, type DriveTarget, type ProbeTarget } from './traffic.js';

// TLS material is named by file, never passed on the command line (which every local user can read).
export interface ServeWorker {
  kind: 'serve';
  name: string;
  host: string;
  ports: Array<{ port: number; tls?: { certFile: string; keyFile: string } }>;
}
export interface DriveWorker {
  kind: 'drive';
  targets: Array<Omit<DriveTarget, 'tls'> & { tls?: { servername: string; caFile: string; expect: string } }>;
  probes: ProbeTarget[];
  reportMs: number;
}
export type WorkerSpec = ServeWorker | DriveWorker;

const pem = (file: string) => readFileSync(file, 'utf8');

const emit = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as WorkerSpec;
  let stop: () => Promise<void>;
  if (spec.kind === 'serve') {
    const ports = spec.ports.map((p) => ({ port: p.port, ...(p.tls ? { tls: { cert: pem(p.tls.certFile), key: pem(p.tls.keyFile) } } : {}) }));
    const s = await serve({ name: spec.name, host: spec.host, ports }, (message) => emit({ event: 'error', message }));
    stop = () => s.close();
  } else {
    const d = drive(spec.targets.map(({ tls, ...t }) => ({ ...t, ...(tls ? { tls: { servername: tls.servername, ca: pem(tls.caFile), expect: tls.expect } } : {}) })));
    const p = probe(spec.probes);
    const report = setInterval(() => emit({ event: 'stats', targets: d.stats(), probes: p.stats() }), spec.reportMs);
    stop = async () => {
      clearInterval(report);
      p.stop();
      await d.stop();
    };
  }
  emit({ event: 'ready' });
  const exit = () => void stop().finally(() => process.exit(0));
  process.stdin.on('end', exit).on('error', exit).resume();
  process.on('SIGTERM', exit);
  process.on('SIGINT', exit);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});
