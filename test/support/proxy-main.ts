// Runs an EmbeddedProxy from a JSON DesiredState as its own process (inside a test namespace,
// started by test/support/proxy-process.ts); no control plane involved. Optional kernel paths:
// the SKB and XDP hand-off hooks over maps pinned by the test.
//   --state FILE [--skb-pins DIR] [--xdp-pins DIR] [--cgroup DIR] [--inspect-timeout-ms N]
//   [--log-level L]
// stdin, one JSON command per line: {"cmd":"apply","state":{...}} | {"cmd":"stats"} |
// {"cmd":"metrics"}; stdout, one JSON event per line: ready (with the first apply's results),
// applied, stats, metrics. pino logs go to stderr. stdin closing or SIGTERM stops it.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Registry } from 'prom-client';
import { moveToCgroup } from '../../src/agent/bpf/cgroup.js';
import { SkbMaps } from '../../src/agent/bpf/datapath-skb.js';
import { XdpMaps } from '../../src/agent/bpf/datapath-xdp.js';
import type { DesiredState } from '../../src/agent/desired-state.js';
import { skbHandoff } from '../../src/agent/proxy/handoff-skb.js';
import { xdpHandoff } from '../../src/agent/proxy/handoff-xdp.js';
import { EmbeddedProxy, type SpliceHooks } from '../../src/agent/proxy/proxy.js';
import { createLogger } from '../../src/util/log.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const emit = (o: object) => process.stdout.write(`${JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))}\n`);

const cgroup = opt('cgroup');
if (cgroup) moveToCgroup(cgroup, process.pid); // before any socket exists: sockets take the creator's cgroup

const logger = createLogger({ name: 'proxy-fixture', level: opt('log-level') ?? 'info' });
const skbPins = opt('skb-pins');
const xdpPins = opt('xdp-pins');
const skbMaps = skbPins ? SkbMaps.openPinned(skbPins) : undefined;
const xdpMaps = xdpPins ? XdpMaps.openPinned(xdpPins) : undefined;
const hooks: SpliceHooks = {
  ...(skbMaps ? { skb: skbHandoff({ maps: skbMaps }) } : {}),
  ...(xdpMaps ? { xdp: xdpHandoff({ maps: xdpMaps }) } : {}),
};
const registry = new Registry();
const inspect = opt('inspect-timeout-ms');
const proxy = new EmbeddedProxy({ logger, registry, hooks, healthInitialJitterMs: 50, ...(inspect ? { inspectTimeoutMs: Number(inspect) } : {}) });

const statePath = opt('state');
if (!statePath) throw new Error('--state FILE is required');
const initial = JSON.parse(readFileSync(statePath, 'utf8')) as DesiredState;
emit({ event: 'ready', pid: process.pid, results: await proxy.apply(initial) });

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await proxy.close({ destroyConnections: true });
  skbMaps?.close();
  xdpMaps?.close();
  process.exit(0);
}
process.on('SIGTERM', () => void stop());

// Commands run one at a time, so replies come back in order.
let chain = Promise.resolve();
createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (!line.trim()) return;
    chain = chain.then(async () => {
      const cmd = JSON.parse(line) as { cmd: string; state?: DesiredState };
      if (cmd.cmd === 'apply') emit({ event: 'applied', results: await proxy.apply(cmd.state!) });
      else if (cmd.cmd === 'stats') emit({ event: 'stats', stats: proxy.stats() });
      else if (cmd.cmd === 'metrics') emit({ event: 'metrics', text: await registry.metrics() });
      else emit({ event: 'error', message: `unknown command ${cmd.cmd}` });
    });
  })
  .on('close', () => void chain.then(stop));
