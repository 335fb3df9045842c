// Entry point of the demo's bridge process inside a namespace:
//   bridge-main.ts '<json [{from, to}, ...]>'   (BridgeEnd pairs, see bridge.ts)
// Prints {"event":"ready"} once every pipe listens. Exits when its stdin closes (the demo process
// is gone) or on SIGTERM/SIGINT.
import { bridge, type Bridge, type BridgeEnd } from './bridge.js';

async function main(): Promise<void> {
  const pairs = JSON.parse(process.argv[2] ?? '') as Array<{ from: BridgeEnd; to: BridgeEnd }>;
  const open: Bridge[] = [];
  for (const p of pairs) open.push(await bridge(p.from, p.to));
  process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
  const exit = () => void Promise.all(open.map((b) => b.close())).finally(() => process.exit(0));
  process.stdin.on('end', exit).on('error', exit).resume();
  process.on('SIGTERM', exit);
  process.on('SIGINT', exit);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});
