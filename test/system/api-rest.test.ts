// The REST API over real HTTP on a real SQLite store (one control plane for the file): invalid
// input as a new user would send it gets a precise error and leaves the store byte-for-byte
// unchanged; CRUD, ETag/If-Match, idempotent apply, dry run, export that re-applies, revisions,
// auth, OpenAPI and metrics.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane } from '../../src/control-plane.js';
import { silentLogger } from '../../src/util/log.js';
import { writeTokenFile } from '../support/control-plane-process.js';

const dir = mkdtempSync(join(tmpdir(), 'exds-api-'));
let cp: ControlPlane;
let base: string;
let token: string;

beforeAll(async () => {
  const t = writeTokenFile(dir);
  token = t.token;
  cp = await ControlPlane.start({ dataDir: join(dir, 'data'), xdsPort: 0, xdsHost: '127.0.0.1', apiPort: 0, apiTokenFile: t.file, apiBodyLimit: 256 * 1024, logger: silentLogger() });
  base = cp.apiUrl;
});
afterAll(async () => {
  await cp?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Res {
  status: number;
  headers: Headers;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- responses are checked field by field
}

async function call(method: string, path: string, opts: { body?: unknown; type?: string; headers?: Record<string, string>; auth?: boolean } = {}): Promise<Res> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.auth !== false) headers['authorization'] = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['content-type'] = opts.type ?? 'application/json';
  }
  const r = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await r.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, text, json };
}

