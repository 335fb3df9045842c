// The Kubernetes manifests in deploy/: built with a real kustomize (kubectl's, see
// test/support/deploy-kubectl.ts), every emitted object validated against the Kubernetes API
// schemas (kubernetes-models, plus an unknown-field check), and the properties the manifests
// promise checked on the built objects: what an apply would create, not the source files.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { schemaProblems, unknownFieldProblems } from '../support/deploy-k8s-schema.js';
import { KUBECTL_VERSION, kubectlPath, kustomizeBuild, REPO_ROOT, type KubeObject } from '../support/deploy-kubectl.js';

type Json = Record<string, any>;

const DEPLOY = join(REPO_ROOT, 'deploy');
const BUILDS = { default: DEPLOY, mtls: join(DEPLOY, 'overlays', 'mtls') } as const;
const NAMESPACED = new Set(['ServiceAccount', 'Role', 'RoleBinding', 'ConfigMap', 'Secret', 'Service', 'PersistentVolumeClaim', 'Deployment', 'DaemonSet', 'NetworkPolicy']);

const built: Record<keyof typeof BUILDS, KubeObject[]> = { default: [], mtls: [] };

function one(objs: KubeObject[], kind: string, namePrefix = ''): Json {
  const found = objs.filter((o) => o.kind === kind && o.metadata.name.startsWith(namePrefix));
  expect(found.map((o) => o.metadata.name), `${kind} ${namePrefix}*`).toHaveLength(1);
  return found[0] as Json;
}

function container(workload: Json, name: string): Json {
  const c = (workload.spec.template.spec.containers as Json[]).find((x) => x.name === name);
  expect(c, `container ${name}`).toBeDefined();
  return c!;
}

