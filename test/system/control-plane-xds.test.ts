// API changes reach real xDS clients without restarting anything. One control plane process for
// the file: (1) raw ADS streams see the generated Listener/Cluster/CLA resources, narrowed by node
// selectors, change after REST calls, and /v1/nodes shows their ACKs and NACKs; (2) a real
// @grpc/grpc-js-xds client resolves a target from resources PUT through the API and follows an
// endpoint change made through the API to another backend.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/xds/resources.js';
import { killAllControlPlanes, startControlPlane, writeTokenFile, type ControlPlaneProcess } from '../support/control-plane-process.js';
import { XdsTestClient, type SotwResponse, type SotwStream } from '../support/xds-client.js';

const dir = mkdtempSync(join(tmpdir(), 'exds-cp-xds-'));
let cp: ControlPlaneProcess;
const clients: XdsTestClient[] = [];
const children: ChildProcess[] = [];
const servers: grpc.Server[] = [];

beforeAll(async () => {
  cp = await startControlPlane({ dataDir: join(dir, 'data'), tokenFile: writeTokenFile(dir) });
});
afterAll(async () => {
  for (const c of clients) c.close();
  for (const p of children) if (p.exitCode === null) p.kill('SIGKILL');
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.tryShutdown(() => r()))));
  await killAllControlPlanes();
  rmSync(dir, { recursive: true, force: true });
});

function stream(id: string, cluster: string): SotwStream {
  const client = new XdsTestClient(`127.0.0.1:${cp.xdsPort}`, { node: { id, cluster, metadata: { rack: 'r1' } } });
  clients.push(client);
  return client.sotw('ads');
}

const names = (r: SotwResponse) => r.resources.map((x) => x.name).sort();

/** Waits for the next response of `typeUrl` that satisfies `ok`, ACKing everything on the way. */
async function until(s: SotwStream, typeUrl: string, ok: (r: SotwResponse) => boolean, what: string): Promise<SotwResponse> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await s.next(Math.max(100, deadline - Date.now())).catch((err: Error) => {
      throw new Error(`${what}: ${err.message}`);
    });
    s.ack(r);
    if (r.typeUrl === typeUrl && ok(r)) return r;
  }
}

