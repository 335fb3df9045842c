// A real xDS client: @grpc/grpc-js-xds resolves xds:///my-service through LDS (ApiListener with
// HttpConnectionManager, RDS over ADS, router filter), RDS, CDS (EDS cluster) and EDS served from
// the cache, and calls a real backend. Changing the ClusterLoadAssignment moves the next calls to
// a second backend. The client runs in a child process: its bootstrap is process-global.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/xds/resources.js';
import { apiListener, cla, edsCluster, routeConfig, startXdsServer, type RunningServer } from '../support/xds-fixtures.js';

const CHILD = fileURLToPath(new URL('../support/xds-grpc-child.ts', import.meta.url));

interface Backend {
  name: string;
  port: number;
  server: grpc.Server;
}

async function startBackend(name: string): Promise<Backend> {
  const server = new grpc.Server();
  const id = (b: Buffer): Buffer => b;
  server.addService(
    { Who: { path: '/test.Echo/Who', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } },
    { Who: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(name)) },
  );
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return { name, port, server };
}

type CallResult = { ok: true; backend: string } | { ok: false; code: number; details: string };

class ChildClient {
  private readonly waiters: Array<(r: CallResult) => void> = [];
  readonly seen: CallResult[] = [];
  readonly stderr: string[] = [];

  constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      let r: CallResult;
      try {
        r = JSON.parse(line) as CallResult;
      } catch {
        this.stderr.push(`stdout: ${line}`);
        return;
      }
      this.seen.push(r);
      for (const w of this.waiters.splice(0)) w(r);
    });
    createInterface({ input: proc.stderr! }).on('line', (line) => this.stderr.push(line));
  }

  /** Resolves with the first call result satisfying `pred`. */
  until(pred: (r: CallResult) => boolean, timeoutMs: number, what: string): Promise<CallResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const last = this.seen.slice(-3).map((r) => JSON.stringify(r)).join(' ');
        reject(new Error(`${what}: not within ${timeoutMs} ms; last calls: ${last || 'none'}; stderr: ${this.stderr.slice(-5).join(' | ')}`));
      }, timeoutMs);
      const check = (r: CallResult): void => {
        if (pred(r)) {
          clearTimeout(timer);
          resolve(r);
        } else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  async next(n: number, timeoutMs: number): Promise<CallResult[]> {
    const start = this.seen.length;
    await this.until(() => this.seen.length >= start + n, timeoutMs, `${n} more calls`);
    return this.seen.slice(start, start + n);
  }
}

describe('grpc-js-xds resolves xds:/// through this server', () => {
  let xds: RunningServer;
  let a: Backend;
  let b: Backend;
  let child: ChildClient | undefined;

  beforeAll(async () => {
    xds = await startXdsServer();
    a = await startBackend('backend-a');
    b = await startBackend('backend-b');
  });

  afterAll(async () => {
    if (child && child.proc.exitCode === null) {
      child.proc.kill('SIGTERM');
      await new Promise((r) => child!.proc.once('exit', r));
    }
    await xds?.close();
    a?.server.forceShutdown();
    b?.server.forceShutdown();
  });

  it('routes RPCs to the endpoint in the CLA, and follows a CLA change to the second backend', async () => {
    const base = [apiListener('my-service', 'route-1'), routeConfig('route-1', 'backend', ['my-service']), edsCluster('backend')];
    xds.cache.setSnapshot('default', '1', [...base, cla('backend', [{ address: '127.0.0.1', port: a.port }])]);
    const bootstrap = {
      xds_servers: [{ server_uri: xds.address, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'grpc-e2e', cluster: 'e2e', locality: { zone: 'test' } },
    };
    const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, 'xds:///my-service'], {
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap), INTERVAL_MS: '50' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = new ChildClient(proc);

    await child.until((r) => r.ok && r.backend === 'backend-a', 20_000, 'first RPC reaching backend-a');

    // The client subscribed to all four types through ADS and ACKed each without a NACK.
    const [stream] = xds.server.status();
    expect(stream).toMatchObject({ node: { id: 'grpc-e2e' }, service: 'ads', protocol: 'sotw' });
    const byType = Object.fromEntries(stream!.types.map((t) => [t.typeUrl, t]));
    for (const t of [TypeUrl.Listener, TypeUrl.RouteConfiguration, TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment]) {
      expect(byType[t]?.acked?.version, t).toBe('1');
      expect(byType[t]?.lastNack, t).toBeNull();
    }
    expect(byType[TypeUrl.Listener]!.subscription.names).toEqual(['my-service']);

    xds.cache.setSnapshot('default', '2', [...base, cla('backend', [{ address: '127.0.0.1', port: b.port }])]);
    await child.until((r) => r.ok && r.backend === 'backend-b', 10_000, 'an RPC reaching backend-b after the CLA change');
    const after = await child.next(5, 5000);
    expect(after.every((r) => r.ok && r.backend === 'backend-b')).toBe(true);
    const eds = xds.server.status()[0]!.types.find((t) => t.typeUrl === TypeUrl.ClusterLoadAssignment)!;
    expect(eds.acked?.version).toBe('2');
    // Only EDS changed, so only EDS was pushed again.
    const cds = xds.server.status()[0]!.types.find((t) => t.typeUrl === TypeUrl.Cluster)!;
    expect(cds.lastSent?.version).toBe('1');
  });
});
