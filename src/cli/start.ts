// `ebpf-xds start` (what `npm start` runs): the control plane on embedded defaults plus a live
// demo around it (src/demo/): an agent in a middlebox namespace, an example config, verified
// traffic through every path, and a table of what the system reports. `--no-demo` runs the
// control plane alone in the foreground. SIGINT/SIGTERM stop either and remove what they made.
import { existsSync, readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { parseOneOf, parsePort } from './arg-parsers.js';

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive number`);
  return n;
}

interface Flags {
  demo: boolean;
  dataDir: string;
  apiPort: number;
  xdsPort: number;
  xdsHost?: string;
  agentMetricsPort: number;
  rate: number;
  output?: 'table' | 'lines';
  interval?: number;
  pinBase: string;
  logLevel?: string;
}

export function registerStart(program: Command): void {
  program
    .command('start')
    .description('run the control plane with a live demo: an agent in a middlebox namespace, an example config, traffic through XDP, SKB and user-space listeners, and a drop rule (--no-demo: the control plane alone)')
    .option('--no-demo', 'run only the control plane, in the foreground')
    .option('--data-dir <dir>', 'SQLite store and API token', './data')
    .option('--api-port <port>', 'REST API port on 127.0.0.1', parsePort, 8080)
    .option('--xds-port <port>', 'xDS port', parsePort, 18000)
    .option('--xds-host <addr>', 'xDS listen address (default: 127.0.0.1 with the demo, 0.0.0.0 with --no-demo)')
    .option('--agent-metrics-port <port>', "port on 127.0.0.1 that shows the demo agent's /metrics", parsePort, 9901)
    .option('--rate <MB/s>', 'demo traffic per listener', positive, 8)
    .option('--output <kind>', 'table (redrawn in place; default on a terminal) or lines (one line per refresh; default otherwise)', parseOneOf(['table', 'lines'] as const))
    .option('--interval <seconds>', 'refresh interval (default 1 for table, 5 for lines)', positive)
    .option('--pin-base <dir>', 'bpffs directory for the demo agent\'s pins (one subdirectory per run)', '/sys/fs/bpf/ebpf-xds-demo')
    .option('--log-level <level>', 'trace, debug, info, warn, error (default: $LOG_LEVEL or info)')
    .action(async (flags: Flags) => {
      if (flags.demo) await runDemo(flags);
      else await runControlPlaneOnly(flags);
    });
}

async function runControlPlaneOnly(flags: Flags): Promise<void> {
  const { ControlPlane, StartupError } = await import('../control-plane.js');
  const { createLogger } = await import('../util/log.js');
  const logger = createLogger({ name: 'ebpf-xds', ...(flags.logLevel ? { level: flags.logLevel } : {}) });
  const xdsHost = flags.xdsHost ?? '0.0.0.0';
  let cp: Awaited<ReturnType<typeof ControlPlane.start>>;
  try {
    cp = await ControlPlane.start({ dataDir: flags.dataDir, xdsPort: flags.xdsPort, xdsHost, apiPort: flags.apiPort, apiHost: '127.0.0.1', logger });
  } catch (err) {
    logger.flush();
    fail(err instanceof StartupError ? err.message : `could not start: ${(err as Error).message}`);
  }
  process.stdout.write(
    [
      `ebpf-xds control plane: xDS on ${xdsHost}:${cp.xdsPort}, API on ${cp.apiUrl} (OpenAPI docs: ${cp.apiUrl}/docs)`,
      `API token: ${cp.tokenFile}. Try:`,
      `  export EBPF_XDS_API=${cp.apiUrl} EBPF_XDS_TOKEN=$(cat ${cp.tokenFile})`,
      '  npx ebpf-xds apply -f envoy/examples/kafka-sni/config.yaml',
      '  npx ebpf-xds get nodes',
      `  curl -s ${cp.apiUrl}/healthz`,
      'Ctrl-C stops it.',
      '',
    ].join('\n'),
  );
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    cp.close().then(
      () => {
        logger.flush();
        process.exit(0);
      },
      (err: unknown) => {
        process.stderr.write(`ebpf-xds start: error while stopping: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

async function runDemo(flags: Flags): Promise<void> {
  preflight();
  const { Demo, Aborted } = await import('../demo/demo.js');
  const tty = process.stdout.isTTY === true;
  const output = flags.output ?? (tty ? 'table' : 'lines');
  let exiting = false;
  const finish = async (code: number) => {
    if (exiting) {
      process.stdout.write('still stopping; everything the demo created is being removed\n');
      return;
    }
    exiting = true;
    const errors = await demo.stop();
    if (errors.length === 0) {
      process.stdout.write('stopped; everything the demo created is removed (the store and logs stay in the data directory)\n');
      process.exit(code);
    }
    process.stderr.write(`stopped, but some things could not be removed:\n${errors.map((e) => `  ${e}`).join('\n')}\n`);
    process.exit(1);
  };
  const demo = new Demo(
    {
      dataDir: flags.dataDir,
      apiPort: flags.apiPort,
      xdsPort: flags.xdsPort,
      xdsHost: flags.xdsHost ?? '127.0.0.1',
      agentMetricsPort: flags.agentMetricsPort,
      rateMBps: flags.rate,
      output,
      intervalMs: (flags.interval ?? (output === 'table' ? 1 : 5)) * 1000,
      pinBase: flags.pinBase,
      logLevel: flags.logLevel ?? process.env['LOG_LEVEL'] ?? 'info',
      write: (t) => process.stdout.write(t),
      columns: () => process.stdout.columns ?? 120,
    },
    (err) => {
      process.stderr.write(`ebpf-xds start: ${err.message}\n`);
      void finish(1);
    },
  );
  process.on('SIGINT', () => void finish(0));
  process.on('SIGTERM', () => void finish(0));
  try {
    await demo.start();
  } catch (err) {
    if (err instanceof Aborted) return; // a signal stops it; finish() is already running
    process.stderr.write(`ebpf-xds start: ${(err as Error).message}\n`);
    await finish(1);
  }
}

/** What the demo needs from the machine, checked before anything is created. */
function preflight(): void {
  const hint = 'or run the control plane alone with --no-demo';
  if (process.getuid?.() !== 0) fail(`the demo builds network namespaces and loads eBPF programs, which needs root: run it as root (sudo npm start), ${hint}`);
  const mounts = readFileSync('/proc/mounts', 'utf8');
  if (!/^\S+ \/sys\/fs\/bpf bpf /m.test(mounts)) fail(`bpffs is not mounted at /sys/fs/bpf: mount -t bpf bpf /sys/fs/bpf (npm start does it), ${hint}`);
  if (!/^\S+ \S+ cgroup2 /m.test(mounts)) fail(`no cgroup v2 hierarchy is mounted (the SKB splice's cleanup program attaches to one): mount -t cgroup2 none /sys/fs/cgroup/unified, ${hint}`);
  if (!existsSync('/sys/kernel/btf/vmlinux')) fail(`the kernel has no BTF (/sys/kernel/btf/vmlinux): the eBPF programs are CO-RE and need a kernel built with CONFIG_DEBUG_INFO_BTF, ${hint}`);
}

function fail(message: string): never {
  process.stderr.write(`ebpf-xds start: ${message}\n`);
  process.exit(1);
}
