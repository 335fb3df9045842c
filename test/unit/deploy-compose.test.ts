// docker-compose.yml: validated against the Compose specification's JSON schema (the copy dclint
// ships, current with the spec), linted with dclint, and checked for what it promises: the
// agent's privileges and mounts, ports and addresses that agree across services, and a demo
// config that the config model accepts and that points at the demo backends.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { DCLinter } from 'dclint';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfigText } from '../../src/model/config-text.js';
import { validateConfig } from '../../src/model/validate.js';
import { REPO_ROOT } from '../support/deploy-kubectl.js';

type Json = Record<string, any>;

const require = createRequire(import.meta.url);
const COMPOSE_FILE = join(REPO_ROOT, 'docker-compose.yml');
const source = readFileSync(COMPOSE_FILE, 'utf8');
// Compose resolves YAML merge keys (<<) before validating, so do we.
const compose = parse(source, { merge: true }) as Json;
const services = compose.services as Record<string, Json>;

function composeSchemaErrors(doc: unknown): ErrorObject[] {
  const schemaPath = join(require.resolve('dclint/package.json'), '..', 'schemas', 'compose.schema.json');
  const { $schema, ...schema } = JSON.parse(readFileSync(schemaPath, 'utf8')) as Json;
  expect(schema.title).toBe('Compose Specification');
  // Ajv's default dialect is draft-07 but it knows it by the http://...# spelling only.
  expect($schema).toMatch(/json-schema\.org\/draft-07\/schema/);
  const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true });
  const validate = ajv.compile(schema);
  return validate(doc) ? [] : (validate.errors ?? []);
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function bind(service: Json, target: string): Json | undefined {
  return (service.volumes as Json[] | undefined)?.find((v) => v.target === target);
}

/** host port -> container port, for `[ip:]host:container` entries. */
function published(service: Json): Map<number, { ip: string; container: number }> {
  const out = new Map<number, { ip: string; container: number }>();
  for (const p of (service.ports ?? []) as string[]) {
    const m = /^(?:(\d+\.\d+\.\d+\.\d+):)?(\d+):(\d+)$/.exec(p);
    expect(m, `port ${p}`).not.toBeNull();
    out.set(Number(m![2]), { ip: m![1] ?? '0.0.0.0', container: Number(m![3]) });
  }
  return out;
}