/** The store as a client sees it: revision and the exported document. */
async function storeState(): Promise<{ revision: string; yaml: string; json: string }> {
  const y = await call('GET', '/v1/config');
  const j = await call('GET', '/v1/config?format=json');
  return { revision: y.headers.get('etag') as string, yaml: y.text.replace(/^#.*\n/, ''), json: j.text };
}

const kafka = `
listeners:
  - name: kafka
    address: 0.0.0.0
    port: 4444
    mode: skb
    routes:
      - serverNames: [kafka1.server.test]
        cluster: kafka1
    cluster: kafka1
clusters:
  - name: kafka1
    connectTimeout: 250ms
    endpoints: [{ address: 10.10.1.3, port: 9092 }]
dropRules:
  - { cidr: 192.168.3.0/24, listeners: [kafka] }
`;

describe('REST API', () => {
  it('PUT /v1/config applies YAML once; the same document again changes nothing; GET re-applies to the same state', async () => {
    const first = await call('PUT', '/v1/config', { body: kafka, type: 'application/yaml' });
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ changed: true, dryRun: false, revision: 1 });
    expect(first.json.diff.items.map((i: { kind: string; name: string; op: string }) => `${i.op} ${i.kind} ${i.name}`)).toEqual([
      'added listener kafka',
      'added cluster kafka1',
      'added dropRule 192.168.3.0/24',
    ]);
    const again = await call('PUT', '/v1/config', { body: kafka, type: 'application/yaml' });
    expect(again.json).toMatchObject({ changed: false, revision: 1 });

    const exported = await call('GET', '/v1/config');
    expect(exported.headers.get('content-type')).toMatch(/application\/yaml/);
    expect(exported.headers.get('etag')).toBe('"r1"');
    const reapplied = await call('PUT', '/v1/config', { body: exported.text, type: 'application/yaml' });
    expect(reapplied.json).toMatchObject({ changed: false, revision: 1 });
    const asJson = await call('GET', '/v1/config', { headers: { accept: 'application/json' } });
    expect((await call('PUT', '/v1/config', { body: asJson.text })).json).toMatchObject({ changed: false, revision: 1 });
  });

  it('?dryRun=true returns the diff and the Envoy resources and commits nothing', async () => {
    const before = await storeState();
    const changed = kafka.replace('9092', '9093');
    const r = await call('PUT', '/v1/config?dryRun=true', { body: changed, type: 'application/yaml' });
    expect(r.status).toBe(200);
    expect(r.json.dryRun).toBe(true);
    expect(r.json.diff.items).toEqual([{ kind: 'cluster', name: 'kafka1', op: 'changed', fields: [{ path: 'endpoints[0].port', before: 9092, after: 9093 }] }]);
    expect(r.json.resourceChanges).toEqual([{ typeUrl: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment', name: 'kafka1', op: 'changed' }]);
    const listener = r.json.resources.find((x: { typeUrl: string }) => x.typeUrl.endsWith('Listener'));
    expect(listener.resource['@type']).toBe('type.googleapis.com/envoy.config.listener.v3.Listener');
    expect(listener.resource.filter_chains[0].filters[0].name).toBe('envoy.filters.network.rbac');
    expect(await storeState()).toEqual(before);
  });

  it('invalid input gets a precise error and leaves the store byte-for-byte unchanged', async () => {
    const before = await storeState();
    const big = JSON.stringify({ clusters: [{ name: 'big', endpoints: Array.from({ length: 20000 }, (_, i) => ({ address: `10.${(i >> 8) & 255}.${i & 255}.1`, port: 1000 + (i % 50000) })) }] });
    const cases: { what: string; method: string; path: string; body?: unknown; type?: string; headers?: Record<string, string>; auth?: boolean; status: number; problem?: [string, RegExp]; message?: RegExp }[] = [
      { what: 'wrong type', method: 'POST', path: '/v1/listeners', body: { name: 'x', address: '0.0.0.0', port: '80', mode: 'skb', cluster: 'kafka1' }, status: 400, problem: ['$.port', /expected an integer, got the string "80"/] },
      { what: 'unknown field', method: 'POST', path: '/v1/clusters', body: { name: 'c2', endpoint: [] }, status: 400, problem: ['$.endpoint', /unknown field "endpoint" \(allowed: .*endpoints/] },
      { what: 'dangling cluster', method: 'POST', path: '/v1/listeners', body: { name: 'x', address: '0.0.0.0', port: 81, mode: 'skb', cluster: 'nope' }, status: 400, problem: ['$.listeners[1].cluster', /unknown cluster "nope" \(defined: kafka1\)/] },
      { what: 'port clash', method: 'POST', path: '/v1/listeners', body: { name: 'x', address: '10.0.0.1', port: 4444, mode: 'skb', cluster: 'kafka1' }, status: 400, problem: ['$.listeners[1].port', /clashes with listener "kafka"/] },
      { what: 'xdp without interface', method: 'PUT', path: '/v1/listeners/kafka', body: { name: 'kafka', address: '0.0.0.0', port: 4444, mode: 'xdp', cluster: 'kafka1' }, status: 400, problem: ['$.listeners[0].interface', /needs an interface/] },
      { what: 'bad CIDR', method: 'POST', path: '/v1/drop-rules', body: { cidr: '10.0.0.1/8' }, status: 400, problem: ['$.dropRules[1].cidr', /did you mean 10.0.0.0\/8/] },
      { what: 'garbage YAML', method: 'PUT', path: '/v1/config', body: 'listeners: [\n  {name: a,,\n', type: 'application/yaml', status: 400, problem: ['$', /not valid YAML at line \d+, column \d+/] },
      { what: 'garbage JSON', method: 'PUT', path: '/v1/config', body: '{"listeners": [', status: 400, problem: ['$', /not valid JSON/] },
      { what: 'YAML that is not a config', method: 'PUT', path: '/v1/config', body: '- just\n- a list\n', type: 'application/yaml', status: 400, problem: ['$', /expected an object, got an array/] },
      { what: 'oversized body', method: 'PUT', path: '/v1/config', body: big, status: 413, message: /larger than the limit/ },
      { what: 'unsupported content type', method: 'PUT', path: '/v1/config', body: 'listeners: []', type: 'text/csv', status: 415 },
      { what: 'raw resource with unknown field', method: 'PUT', path: '/v1/resources', body: [{ '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', name: 'r', conect_timeout: '1s' }], status: 400, problem: ['$.resources[0].conect_timeout', /unknown field "conect_timeout"/] },
      { what: 'raw resource of unknown type', method: 'PUT', path: '/v1/resources', body: [{ '@type': 'type.googleapis.com/acme.Widget', name: 'w' }], status: 400, problem: ['$.resources[0]["@type"]', /unknown type "type.googleapis.com\/acme.Widget"/] },
      { what: 'raw resource shadowing a generated one', method: 'PUT', path: '/v1/resources/envoy.config.cluster.v3.Cluster/kafka1', body: { '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', name: 'kafka1' }, status: 400, problem: ['$.resources[0]', /also generated from \$.clusters\[0\]/] },
      { what: 'name differs from path', method: 'PUT', path: '/v1/clusters/kafka1', body: { name: 'other' }, status: 400, problem: ['$.name', /expected "kafka1"/] },
      { what: 'missing token', method: 'PUT', path: '/v1/clusters/c9', body: { name: 'c9' }, auth: false, status: 401, message: /missing the API token/ },
      { what: 'wrong token', method: 'DELETE', path: '/v1/listeners/kafka', headers: { authorization: 'Bearer nope' }, auth: false, status: 401, message: /wrong API token/ },
      { what: 'bad If-Match', method: 'PUT', path: '/v1/config', body: kafka, type: 'application/yaml', headers: { 'if-match': 'banana' }, status: 400, problem: ['$headers["if-match"]', /expected an ETag/] },
      { what: 'item ETag on the whole config', method: 'PUT', path: '/v1/config', body: kafka, type: 'application/yaml', headers: { 'if-match': '"i0123456789abcdef"' }, status: 400, problem: ['$headers["if-match"]', /expected a revision ETag/] },
      { what: 'stale If-Match', method: 'PUT', path: '/v1/config', body: 'listeners: []', type: 'application/yaml', headers: { 'if-match': '"r0"' }, status: 409, message: /at revision 1, not 0/ },
      { what: 'deleting a used cluster', method: 'DELETE', path: '/v1/clusters/kafka1', status: 409, problem: ['$.listeners[0].routes[0].cluster', /unknown cluster "kafka1"/] },
      { what: 'unknown listener', method: 'DELETE', path: '/v1/listeners/ghost', status: 404, message: /listener "ghost" does not exist/ },
      { what: 'unknown cluster endpoints', method: 'PUT', path: '/v1/clusters/ghost/endpoints', body: [], status: 404, message: /cluster "ghost" does not exist/ },
      { what: 'bad revision number', method: 'POST', path: '/v1/revisions/abc/rollback', status: 400, problem: ['$params.revision', /expected an integer/] },
      { what: 'unknown revision', method: 'POST', path: '/v1/revisions/999/rollback', status: 404, message: /revision 999 is not in the history/ },
      { what: 'duplicate create', method: 'POST', path: '/v1/clusters', body: { name: 'kafka1' }, status: 409, message: /already exists/ },
    ];
    for (const c of cases) {
      const r = await call(c.method, c.path, { ...(c.body !== undefined ? { body: c.body } : {}), ...(c.type ? { type: c.type } : {}), ...(c.headers ? { headers: c.headers } : {}), ...(c.auth === false ? { auth: false } : {}) });
      expect(r.status, `${c.what}: ${r.text.slice(0, 300)}`).toBe(c.status);
      expect(r.json, c.what).toMatchObject({ statusCode: c.status, code: expect.any(String), message: expect.any(String) });
      if (c.problem) {
        const [path, msg] = c.problem;
        const hit = (r.json.problems as { path: string; message: string }[] | undefined)?.find((p) => p.path === path && msg.test(p.message));
        expect(hit, `${c.what}: expected problem at ${path} ~ ${msg}; got ${JSON.stringify(r.json.problems)}`).toBeDefined();
      }
      if (c.message) expect(r.json.message, c.what).toMatch(c.message);
      expect(await storeState(), `${c.what} must not change the store`).toEqual(before);
    }
  });

  it('CRUD with item ETags: a stale If-Match is a 409, two writers of one item never silently overwrite', async () => {
    const created = await call('POST', '/v1/clusters', { body: { name: 'web', endpoints: [{ address: '10.0.0.5', port: 80 }] } });
    expect(created.status).toBe(201);
    const tag = created.headers.get('etag') as string;
    expect(tag).toMatch(/^"i[0-9a-f]{16}"$/);
    const got = await call('GET', '/v1/clusters/web');
    expect(got.headers.get('etag')).toBe(tag);

    const body = (port: number) => ({ name: 'web', endpoints: [{ address: '10.0.0.5', port }] });
    const [a, b] = await Promise.all([
      call('PUT', '/v1/clusters/web', { body: body(81), headers: { 'if-match': tag } }),
      call('PUT', '/v1/clusters/web', { body: body(82), headers: { 'if-match': tag } }),
    ]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const winner = a.status === 200 ? 81 : 82;
    expect((await call('GET', '/v1/clusters/web')).json.endpoints[0].port).toBe(winner);

    // A writer of another item is not affected by the race above.
    const other = await call('PUT', '/v1/clusters/api', { body: { name: 'api' }, headers: { 'if-match': '*' } });
    expect(other.status).toBe(409); // If-Match: * requires it to exist
    expect((await call('PUT', '/v1/clusters/api', { body: { name: 'api' } })).status).toBe(201);

    // Endpoints: add, list, remove (IPv6 in brackets).
    expect((await call('POST', '/v1/clusters/api/endpoints', { body: { address: 'fd00::7', port: 9000, weight: 5 } })).status).toBe(201);
    expect((await call('POST', '/v1/clusters/api/endpoints', { body: { address: 'fd00:0::7', port: 9000 } })).status).toBe(409);
    expect((await call('GET', '/v1/clusters/api/endpoints')).json.items).toEqual([{ address: 'fd00::7', port: 9000, weight: 5 }]);
    expect((await call('DELETE', `/v1/clusters/api/endpoints/${encodeURIComponent('[fd00::7]:9000')}`)).status).toBe(200);
    expect((await call('GET', '/v1/clusters/api/endpoints')).json.items).toEqual([]);

    // Drop rules are named by their CIDR when they have no name.
    const rule = await call('GET', `/v1/drop-rules/${encodeURIComponent('192.168.3.0/24')}`);
    expect(rule.json).toEqual({ cidr: '192.168.3.0/24', listeners: ['kafka'] });
    expect((await call('DELETE', '/v1/clusters/web')).status).toBe(200);
    expect((await call('DELETE', '/v1/clusters/api')).status).toBe(200);
  });

  it('raw resources: put one, read it, list, delete', async () => {
    const route = { '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', name: 'r1', virtual_hosts: [{ name: 'vh', domains: ['*'] }], '@nodeSelector': { clusters: ['edge'] } };
    expect((await call('PUT', '/v1/resources/envoy.config.route.v3.RouteConfiguration/r1', { body: route })).status).toBe(201);
    expect((await call('PUT', '/v1/resources/envoy.config.route.v3.RouteConfiguration/r1', { body: route })).json.changed).toBe(false);
    expect((await call('GET', '/v1/resources/envoy.config.route.v3.RouteConfiguration/r1')).json).toEqual(route);
    expect((await call('GET', '/v1/resources')).json.items).toHaveLength(1);
    expect((await call('DELETE', '/v1/resources/envoy.config.route.v3.RouteConfiguration/r1')).status).toBe(200);
    expect((await call('GET', '/v1/resources/envoy.config.route.v3.RouteConfiguration/r1')).status).toBe(404);
  });

  it('revisions list every change; rollback commits the old config as a new revision', async () => {
    const list = await call('GET', '/v1/revisions');
    const current = list.json.current as number;
    expect(list.json.items[0].revision).toBe(current);
    expect(list.json.items.at(-1)).toMatchObject({ revision: 1, message: 'PUT /v1/config', summary: { listeners: 1, clusters: 1, dropRules: 1, resources: 0 } });
    // Revision 2 is the one that created cluster "web", deleted since.
    const two = await call('GET', '/v1/revisions/2');
    expect(two.json.config.clusters.map((c: { name: string }) => c.name)).toEqual(['kafka1', 'web']);
    const rb = await call('POST', '/v1/revisions/2/rollback', { headers: { 'if-match': `"r${current}"` } });
    expect(rb.status).toBe(200);
    expect(rb.json).toMatchObject({ revision: current + 1, changed: true, diff: { items: [{ kind: 'cluster', name: 'web', op: 'added' }] } });
    expect((await call('GET', '/v1/config?format=json')).json).toEqual(two.json.config);
    expect((await call('GET', '/v1/revisions')).json.items[0]).toMatchObject({ revision: current + 1, message: 'rollback to 2' });
    expect((await call('POST', '/v1/revisions/1/rollback', { headers: { 'if-match': `"r${current}"` } })).status).toBe(409);
  });

  it('open endpoints: /healthz, /metrics and the OpenAPI document; /v1 needs the token', async () => {
    expect((await call('GET', '/healthz', { auth: false })).json).toMatchObject({ status: 'ok' });
    const metrics = await call('GET', '/metrics', { auth: false });
    expect(metrics.status).toBe(200);
    for (const name of ['ebpf_xds_config_revision', 'ebpf_xds_api_requests_total', 'ebpf_xds_snapshot_publish_seconds', 'xds_connected_streams', 'xds_nacks_total', 'xds_push_to_ack_seconds', 'xds_responses_total']) {
      expect(metrics.text, name).toContain(name);
    }
    const revision = (await call('GET', '/v1/revisions')).json.current;
    expect(metrics.text).toMatch(new RegExp(`ebpf_xds_config_revision ${revision}`));
    expect((await call('GET', '/v1/nodes', { auth: false })).status).toBe(401);
    const docs = await call('GET', '/docs/json', { auth: false });
    expect(docs.status).toBe(200);
    const paths = Object.keys(docs.json.paths);
    for (const p of ['/v1/listeners', '/v1/listeners/{name}', '/v1/clusters/{name}/endpoints', '/v1/drop-rules', '/v1/config', '/v1/resources', '/v1/revisions/{revision}/rollback', '/v1/nodes']) expect(paths).toContain(p);
    const listenerBody = docs.json.paths['/v1/listeners'].post.requestBody.content['application/json'].schema;
    expect(listenerBody.properties.mode.enum).toEqual(['xdp', 'skb', 'userspace']);
    expect((await call('GET', '/docs', { auth: false })).status).toBe(200);
  });
});
