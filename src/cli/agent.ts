// `ebpf-xds agent`: the node agent (xDS client, kernel datapaths, embedded proxy) until
// SIGTERM/SIGINT. On exit its attachments stay pinned, so the next agent adopts them and spliced
// connections keep flowing meanwhile (--detach-on-exit removes them instead).
import type { Command } from 'commander';
import { parseHostPort, parseOneOf, parsePort } from './arg-parsers.js';
import { stopOnSignals } from './stop-on-signal.js';


interface Flags {
  controlPlane: string;
  nodeId?: string;
  cluster?: string;
  proxy: 'embedded' | 'envoy';
  metricsPort: number;
  metricsHost: string;
  pinRoot: string;
  cgroup?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  xdsProtocol: 'auto' | 'delta' | 'sotw';
  detachOnExit?: boolean;
  logLevel?: string;
}

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run the node agent: xDS client of the control plane, eBPF datapaths (XDP, SKB, sk_lookup, drop rules) and the embedded splice proxy')
    .requiredOption('--control-plane <host:port>', 'xDS address of the control plane', parseHostPort)
    .option('--node-id <id>', 'xDS node id (default: the hostname)')
    .option('--cluster <name>', 'xDS node cluster (node selectors match it)')
    .option('--proxy <mode>', 'embedded: serve listeners with the built-in proxy; envoy: only attach programs and pin maps for an Envoy on this node', parseOneOf(['embedded', 'envoy'] as const), 'embedded')
    .option('--metrics-port <port>', 'port of /metrics, /healthz, /readyz and /status', parsePort, 9901)
    .option('--metrics-host <addr>', 'address of the metrics port', '127.0.0.1')
    .option('--pin-root <dir>', 'bpffs directory for pinned maps and links', '/sys/fs/bpf/ebpf-xds')
    .option('--cgroup <path>', 'cgroup v2 directory of the proxy\'s sockets, where SKB splice cleans up after them (default: the agent\'s own; embedded mode moves the agent into it)')
    .option('--tls-cert <file>', 'PEM client certificate for xDS over TLS')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--tls-ca <file>', 'PEM CA that signed the control plane\'s certificate')
    .option('--xds-protocol <p>', 'auto (Delta, SotW when the server has no Delta), delta or sotw', parseOneOf(['auto', 'delta', 'sotw'] as const), 'auto')
    .option('--detach-on-exit', 'remove every attachment and pin on exit (uninstall) instead of leaving them to the next agent')
    .option('--log-level <level>', 'trace, debug, info, warn, error (default: $LOG_LEVEL or info)')
    .action(async (flags: Flags) => {
      const { Agent, AgentStartError } = await import('../agent/agent.js');
      const { createLogger } = await import('../util/log.js');
      const tlsGiven = [flags.tlsCert, flags.tlsKey, flags.tlsCa].filter((f) => f !== undefined).length;
      if (tlsGiven !== 0 && tlsGiven !== 3) fail('--tls-cert, --tls-key and --tls-ca go together: give all three for xDS over TLS');
      const logger = createLogger({ name: 'ebpf-xds-agent', ...(flags.logLevel ? { level: flags.logLevel } : {}) });
      let agent: Awaited<ReturnType<typeof Agent.start>>;
      try {
        agent = await Agent.start({
          controlPlane: flags.controlPlane,
          proxy: flags.proxy,
          metricsPort: flags.metricsPort,
          metricsHost: flags.metricsHost,
          pinRoot: flags.pinRoot,
          logger,
          xdsProtocol: flags.xdsProtocol,
          ...(flags.nodeId ? { nodeId: flags.nodeId } : {}),
          ...(flags.cluster ? { cluster: flags.cluster } : {}),
          ...(flags.cgroup ? { cgroup: flags.cgroup } : {}),
          ...(flags.tlsCert && flags.tlsKey && flags.tlsCa ? { tls: { cert: flags.tlsCert, key: flags.tlsKey, ca: flags.tlsCa } } : {}),
          ...(flags.detachOnExit ? { detachOnExit: true } : {}),
        });
      } catch (err) {
        logger.flush();
        fail(err instanceof AgentStartError ? err.message : `could not start: ${(err as Error).stack ?? String(err)}`);
      }
      process.stderr.write(`ebpf-xds agent ${agent.nodeId}: xDS ${flags.controlPlane}, metrics on ${flags.metricsHost}:${agent.metricsPort}, proxy ${flags.proxy}\n`);
      stopOnSignals(logger, () => agent.stop());
    });
}

function fail(message: string): never {
  process.stderr.write(`ebpf-xds agent: ${message}\n`);
  process.exit(1);
}