/** The value after `--flag` in an argument list. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function ipv4CidrValid(cidr: string): boolean {
  const m = /^(.+)\/(\d{1,2})$/.exec(cidr);
  return !!m && isIP(m[1]!) === 4 && Number(m[2]) <= 32;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

beforeAll(async () => {
  for (const key of Object.keys(BUILDS) as Array<keyof typeof BUILDS>) built[key] = await kustomizeBuild(BUILDS[key]);
}, 300_000);

describe('kustomize build', () => {
  it(`uses the real kustomize from kubectl ${KUBECTL_VERSION}`, async () => {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(await kubectlPath(), ['version', '--client'], { encoding: 'utf8' });
    expect(out).toContain(`Client Version: ${KUBECTL_VERSION}`);
    expect(out).toMatch(/Kustomize Version: v5\./);
  });

  it.each(Object.keys(BUILDS))('%s: emits every object once, all in the ebpf-xds namespace', (key) => {
    const objs = built[key as keyof typeof BUILDS];
    const kinds = objs.map((o) => o.kind).sort();
    expect(kinds).toEqual(
      ['ConfigMap', 'DaemonSet', 'Deployment', 'Namespace', 'NetworkPolicy', 'PersistentVolumeClaim', 'Role', 'Service', 'ServiceAccount', 'ServiceAccount'].sort(),
    );
    const ids = objs.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
    const ns = one(objs, 'Namespace').metadata.name;
    expect(ns).toBe('ebpf-xds');
    for (const o of objs) {
      if (NAMESPACED.has(o.kind)) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(ns);
      else expect(o.kind).toBe('Namespace');
      expect(o.metadata.labels?.['app.kubernetes.io/part-of'], `${o.kind}/${o.metadata.name}`).toBe('ebpf-xds');
    }
  });

  it('builds every manifest under deploy/ into some kustomization (no forgotten files)', () => {
    const used = new Set<string>();
    const visit = (dir: string) => {
      const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Json;
      used.add(join(dir, 'kustomization.yaml'));
      for (const r of [...(k.resources ?? []), ...(k.components ?? [])] as string[]) {
        const p = join(dir, r);
        if (statSync(p).isDirectory()) visit(p);
        else used.add(p);
      }
      for (const patch of (k.patches ?? []) as Json[]) if (patch.path) used.add(join(dir, patch.path));
    };
    visit(BUILDS.default);
    visit(BUILDS.mtls);
    const manifests = filesUnder(DEPLOY).filter((f) => /\.ya?ml$/.test(f) && !relative(DEPLOY, f).startsWith('compose/'));
    expect(manifests.filter((f) => !used.has(f)).map((f) => relative(REPO_ROOT, f))).toEqual([]);
  });
});

describe('Kubernetes API schemas', () => {
  it.each(Object.keys(BUILDS))('%s: every object passes the schema of its kind', async (key) => {
    expect(await schemaProblems(built[key as keyof typeof BUILDS])).toEqual([]);
  });

  it.each(Object.keys(BUILDS))('%s: no object has a field the API server would reject as unknown', (key) => {
    expect(unknownFieldProblems(built[key as keyof typeof BUILDS])).toEqual([]);
  });

  it('catches a misspelt field, a wrong type and a bad quantity (the validators can fail)', async () => {
    const objs = structuredClone(built.default);
    const ds = one(objs, 'DaemonSet');
    const agent = container(ds, 'agent');
    agent.volumeMounts[0].mountPropogation = 'Bidirectional';
    agent.resources.requests.cpu = 'lots';
    ds.spec.template.spec.hostNetwork = 'yes';
    const schema = (await schemaProblems(objs)).join('\n');
    expect(schema).toContain('requests/cpu must match format "quantity"');
    expect(schema).toContain('hostNetwork must be boolean');
    const unknown = unknownFieldProblems(objs).join('\n');
    expect(unknown).toContain('DaemonSet/ebpf-xds-agent: $.spec.template.spec.containers[0].volumeMounts[0].mountPropogation');
  });
});

describe('what the manifests promise', () => {
  let objs: KubeObject[];
  let settings: Json;
  beforeAll(() => {
    objs = built.default;
    settings = one(objs, 'ConfigMap', 'ebpf-xds-config-').data;
  });

  it('wires every ConfigMap, Secret, volume, port and env reference to something that exists', () => {
    const configMaps = new Map(objs.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, (o as Json).data]));
    for (const w of [one(objs, 'Deployment'), one(objs, 'DaemonSet')]) {
      const spec = w.spec.template.spec;
      const volumes = new Set((spec.volumes as Json[]).map((v) => v.name));
      expect(objs.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === spec.serviceAccountName)).toBe(true);
      for (const c of [...(spec.initContainers ?? []), ...spec.containers] as Json[]) {
        for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `${c.name} mounts ${m.name}`).toBe(true);
        const env = new Set<string>();
        for (const e of (c.env ?? []) as Json[]) {
          env.add(e.name);
          const ref = e.valueFrom?.configMapKeyRef;
          if (ref) expect(configMaps.get(ref.name)?.[ref.key], `${c.name} env ${e.name}`).toBeDefined();
        }
        // Kubernetes leaves an undefined $(VAR) in args as literal text: catch it here.
        for (const a of [...(c.command ?? []), ...(c.args ?? [])] as string[]) {
          for (const m of a.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) expect(env.has(m[1]!), `${c.name} uses $(${m[1]})`).toBe(true);
        }
        const ports = new Set(((c.ports ?? []) as Json[]).map((p) => p.name));
        for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
          if (c[probe]) expect(ports.has(c[probe].httpGet.port), `${c.name} ${probe}`).toBe(true);
        }
      }
      for (const v of spec.volumes as Json[]) {
        if (v.persistentVolumeClaim) expect(objs.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === v.persistentVolumeClaim.claimName)).toBe(true);
      }
    }
  });

  it('runs one control plane with Recreate, on its PVC, non-root, with probes and requests', () => {
    const d = one(objs, 'Deployment');
    expect(d.spec.replicas).toBe(1);
    expect(d.spec.strategy.type).toBe('Recreate');
    const pod = d.spec.template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    const c = container(d, 'control-plane');
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    const args = c.args as string[];
    expect(args[0]).toBe('control-plane');
    const dataDir = flag(args, '--data-dir');
    const dataMount = (c.volumeMounts as Json[]).find((m) => m.mountPath === dataDir);
    expect(pod.volumes.find((v: Json) => v.name === dataMount?.name)?.persistentVolumeClaim?.claimName).toBe('ebpf-xds-data');
    expect(one(objs, 'PersistentVolumeClaim').spec.accessModes).toEqual(['ReadWriteOnce']);
    const ports = Object.fromEntries((c.ports as Json[]).map((p) => [p.name, p.containerPort]));
    expect(flag(args, '--xds-port')).toBe(String(ports.xds));
    expect(flag(args, '--api-port')).toBe(String(ports.api));
    expect(flag(args, '--api-host')).toBe('0.0.0.0');
    const tokenFile = flag(args, '--api-token-file')!;
    const tokenMount = (c.volumeMounts as Json[]).find((m) => tokenFile.startsWith(`${m.mountPath}/`));
    expect(pod.volumes.find((v: Json) => v.name === tokenMount?.name)?.secret?.secretName).toBe('ebpf-xds-api-token');
    for (const p of ['startupProbe', 'livenessProbe', 'readinessProbe']) expect(c[p].httpGet.path).toBe('/healthz');
    expect(c.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
  });

  it('exposes xDS and the API through the Service, to the control plane pods', () => {
    const svc = one(objs, 'Service');
    const d = one(objs, 'Deployment');
    expect(d.spec.template.metadata.labels).toMatchObject(svc.spec.selector);
    expect(d.spec.selector.matchLabels).toEqual(svc.spec.selector);
    const named = new Set((container(d, 'control-plane').ports as Json[]).map((p) => p.name));
    expect((svc.spec.ports as Json[]).map((p) => [p.name, p.port])).toEqual([
      ['xds', 18000],
      ['api', 8080],
    ]);
    for (const p of svc.spec.ports as Json[]) expect(named.has(p.targetPort), p.name).toBe(true);
    // Agents dial the address in the ConfigMap: it must be this Service, in this namespace.
    const [host, port] = (settings['control-plane'] as string).split(':');
    expect(host).toBe(`${svc.metadata.name}.${svc.metadata.namespace}.svc`);
    expect(Number(port)).toBe(18000);
  });

  it('runs the agent on every node in the host network, with its node name from the downward API', () => {
    const ds = one(objs, 'DaemonSet');
    const pod = ds.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(ds.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    const c = container(ds, 'agent');
    const args = c.args as string[];
    expect(args[0]).toBe('agent');
    expect(flag(args, '--node-id')).toBe('$(NODE_NAME)');
    expect((c.env as Json[]).find((e) => e.name === 'NODE_NAME')?.valueFrom).toEqual({ fieldRef: { fieldPath: 'spec.nodeName' } });
    expect(flag(args, '--cluster')).toBe('$(EBPF_XDS_CLUSTER)');
    expect(settings.cluster).toMatch(/\S/);
    expect(flag(args, '--control-plane')).toBe('$(EBPF_XDS_CONTROL_PLANE)');
    expect(flag(args, '--proxy')).toBe('embedded');
    const metricsPort = (c.ports as Json[]).find((p) => p.name === 'metrics')?.containerPort;
    expect(flag(args, '--metrics-port')).toBe(String(metricsPort));
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
  });

  it('gives the agent four capabilities, not privileged; only the bpffs init container is privileged', () => {
    const ds = one(objs, 'DaemonSet');
    const pod = ds.spec.template.spec;
    const c = container(ds, 'agent');
    expect(c.securityContext.privileged).toBe(false);
    expect(c.securityContext.capabilities).toEqual({ add: ['BPF', 'NET_ADMIN', 'SYS_ADMIN', 'PERFMON'], drop: ['ALL'] });
    expect(c.securityContext.runAsUser).toBe(0);
    const inits = pod.initContainers as Json[];
    expect(inits.map((i) => i.name)).toEqual(['mount-bpffs']);
    expect(inits[0]!.securityContext.privileged).toBe(true);
    expect(inits[0]!.command.join(' ')).toContain('mount -t bpf bpf /sys/fs/bpf');
  });

  it('mounts the node bpffs (Bidirectional where it may be mounted, HostToContainer in the agent) and BTF read-only', () => {
    const ds = one(objs, 'DaemonSet');
    const pod = ds.spec.template.spec;
    const hostPath = (name: string) => (pod.volumes as Json[]).find((v) => v.name === name)?.hostPath;
    const mountOf = (c: Json, path: string) => (c.volumeMounts as Json[]).find((m) => m.mountPath === path);
    const init = (pod.initContainers as Json[])[0]!;
    const agent = container(ds, 'agent');

    const initBpf = mountOf(init, '/sys/fs/bpf');
    expect(initBpf?.mountPropagation).toBe('Bidirectional');
    expect(hostPath(initBpf!.name)).toEqual({ path: '/sys/fs/bpf', type: 'Directory' });
    const agentBpf = mountOf(agent, '/sys/fs/bpf');
    expect(agentBpf?.name).toBe(initBpf!.name);
    expect(agentBpf?.mountPropagation).toBe('HostToContainer');
    expect(agentBpf?.readOnly).toBeUndefined();

    const btf = mountOf(agent, '/sys/kernel/btf');
    expect(btf?.readOnly).toBe(true);
    expect(hostPath(btf!.name)).toEqual({ path: '/sys/kernel/btf', type: 'Directory' });
    // Read-only root: writable scratch only where mounted.
    expect(agent.securityContext.readOnlyRootFilesystem).toBe(true);
  });

  it('gives neither component API access: no bindings, no mounted tokens, one operator Role', () => {
    expect(objs.filter((o) => /Binding$|^ClusterRole$/.test(o.kind))).toEqual([]);
    for (const sa of objs.filter((o) => o.kind === 'ServiceAccount')) expect((sa as Json).automountServiceAccountToken).toBe(false);
    const role = one(objs, 'Role');
    const secretRule = (role.rules as Json[]).find((r) => r.resources.includes('secrets'));
    expect(secretRule).toEqual({ apiGroups: [''], resources: ['secrets'], resourceNames: ['ebpf-xds-api-token'], verbs: ['get'] });
    for (const r of role.rules as Json[]) expect(r.verbs.filter((v: string) => !['get', 'list', 'watch', 'create'].includes(v))).toEqual([]);
  });

  it('admits to xDS only agents, opted-in Envoys and the node network; to the API only this namespace and API clients', () => {
    const np = one(objs, 'NetworkPolicy');
    const d = one(objs, 'Deployment');
    const ds = one(objs, 'DaemonSet');
    expect(np.spec.podSelector.matchLabels).toEqual(d.spec.selector.matchLabels);
    expect(np.spec.policyTypes).toEqual(['Ingress']);
    const rules = np.spec.ingress as Json[];
    expect(rules.map((r) => r.ports)).toEqual([[{ port: 'xds', protocol: 'TCP' }], [{ port: 'api', protocol: 'TCP' }]]);

    const [agents, envoys, nodes] = rules[0]!.from as Json[];
    expect(rules[0]!.from).toHaveLength(3);
    expect(ds.spec.template.metadata.labels).toMatchObject(agents!.podSelector.matchLabels);
    expect(agents!.namespaceSelector).toBeUndefined(); // same namespace only
    expect(envoys).toEqual({ namespaceSelector: {}, podSelector: { matchLabels: { 'ebpf-xds.io/xds-client': 'true' } } });
    // kustomize copied the node network from the settings ConfigMap.
    expect(nodes!.ipBlock.cidr).toBe(settings['node-cidr']);
    expect(ipv4CidrValid(nodes!.ipBlock.cidr)).toBe(true);

    expect(rules[1]!.from).toEqual([
      { podSelector: {} },
      { namespaceSelector: {}, podSelector: { matchLabels: { 'ebpf-xds.io/api-client': 'true' } } },
    ]);
  });
});

describe('mTLS overlay', () => {
  it('serves xDS over TLS with client certificates, and agents present theirs, from mounted Secrets', () => {
    const objs = built.mtls;
    const check = (w: Json, name: string, flags: string[], secret: string) => {
      const c = container(w, name);
      const mounts = c.volumeMounts as Json[];
      for (const f of flags) {
        const file = flag(c.args, f);
        expect(file, f).toMatch(/^\/etc\/ebpf-xds\/tls\/(tls\.crt|tls\.key|ca\.crt)$/);
        const m = mounts.find((x) => file!.startsWith(`${x.mountPath}/`));
        expect(m?.readOnly).toBe(true);
        expect((w.spec.template.spec.volumes as Json[]).find((v) => v.name === m?.name)?.secret?.secretName).toBe(secret);
      }
    };
    check(one(objs, 'Deployment'), 'control-plane', ['--xds-tls-cert', '--xds-tls-key', '--xds-client-ca'], 'ebpf-xds-control-plane-tls');
    check(one(objs, 'DaemonSet'), 'agent', ['--tls-cert', '--tls-key', '--tls-ca'], 'ebpf-xds-agent-tls');
    // Everything else is the default build.
    const strip = (o: KubeObject) => (['Deployment', 'DaemonSet'].includes(o.kind) ? o.kind : JSON.stringify(o));
    expect(objs.map(strip)).toEqual(built.default.map(strip));
  });
});
