// Every command line the deploy artifacts run (Kubernetes Deployment and DaemonSet, with and
// without the mTLS overlay, and each ebpf-xds service in docker-compose.yml) is parsed by the real
// `ebpf-xds` CLI: the subcommands that src/cli.ts registers, with their actions replaced so that
// nothing starts. Commander then rejects unknown options, missing values and values its parsers
// refuse, exactly as the container would at start.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { kustomizeBuild, REPO_ROOT, type KubeObject } from '../support/deploy-kubectl.js';

type Json = Record<string, any>;

/** The program as src/cli.ts wires it: the same register functions, in the same order. */
async function realProgram(): Promise<Command> {
  const cli = readFileSync(join(REPO_ROOT, 'src', 'cli.ts'), 'utf8');
  const imports = new Map<string, string>();
  for (const m of cli.matchAll(/^import\s*\{\s*([\w\s,]+)\}\s*from\s*'\.\/cli\/([\w-]+)\.js';/gm)) {
    for (const name of m[1]!.split(',').map((s) => s.trim()).filter(Boolean)) imports.set(name, m[2]!);
  }
  const list = /const registrations\b[^\n]*?\s=\s*\[([^\]]*)\]/.exec(cli);
  expect(list, 'src/cli.ts declares the registrations array').not.toBeNull();
  const program = new Command('ebpf-xds').exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  for (const name of list![1]!.split(',').map((s) => s.trim()).filter(Boolean)) {
    const file = imports.get(name);
    expect(file, `src/cli.ts imports ${name} from ./cli/`).toBeDefined();
    const mod = (await import(join(REPO_ROOT, 'src', 'cli', `${file}.ts`))) as Record<string, (p: Command) => void>;
    mod[name]!(program);
  }
  return program;
}

/**
 * Parses argv as `ebpf-xds <argv...>` and returns the subcommand's parsed options. Kubernetes
 * expands $(VAR) from the container's env before the process starts; we substitute sample values.
 */
async function parseAs(argv: string[], env: Record<string, string> = {}): Promise<Record<string, unknown> | undefined> {
  const program = await realProgram();
  const sub = program.commands.find((c) => c.name() === argv[0]);
  // Not there yet, and listed as such: the first test holds the list to account.
  if (!sub && PENDING_SUBCOMMANDS.includes(argv[0]!)) return undefined;
  if (!sub) throw new Error(`ebpf-xds has no subcommand "${argv[0]}" (has: ${program.commands.map((c) => c.name()).join(', ') || 'none'})`);
  let parsed: Record<string, unknown> | undefined;
  for (const c of [sub, ...sub.commands]) c.exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  sub.action(() => {
    parsed = sub.opts();
  });
  const expanded = argv.map((a) => a.replace(/\$\((\w+)\)/g, (_, v: string) => env[v] ?? `$(${v})`));
  try {
    await program.parseAsync(expanded, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) throw new Error(`ebpf-xds ${expanded.join(' ')}: ${e.message}`);
    throw e;
  }
  expect(parsed, `the ${argv[0]} action ran`).toBeDefined();
  return parsed!;
}

/**
 * Subcommands the artifacts run that the CLI does not have yet (none now). The first test fails
 * when this list is out of date either way: a missing subcommand not listed here, or a listed one
 * that now exists (then delete it here, and its command lines get parsed like the others).
 */
const PENDING_SUBCOMMANDS: string[] = [];

const compose = parse(readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as Json;
const K8S_ENV = {
  NODE_NAME: 'node-1',
  HOST_IP: '192.0.2.10',
  EBPF_XDS_CLUSTER: 'ebpf-xds',
  EBPF_XDS_CONTROL_PLANE: 'ebpf-xds-control-plane.ebpf-xds.svc:18000',
};

function containerArgs(objs: KubeObject[], kind: string, container: string): string[] {
  const w = objs.find((o) => o.kind === kind) as Json;
  return (w.spec.template.spec.containers as Json[]).find((c) => c.name === container)!.args as string[];
}

describe('deploy command lines against the real CLI', () => {
  const builds: Record<string, KubeObject[]> = {};
  beforeAll(async () => {
    builds.default = await kustomizeBuild(join(REPO_ROOT, 'deploy'));
    builds.mtls = await kustomizeBuild(join(REPO_ROOT, 'deploy', 'overlays', 'mtls'));
  }, 300_000);

  it('finds every subcommand the artifacts run in the CLI, apart from the pending ones', async () => {
    const registered = new Set((await realProgram()).commands.map((c) => c.name()));
    const used = new Set([
      ...[builds.default!, builds.mtls!].flatMap((objs) => [containerArgs(objs, 'Deployment', 'control-plane')[0]!, containerArgs(objs, 'DaemonSet', 'agent')[0]!]),
      ...['control-plane', 'agent', 'apply-demo'].map((svc) => (compose.services[svc].command as string[])[0]!),
    ]);
    expect([...used].filter((sub) => !registered.has(sub)).sort()).toEqual([...PENDING_SUBCOMMANDS].sort());
  });

  it('rejects an unknown option (the check can fail)', async () => {
    await expect(parseAs(['control-plane', '--xds-prot', '18000'])).rejects.toThrow(/unknown option '--xds-prot'/);
  });

  it.each(['default', 'mtls'])('Kubernetes %s: the control plane Deployment', async (build) => {
    const opts = await parseAs(containerArgs(builds[build]!, 'Deployment', 'control-plane'));
    expect(opts).toMatchObject({ xdsPort: 18000, apiPort: 8080, apiHost: '0.0.0.0', dataDir: '/var/lib/ebpf-xds' });
    if (build === 'mtls') expect(opts).toMatchObject({ xdsTlsCert: '/etc/ebpf-xds/tls/tls.crt', xdsClientCa: '/etc/ebpf-xds/tls/ca.crt' });
  });

  it.each(['default', 'mtls'])('Kubernetes %s: the agent DaemonSet', async (build) => {
    const opts = await parseAs(containerArgs(builds[build]!, 'DaemonSet', 'agent'), K8S_ENV);
    expect(opts).toMatchObject({
      controlPlane: 'ebpf-xds-control-plane.ebpf-xds.svc:18000',
      nodeId: 'node-1',
      cluster: 'ebpf-xds',
      proxy: 'embedded',
      metricsPort: 9901,
      metricsHost: '192.0.2.10',
      pinRoot: '/sys/fs/bpf/ebpf-xds',
    });
    if (build === 'mtls') expect(opts).toMatchObject({ tlsCert: '/etc/ebpf-xds/tls/tls.crt', tlsCa: '/etc/ebpf-xds/tls/ca.crt' });
  });

  it.each(['control-plane', 'agent', 'apply-demo'])('Compose: service %s', async (service) => {
    const argv = (compose.services[service].command as string[]).map((a) => a.replace(/\$\{(\w+):-([^}]*)\}/g, '$2'));
    await parseAs(argv);
  });
});
