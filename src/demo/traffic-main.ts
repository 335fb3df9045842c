// Entry point of a demo traffic process, started inside a namespace by the demo:
//   traffic-main.ts '<json WorkerSpec>'
// Prints JSON lines on stdout: {"event":"ready"} once serving or driving, then
// {"event":"stats",...} every reportMs (drivers) and {"event":"error","message"} for problems a
// server sees. Exits when its stdin closes (the demo process is gone) or on SIGTERM/SIGINT.
import { drive, probe, serve, type DriveTarget, type ProbeTarget, type ServeSpec } from './traffic.js';

export type WorkerSpec = ({ kind: 'serve' } & ServeSpec) | { kind: 'drive'; targets: DriveTarget[]; probes: ProbeTarget[]; reportMs: number };

const emit = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as WorkerSpec;
  let stop: () => Promise<void>;
  if (spec.kind === 'serve') {
    const s = await serve(spec, (message) => emit({ event: 'error', message }));
    stop = () => s.close();
  } else {
    const d = drive(spec.targets);
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
