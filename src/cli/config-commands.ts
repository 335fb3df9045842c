// Operator commands against a running control plane's REST API: `apply -f`, `diff -f` and
// `get <kind>`. --api / EBPF_XDS_API and --token, --token-file / EBPF_XDS_TOKEN say where and how.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { ApiClient, ApiClientError } from '../api/client.js';

interface ApiFlags {
  api?: string;
  token?: string;
  tokenFile?: string;
}

const DEFAULT_API = 'http://127.0.0.1:8080';

function client(flags: ApiFlags): ApiClient {
  let token = flags.token ?? process.env['EBPF_XDS_TOKEN'];
  if (flags.tokenFile) {
    try {
      token = readFileSync(flags.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new CliError(`cannot read --token-file ${flags.tokenFile}: ${(err as Error).message}`);
    }
  }
  const baseUrl = flags.api ?? process.env['EBPF_XDS_API'] ?? DEFAULT_API;
  return new ApiClient(token ? { baseUrl, token } : { baseUrl });
}

class CliError extends Error {}

function withApiOptions(cmd: Command): Command {
  return cmd
    .option('--api <url>', `control plane API URL (env EBPF_XDS_API, default ${DEFAULT_API})`)
    .option('--token <token>', 'API bearer token (env EBPF_XDS_TOKEN)')
    .option('--token-file <file>', 'file holding the API bearer token');
}

function readConfigFile(file: string): { text: string; contentType: string } {
  try {
    const text = file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
    return { text, contentType: /\.json$/i.test(file) ? 'application/json' : 'application/yaml' };
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

/** Runs a command body and turns failures into one message on stderr and exit code `code`. */
async function run(body: () => Promise<number | void>, code = 1): Promise<void> {
  try {
    const exit = await body();
    process.exitCode = exit ?? 0;
  } catch (err) {
    if (err instanceof ApiClientError) {
      process.stderr.write(`error: ${err.message}${err.status ? ` (HTTP ${err.status})` : ''}\n`);
      for (const p of err.problems) process.stderr.write(`  ${p.path}: ${p.message}\n`);
    } else if (err instanceof CliError) {
      process.stderr.write(`error: ${err.message}\n`);
    } else {
      process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`);
    }
    process.exitCode = code;
  }
}

interface DiffItem {
  kind: string;
  name: string;
  op: 'added' | 'removed' | 'changed';
  fields?: { path: string; before?: unknown; after?: unknown }[];
}

interface ApplyBody {
  revision: number;
  changed: boolean;
  diff: { changed: boolean; items: DiffItem[] };
  resourceChanges?: { typeUrl: string; name: string; op: string }[];
}

function show(v: unknown): string {
  return v === undefined ? '(none)' : JSON.stringify(v);
}

function formatDiff(items: DiffItem[]): string {
  const sign = { added: '+', removed: '-', changed: '~' } as const;
  const lines: string[] = [];
  for (const it of items) {
    lines.push(`${sign[it.op]} ${it.kind} ${it.name}`);
    for (const f of it.fields ?? []) lines.push(`    ${f.path || '(whole)'}: ${show(f.before)} -> ${show(f.after)}`);
  }
  return lines.join('\n');
}

function table(rows: Record<string, string | number>[], columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => String(r[c] ?? ''))))].join('\n');
}

type Output = 'table' | 'json' | 'yaml';

export function registerConfigCommands(program: Command): void {
  withApiOptions(
    program
      .command('apply')
      .description('apply a whole config file (YAML or JSON) to the control plane; applying it twice changes nothing')
      .requiredOption('-f, --file <file>', 'config file ("-" for stdin)')
      .option('--dry-run', 'validate and show what would change, without committing'),
  ).action((flags: ApiFlags & { file: string; dryRun?: boolean }) =>
    run(async () => {
      const { text, contentType } = readConfigFile(flags.file);
      const res = await client(flags).request<ApplyBody>('PUT', `/v1/config${flags.dryRun ? '?dryRun=true' : ''}`, { body: text, contentType });
      const b = res.body;
      if (!b.diff.changed) process.stdout.write(`no changes (revision ${b.revision})\n`);
      else {
        process.stdout.write(`${formatDiff(b.diff.items)}\n`);
        process.stdout.write(flags.dryRun ? `dry run: nothing committed (revision stays ${b.revision})\n` : `applied: revision ${b.revision}\n`);
      }
    }),
  );

  withApiOptions(
    program
      .command('diff')
      .description('show what applying a config file would change (exit 0: no changes, 1: changes, 2: error)')
      .requiredOption('-f, --file <file>', 'config file ("-" for stdin)')
      .option('--resources', 'also list the Envoy resources that would change'),
  ).action((flags: ApiFlags & { file: string; resources?: boolean }) =>
    run(async () => {
      const { text, contentType } = readConfigFile(flags.file);
      const res = await client(flags).request<ApplyBody>('PUT', '/v1/config?dryRun=true', { body: text, contentType });
      const b = res.body;
      if (!b.diff.changed) {
        process.stdout.write(`no changes (revision ${b.revision})\n`);
        return 0;
      }
      process.stdout.write(`${formatDiff(b.diff.items)}\n`);
      if (flags.resources) {
        for (const r of b.resourceChanges ?? []) process.stdout.write(`  ${r.op} ${r.typeUrl.slice(r.typeUrl.lastIndexOf('.') + 1)} ${r.name}\n`);
      }
      return 1;
    }, 2),
  );

  withApiOptions(
    program
      .command('get')
      .description('show listeners, clusters, drop-rules, resources, nodes, revisions or the whole config')
      .argument('<kind>', 'listeners | clusters | drop-rules | resources | nodes | revisions | config')
      .option('-o, --output <format>', 'table, json or yaml (config: yaml or json)', 'table'),
  ).action((kind: string, flags: ApiFlags & { output: Output }) =>
    run(async () => {
      if (!['table', 'json', 'yaml'].includes(flags.output)) throw new CliError(`unknown output "${flags.output}": use table, json or yaml`);
      const api = client(flags);
      const out = (value: unknown, rows: () => string) => {
        if (flags.output === 'json') process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
        else if (flags.output === 'yaml') process.stdout.write(stringify(value, { lineWidth: 0 }));
        else process.stdout.write(`${rows()}\n`);
      };
      switch (kind) {
        case 'config': {
          const res = await api.request<unknown>('GET', `/v1/config?format=${flags.output === 'json' ? 'json' : 'yaml'}`);
          process.stdout.write(typeof res.body === 'string' ? res.body : `${JSON.stringify(res.body, null, 2)}\n`);
          return;
        }
        case 'listeners': {
          type L = { name: string; address: string; port?: number; ports?: (number | string)[]; mode: string; interface?: string | number; routes?: unknown[]; cluster?: string };
          const { body } = await api.request<{ items: L[] }>('GET', '/v1/listeners');
          return out(body.items, () =>
            table(
              body.items.map((l) => ({ name: l.name, address: l.address, ports: (l.ports ?? [l.port]).join(','), mode: l.mode, interface: l.interface ?? '', routes: l.routes?.length ?? 0, cluster: l.cluster ?? '' })),
              ['name', 'address', 'ports', 'mode', 'interface', 'routes', 'cluster'],
            ),
          );
        }
        case 'clusters': {
          type C = { name: string; lbPolicy?: string; connectTimeout?: string; healthCheck?: unknown; endpoints?: { address: string; port: number; weight?: number }[] };
          const { body } = await api.request<{ items: C[] }>('GET', '/v1/clusters');
          return out(body.items, () =>
            table(
              body.items.map((c) => ({
                name: c.name,
                lb: c.lbPolicy ?? 'round_robin',
                timeout: c.connectTimeout ?? '5s',
                'health-check': c.healthCheck ? 'tcp' : '',
                endpoints: (c.endpoints ?? []).map((e) => `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port}${e.weight && e.weight !== 1 ? `*${e.weight}` : ''}`).join(' '),
              })),
              ['name', 'lb', 'timeout', 'health-check', 'endpoints'],
            ),
          );
        }
        case 'drop-rules': {
          type D = { name?: string; cidr: string; ports?: (number | string)[]; listeners?: string[] };
          const { body } = await api.request<{ items: D[] }>('GET', '/v1/drop-rules');
          return out(body.items, () =>
            table(
              body.items.map((d) => ({ name: d.name ?? d.cidr, cidr: d.cidr, ports: d.ports?.join(',') ?? 'all', listeners: d.listeners?.join(',') ?? 'all' })),
              ['name', 'cidr', 'ports', 'listeners'],
            ),
          );
        }
        case 'resources': {
          type R = Record<string, unknown> & { '@type': string };
          const { body } = await api.request<{ items: R[] }>('GET', '/v1/resources');
          return out(body.items, () =>
            table(
              body.items.map((r) => ({ type: r['@type'].slice(r['@type'].lastIndexOf('/') + 1), name: String(r['name'] ?? r['cluster_name'] ?? r['clusterName'] ?? ''), nodes: r['@nodeSelector'] ? JSON.stringify(r['@nodeSelector']) : 'all' })),
              ['type', 'name', 'nodes'],
            ),
          );
        }
        case 'nodes': {
          type T = { typeUrl: string; sent: { version: string } | null; acked: { version: string } | null; lastNack: { version: string; message: string } | null };
          type N = { node: { id: string; cluster: string } | null; protocol: string; service: string; peer: string; types: T[] };
          const { body } = await api.request<{ items: N[] }>('GET', '/v1/nodes');
          return out(body.items, () =>
            table(
              body.items.flatMap((n) =>
                (n.types.length ? n.types : [null]).map((t) => ({
                  node: n.node?.id ?? '(no request yet)',
                  cluster: n.node?.cluster ?? '',
                  stream: `${n.service}/${n.protocol}`,
                  type: t ? t.typeUrl.slice(t.typeUrl.lastIndexOf('.') + 1) : '',
                  sent: t?.sent?.version ?? '',
                  acked: t?.acked?.version ?? '',
                  'last-nack': t?.lastNack ? `${t.lastNack.version}: ${t.lastNack.message}` : '',
                })),
              ),
              ['node', 'cluster', 'stream', 'type', 'sent', 'acked', 'last-nack'],
            ),
          );
        }
        case 'revisions': {
          type V = { revision: number; createdAt: string; message: string; summary: Record<string, number> };
          const { body } = await api.request<{ current: number; items: V[] }>('GET', '/v1/revisions');
          return out(body, () =>
            table(
              body.items.map((r) => ({
                revision: `${r.revision}${r.revision === body.current ? '*' : ''}`,
                created: r.createdAt,
                change: r.message,
                contents: `${r.summary['listeners']}L ${r.summary['clusters']}C ${r.summary['dropRules']}D ${r.summary['resources']}R`,
              })),
              ['revision', 'created', 'change', 'contents'],
            ),
          );
        }
        default:
          throw new CliError(`unknown kind "${kind}": use listeners, clusters, drop-rules, resources, nodes, revisions or config`);
      }
    }),
  );
}
