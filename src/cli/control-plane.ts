// `ebpf-xds control-plane`: runs the store, the xDS server and the REST API in one process until
// SIGTERM/SIGINT, then closes them in order (API, xDS streams, store).
import type { Command } from 'commander';
import type { ControlPlane, ControlPlaneOptions } from '../control-plane.js';
import { parsePort, parsePositiveInt } from './arg-parsers.js';
import { stopOnSignals } from './stop-on-signal.js';


interface Flags {
  xdsPort: number;
  xdsHost: string;
  apiPort: number;
  apiHost: string;
  dataDir: string;
  resources?: string;
  apiTokenFile?: string;
  xdsTlsCert?: string;
  xdsTlsKey?: string;
  xdsClientCa?: string;
  historyLimit: number;
  apiBodyLimit: number;
  logLevel?: string;
}

export function registerControlPlane(program: Command): void {
  program
    .command('control-plane')
    .description('run the xDS control plane: config store, xDS server (ADS, SotW and Delta) and REST API')
    .option('--xds-port <port>', 'xDS gRPC port', parsePort, 18000)
    .option('--xds-host <addr>', 'xDS listen address', '0.0.0.0')
    .option('--api-port <port>', 'REST API port', parsePort, 8080)
    .option('--api-host <addr>', 'REST API listen address (only this host by default)', '127.0.0.1')
    .option('--data-dir <dir>', 'where the SQLite store and the generated API token live', './data')
    .option('--resources <file>', 'raw Envoy resources (YAML/JSON list with "@type") to load at start')
    .option('--api-token-file <file>', 'file holding the API bearer token (default: <data-dir>/api-token, generated on first start)')
    .option('--xds-tls-cert <file>', 'PEM certificate for TLS on the xDS port')
    .option('--xds-tls-key <file>', 'PEM private key for TLS on the xDS port')
    .option('--xds-client-ca <file>', 'PEM CA: require client certificates signed by it (mTLS)')
    .option('--history-limit <n>', 'revisions kept in the history', parsePositiveInt, 1000)
    .option('--api-body-limit <bytes>', 'largest accepted API request body', parsePositiveInt, 4 * 1024 * 1024)
    .option('--log-level <level>', 'trace, debug, info, warn, error (default: $LOG_LEVEL or info)')
    .action(async (flags: Flags) => {
      // Loaded here so other subcommands (apply, get) start without the server stack.
      const { ControlPlane, StartupError } = await import('../control-plane.js');
      const { createLogger } = await import('../util/log.js');
      const logger = createLogger({ name: 'ebpf-xds', ...(flags.logLevel ? { level: flags.logLevel } : {}) });
      if ((flags.xdsTlsCert === undefined) !== (flags.xdsTlsKey === undefined)) {
        fail('--xds-tls-cert and --xds-tls-key go together: give both to enable TLS on the xDS port');
      }
      if (flags.xdsClientCa && !flags.xdsTlsCert) fail('--xds-client-ca needs --xds-tls-cert and --xds-tls-key (mTLS is TLS plus client certificates)');
      const opts: ControlPlaneOptions = {
        dataDir: flags.dataDir,
        xdsPort: flags.xdsPort,
        xdsHost: flags.xdsHost,
        apiPort: flags.apiPort,
        apiHost: flags.apiHost,
        historyLimit: flags.historyLimit,
        apiBodyLimit: flags.apiBodyLimit,
        logger,
      };
      if (flags.resources) opts.resourcesFile = flags.resources;
      if (flags.apiTokenFile) opts.apiTokenFile = flags.apiTokenFile;
      if (flags.xdsTlsCert && flags.xdsTlsKey) opts.xdsTls = { cert: flags.xdsTlsCert, key: flags.xdsTlsKey, ...(flags.xdsClientCa ? { clientCa: flags.xdsClientCa } : {}) };

      let cp: ControlPlane;
      try {
        cp = await ControlPlane.start(opts);
      } catch (err) {
        logger.flush();
        fail(err instanceof StartupError ? err.message : `could not start: ${(err as Error).message}`);
      }
      process.stderr.write(`ebpf-xds control plane: xDS on ${flags.xdsHost}:${cp.xdsPort}, API on ${cp.apiUrl} (docs: ${cp.apiUrl}/docs)\n`);
      stopOnSignals(logger, () => cp.close());
    });
}

function fail(message: string): never {
  process.stderr.write(`ebpf-xds control-plane: ${message}\n`);
  process.exit(1);
}