describe('docker-compose.yml', () => {
  it('conforms to the Compose specification schema', () => {
    expect(composeSchemaErrors(compose).map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`)).toEqual([]);
  });

  it('is rejected by the schema when a key is misspelt (the check can fail)', () => {
    const bad = structuredClone(compose);
    bad.services.agent.privilegd = true;
    bad.services.agent.volumes[0].bind.propagaton = 'rshared';
    const errors = composeSchemaErrors(bad).filter((e) => e.keyword === 'additionalProperties');
    expect(errors.map((e) => `${e.instancePath}:${e.params.additionalProperty}`)).toEqual(
      expect.arrayContaining(['/services/agent:privilegd', '/services/agent/volumes/0/bind:propagaton']),
    );
  });

  it('has no dclint errors and no warnings beyond key-order style', () => {
    const linter = new DCLinter({ rules: {}, quiet: true, debug: false, exclude: [] });
    const [result] = linter.lintFiles([COMPOSE_FILE], false);
    expect(result!.errorCount).toBe(0);
    const messages = result!.messages as Array<{ category: string; line: number; rule: string; message: string }>;
    const notStyle = messages.filter((m) => m.category !== 'style').map((m) => `${m.line}: ${m.rule}: ${m.message}`);
    expect(notStyle).toEqual([]);
  });

  it('runs the control plane, the agent, Envoy, the demo config and two backends', () => {
    expect(Object.keys(services).sort()).toEqual(['agent', 'apply-demo', 'backend-1', 'backend-2', 'control-plane', 'envoy']);
    for (const [name, s] of Object.entries(services)) {
      expect(s.image, name).toMatch(/:[\w.-]+$/); // pinned tag
      expect(s.image, name).not.toMatch(/:latest$/);
    }
    // The ebpf-xds services all build the one image from the repository's Dockerfile.
    for (const name of ['control-plane', 'agent', 'apply-demo']) {
      expect(services[name]!.build, name).toEqual({ context: '.', dockerfile: 'Dockerfile' });
      expect(services[name]!.image).toBe(services['control-plane']!.image);
    }
    expect(existsSync(join(REPO_ROOT, 'Dockerfile'))).toBe(true);
  });

  it('runs the agent privileged in the host network with the host bpffs (rshared) and BTF (read-only)', () => {
    const agent = services.agent!;
    expect(agent.privileged).toBe(true);
    expect(agent.network_mode).toBe('host');
    expect(agent.user).toBe('0');
    expect(bind(agent, '/sys/fs/bpf')).toEqual({ type: 'bind', source: '/sys/fs/bpf', target: '/sys/fs/bpf', bind: { propagation: 'rshared' } });
    expect(bind(agent, '/sys/kernel/btf')).toEqual({ type: 'bind', source: '/sys/kernel/btf', target: '/sys/kernel/btf', read_only: true });
    const args = agent.command as string[];
    expect(args[0]).toBe('agent');
    expect(flag(args, '--proxy')).toBe('embedded');
    expect(flag(args, '--node-id')).toMatch(/\S/);
    expect(agent.healthcheck.test.join(' ')).toContain(`127.0.0.1:${flag(args, '--metrics-port')}/healthz`);
    expect(agent.depends_on).toEqual({ 'control-plane': { condition: 'service_healthy' } });
  });

  it('publishes the control plane on loopback only, where the host-network agent dials it', () => {
    const cp = services['control-plane']!;
    const args = cp.command as string[];
    expect(args[0]).toBe('control-plane');
    const ports = published(cp);
    for (const [, p] of ports) expect(p.ip).toBe('127.0.0.1');
    const [host, port] = flag(services.agent!.command, '--control-plane')!.split(':');
    expect(host).toBe('127.0.0.1');
    expect(ports.get(Number(port))?.container).toBe(Number(flag(args, '--xds-port')));
    expect([...ports.values()].map((p) => p.container)).toContain(Number(flag(args, '--api-port')));
    expect(cp.healthcheck.test.join(' ')).toContain(`127.0.0.1:${flag(args, '--api-port')}/healthz`);
    // The store lives in a named volume; the token comes from a declared secret.
    const dataDir = flag(args, '--data-dir');
    expect(bind(cp, dataDir!)).toMatchObject({ type: 'volume', source: 'store' });
    expect(Object.keys(compose.volumes)).toContain('store');
    expect(flag(args, '--api-token-file')).toBe('/run/secrets/api_token');
    expect(cp.secrets).toEqual(['api_token']);
    expect(compose.secrets.api_token).toEqual({ environment: 'EBPF_XDS_TOKEN' });
    expect(cp.read_only).toBe(true);
    expect(cp.cap_drop).toEqual(['ALL']);
  });

  it('mounts only files that exist in the repository', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const v of (s.volumes ?? []) as Json[]) {
        if (v.type === 'bind' && v.source.startsWith('./')) expect(existsSync(join(REPO_ROOT, v.source)), `${name}: ${v.source}`).toBe(true);
      }
    }
  });

  it('starts Envoy with the bootstrap it mounts, in the node cluster the demo config gives it', () => {
    const envoy = services.envoy!;
    const args = envoy.command as string[];
    const config = flag(args, '-c')!;
    expect(bind(envoy, config)?.source).toBe('./envoy/bootstrap.yaml');
    expect(bind(envoy, config)?.read_only).toBe(true);
    expect(envoy.image).toMatch(/^envoyproxy\/envoy:v\d+\.\d+\.\d+$/);
    const demo = parse(readFileSync(join(REPO_ROOT, 'deploy/compose/demo-config.yaml'), 'utf8')) as Json;
    const byCluster = (cluster: string) => (demo.listeners as Json[]).filter((l) => l.nodeSelector?.clusters?.includes(cluster)).map((l) => l.mode);
    // A stock Envoy runs only userspace listeners; the agent gets the ones it splices.
    expect(byCluster(flag(args, '--service-cluster')!)).toEqual(['userspace']);
    expect(byCluster(flag(services.agent!.command, '--cluster')!)).toEqual(['skb']);
  });

  it('applies a demo config that the config model accepts, aimed at the backends', () => {
    const apply = services['apply-demo']!;
    const args = apply.command as string[];
    expect(args[0]).toBe('apply');
    const file = flag(args, '-f')!;
    const mounted = bind(apply, file)!;
    expect(mounted.source).toBe('./deploy/compose/demo-config.yaml');
    expect(flag(args, '--api')).toBe(`http://control-plane:${flag(services['control-plane']!.command, '--api-port')}`);
    expect(flag(args, '--token-file')).toBe('/run/secrets/api_token');
    expect(apply.secrets).toEqual(['api_token']);

    const parsed = parseConfigText(readFileSync(join(REPO_ROOT, mounted.source), 'utf8'));
    expect(parsed.ok).toBe(true);
    const valid = validateConfig(parsed.ok ? parsed.value : undefined);
    expect(valid.ok ? [] : valid.problems).toEqual([]);

    const subnet = compose.networks.demo.ipam.config[0].subnet as string;
    expect(subnet).toBe('172.28.0.0/24');
    const backends = ['backend-1', 'backend-2'].map((name) => {
      const s = services[name]!;
      const port = /-listen=:(\d+)/.exec((s.command as string[]).join(' '))![1];
      return `${s.networks.demo.ipv4_address}:${port}`;
    });
    const endpoints = (parsed.ok ? (parsed.value as Json) : {}).clusters.flatMap((c: Json) => c.endpoints.map((e: Json) => `${e.address}:${e.port}`));
    expect(endpoints.sort()).toEqual(backends.sort());
    for (const s of Object.values(services)) {
      const ip = s.networks?.demo?.ipv4_address as string | undefined;
      if (ip) expect(ip.startsWith('172.28.0.'), ip).toBe(true);
    }
  });
});
