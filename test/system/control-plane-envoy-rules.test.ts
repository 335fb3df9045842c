// The REST API refuses resources Envoy would refuse: raw resources (PUT /v1/resources, one by one,
// and the `resources:` of PUT /v1/config) are checked against the protoc-gen-validate rules in
// Envoy's protos after the strict decode, and a violation is a 400 naming the path, with nothing
// stored. A valid request right after is accepted.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClientError } from '../../src/api/client.js';
import { killAllControlPlanes, startControlPlane, writeTokenFile, type ControlPlaneProcess } from '../support/control-plane-process.js';

const dir = mkdtempSync(join(tmpdir(), 'exds-cp-rules-'));
let cp: ControlPlaneProcess;

beforeAll(async () => {
  cp = await startControlPlane({ dataDir: join(dir, 'data'), tokenFile: writeTokenFile(dir) });
});
afterAll(async () => {
  await killAllControlPlanes();
  rmSync(dir, { recursive: true, force: true });
});

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const apiListener = (statPrefix: string | undefined) => ({
  '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
  name: 'svc.test',
  api_listener: {
    api_listener: {
      '@type': HCM,
      ...(statPrefix !== undefined ? { stat_prefix: statPrefix } : {}),
      rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: 'svc-route' },
      http_filters: [{ name: 'router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
    },
  },
});
const badCla = {
  '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  cluster_name: 'raw-cla',
  endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 70000 } } } }] }],
};

async function refused(method: string, path: string, body: unknown, contentType?: string): Promise<ApiClientError> {
  try {
    await cp.api.request(method, path, { body, ...(contentType ? { contentType } : {}) });
  } catch (err) {
    if (err instanceof ApiClientError) return err;
    throw err;
  }
  throw new Error(`${method} ${path} was accepted`);
}
const revision = async () => (await cp.api.request<{ current: number }>('GET', '/v1/revisions')).body.current;

describe("Envoy's protoc-gen-validate rules at the API", () => {
  it('PUT /v1/resources: every violation with its path, 400, nothing stored', async () => {
    const before = await revision();
    const err = await refused('PUT', '/v1/resources', [apiListener(undefined), badCla]);
    expect(err.status).toBe(400);
    expect(err.problems).toEqual([
      { path: '$.resources[0].api_listener.api_listener.stat_prefix', message: 'at least 1 characters required' },
      { path: '$.resources[1].endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value', message: 'must be at most 65535' },
    ]);
    expect(await revision()).toBe(before);
    expect((await cp.api.request<{ items: unknown[] }>('GET', '/v1/resources')).body.items).toEqual([]);
  });

  it('PUT /v1/resources/{type}/{name} and the resources of PUT /v1/config are checked the same way', async () => {
    const before = await revision();
    const one = await refused('PUT', '/v1/resources/envoy.config.listener.v3.Listener/svc.test', apiListener(''));
    expect(one.status).toBe(400);
    expect(one.problems.map((p) => p.path)).toEqual([expect.stringMatching(/api_listener\.api_listener\.stat_prefix$/)]);
    const doc = await refused('PUT', '/v1/config', { resources: [{ ...badCla, cluster_name: 'c1' }] });
    expect(doc.status).toBe(400);
    expect(doc.problems).toEqual([{ path: '$.resources[0].endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value', message: 'must be at most 65535' }]);
    expect(await revision()).toBe(before);
  });

  it('the same resources, fixed, are accepted', async () => {
    const r = await cp.api.request<{ revision: number }>('PUT', '/v1/resources', { body: [apiListener('svc'), { ...badCla, endpoints: [] }] });
    expect(r.status).toBe(200);
    const items = (await cp.api.request<{ items: { name?: string; cluster_name?: string }[] }>('GET', '/v1/resources')).body.items.map((i) => i.name ?? i.cluster_name).sort();
    expect(items).toEqual(['raw-cla', 'svc.test']);
  });
});