describe('API changes reach xDS clients', () => {
  it('raw ADS streams get generated resources, narrowed by node selectors, and follow API changes', async () => {
    await cp.api.request('PUT', '/v1/config', {
      contentType: 'application/yaml',
      body: `
listeners:
  - { name: public, address: 0.0.0.0, port: 4444, mode: skb, cluster: shared }
  - { name: edge-only, address: 0.0.0.0, port: 5555, mode: userspace, cluster: edge-backend, nodeSelector: { clusters: [edge] } }
clusters:
  - { name: shared, endpoints: [{ address: 10.0.0.1, port: 9000 }] }
  - { name: edge-backend, lbPolicy: maglev, endpoints: [{ address: 10.0.0.2, port: 9000 }] }
`,
    });
    const edge = stream('mb-1', 'edge');
    const core = stream('mb-2', 'core');
    for (const s of [edge, core]) {
      s.subscribe(TypeUrl.Cluster);
      s.subscribe(TypeUrl.Listener);
    }
    const edgeCds = await until(edge, TypeUrl.Cluster, () => true, 'edge CDS');
    expect(names(edgeCds)).toEqual(['edge-backend', 'shared']);
    expect(edgeCds.versionInfo).toBe('1');
    const coreCds = await until(core, TypeUrl.Cluster, () => true, 'core CDS');
    expect(names(coreCds)).toEqual(['shared']);
    const edgeLds = await until(edge, TypeUrl.Listener, () => true, 'edge LDS');
    expect(names(edgeLds)).toEqual(['edge-only', 'public']);
    const coreLds = await until(core, TypeUrl.Listener, () => true, 'core LDS');
    expect(names(coreLds)).toEqual(['public']);
    const publicListener = edgeLds.resources.find((r) => r.name === 'public')?.json() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(publicListener['filter_chains'][0].filters[0].name).toBe('ebpf_tcp_proxy_skb');

    edge.subscribe(TypeUrl.ClusterLoadAssignment, ['shared']);
    const cla1 = await until(edge, TypeUrl.ClusterLoadAssignment, () => true, 'edge EDS');
    expect(cla1.resources[0]?.json()).toMatchObject({ cluster_name: 'shared', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 9000 } } } }] }] });

    // An endpoint change through the API: a new CLA, versioned with the new revision, no restart.
    const put = await cp.api.request<{ revision: number }>('PUT', '/v1/clusters/shared/endpoints', { body: [{ address: '10.0.0.9', port: 9001, weight: 2 }] });
    const cla2 = await until(edge, TypeUrl.ClusterLoadAssignment, (r) => r.versionInfo === String(put.body.revision), 'EDS after PUT endpoints');
    expect(cla2.resources[0]?.json()).toMatchObject({ endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.9', port_value: 9001 } } }, load_balancing_weight: 2 }] }] });

    // Moving a listener to the other nodes: the streams keep their groups, the contents follow.
    await cp.api.request('PUT', '/v1/listeners/edge-only', {
      body: { name: 'edge-only', address: '0.0.0.0', port: 5555, mode: 'userspace', cluster: 'edge-backend', nodeSelector: { clusters: ['core'] } },
    });
    expect(names(await until(edge, TypeUrl.Listener, (r) => !names(r).includes('edge-only'), 'edge LDS without edge-only'))).toEqual(['public']);
    expect(names(await until(core, TypeUrl.Listener, (r) => names(r).includes('edge-only'), 'core LDS with edge-only'))).toEqual(['edge-only', 'public']);

    // A NACK shows up in /v1/nodes with its message; ACKed versions are there too.
    await cp.api.request('POST', '/v1/drop-rules', { body: { name: 'block', cidr: '192.0.2.0/24' } });
    const withRbac = await core.nextOf(TypeUrl.Listener, 10_000);
    core.nack(withRbac, 'rbac filter not supported on this node');
    const deadline = Date.now() + 5000;
    let view: { node: { id: string } | null; types: { typeUrl: string; acked: { version: string } | null; lastNack: { message: string; version: string } | null }[] } | undefined;
    while (Date.now() < deadline) {
      const nodes = await cp.api.request<{ items: NonNullable<typeof view>[] }>('GET', '/v1/nodes');
      view = nodes.body.items.find((n) => n.node?.id === 'mb-2');
      if (view?.types.find((t) => t.typeUrl === TypeUrl.Listener)?.lastNack) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const lds = view?.types.find((t) => t.typeUrl === TypeUrl.Listener);
    expect(lds?.lastNack).toMatchObject({ message: 'rbac filter not supported on this node', version: withRbac.versionInfo });
    // Core's clusters last changed at revision 3, when edge-backend came with the moved listener.
    expect(coreCds.versionInfo).toBe('1');
    expect(view?.types.find((t) => t.typeUrl === TypeUrl.Cluster)?.acked?.version).toBe('3');
  });

  it('@grpc/grpc-js-xds follows an endpoint change made through the REST API to the next backend', async () => {
    const ports = await Promise.all(['backend-1', 'backend-2'].map(startBackend));
    await cp.api.request('PUT', '/v1/resources', {
      body: [
        {
          '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
          name: 'who.test',
          api_listener: {
            api_listener: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: 'who',
              rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: 'who-route' },
              http_filters: [{ name: 'router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
            },
          },
        },
        {
          '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
          name: 'who-route',
          virtual_hosts: [{ name: 'who', domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster: 'who-backend' } }] }],
        },
      ],
    });
    // The cluster is a model cluster: its EDS Cluster and CLA are generated.
    await cp.api.request('PUT', '/v1/clusters/who-backend', { body: { name: 'who-backend', endpoints: [{ address: '127.0.0.1', port: ports[0] }] } });

    const bootstrap = {
      xds_servers: [{ server_uri: `127.0.0.1:${cp.xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'grpc-client-1', cluster: 'apps', locality: {} },
    };
    const caller = spawn(process.execPath, ['--import', 'tsx', resolve(import.meta.dirname, '..', 'support', 'grpc-xds-caller.ts'), 'xds:///who.test', '/exds.test.Who/Ask', '100'], {
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap), ...(process.env['EXDS_GRPC_TRACE'] ? { GRPC_TRACE: 'xds_client,xds_resolver,cds_balancer,xds_cluster_resolver', GRPC_VERBOSITY: 'DEBUG' } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(caller);
    const replies: string[] = [];
    let stderr = '';
    caller.stdout?.on('data', (b: Buffer) => {
      for (const line of b.toString().split('\n').filter(Boolean)) {
        const j = JSON.parse(line) as { ok?: string; error?: string };
        replies.push(j.ok ?? `error: ${j.error}`);
      }
    });
    caller.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const waitFor = async (want: string) => {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        if (replies.slice(-3).length === 3 && replies.slice(-3).every((r) => r === want)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`expected RPCs to reach ${want}; last replies: ${replies.slice(-5).join(' | ')}; stderr: ${stderr.slice(-2000)}`);
    };
    await waitFor('backend-1');

    await cp.api.request('PUT', '/v1/clusters/who-backend/endpoints', { body: [{ address: '127.0.0.1', port: ports[1] }] });
    const mark = replies.length;
    await waitFor('backend-2');
    // After the switch settled, nothing goes to the old backend any more.
    expect(replies.slice(-3)).toEqual(['backend-2', 'backend-2', 'backend-2']);
    expect(replies.length).toBeGreaterThan(mark);

    const nodes = await cp.api.request<{ items: { node: { id: string } | null; types: { typeUrl: string; acked: { version: string } | null }[] }[] }>('GET', '/v1/nodes');
    const grpcNode = nodes.body.items.find((n) => n.node?.id === 'grpc-client-1');
    expect(grpcNode?.types.map((t) => t.typeUrl).sort()).toEqual([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener, TypeUrl.RouteConfiguration].sort());
    caller.kill('SIGTERM');
  });
});

async function startBackend(name: string): Promise<number> {
  const server = new grpc.Server();
  const id = (b: Buffer) => b;
  server.addService(
    { Ask: { path: '/exds.test.Who/Ask', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } },
    { Ask: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(name)) },
  );
  servers.push(server);
  return new Promise((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? rej(err) : res(port))));
}
