// The control plane as a real process on a real data dir: kill -9 in the middle of a burst of
// API writes loses no acknowledged write and versions only go up after the restart; a bad
// --resources file stops the start before anything is served or stored; one data dir, one process.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClientError } from '../../src/api/client.js';
import { TypeUrl } from '../../src/xds/resources.js';
import { killAllControlPlanes, runCli, startControlPlane, writeTokenFile } from '../support/control-plane-process.js';
import { XdsTestClient } from '../support/xds-client.js';

const dir = mkdtempSync(join(tmpdir(), 'exds-cp-durability-'));
const clients: XdsTestClient[] = [];
afterAll(async () => {
  for (const c of clients) c.close();
  await killAllControlPlanes();
  rmSync(dir, { recursive: true, force: true });
});

const cluster = (name: string) => ({ name, endpoints: [{ address: '10.1.0.1', port: 9000 }] });

async function cdsVersion(xdsPort: number): Promise<number> {
  const client = new XdsTestClient(`127.0.0.1:${xdsPort}`, { node: { id: 'durability-probe', cluster: 'test' } });
  clients.push(client);
  const s = client.sotw('ads');
  s.subscribe(TypeUrl.Cluster);
  const r = await s.nextOf(TypeUrl.Cluster, 10_000);
  client.close();
  return Number(r.versionInfo.split('.')[0]);
}

describe('control plane durability', () => {
  it('kill -9 during a burst of writes loses no acknowledged write; versions continue upward', async () => {
    const dataDir = join(dir, 'burst');
    const token = writeTokenFile(dir);
    const cp = await startControlPlane({ dataDir, tokenFile: token });
    const before = await cdsVersion(cp.xdsPort);

    const acked = new Map<string, number>(); // cluster name -> revision the API acknowledged
    let refused = 0;
    let stop = false;
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const name = `w${w}-c${i}`;
        try {
          const res = await cp.api.request<{ revision: number }>('PUT', `/v1/clusters/${name}`, { body: cluster(name) });
          acked.set(name, res.body.revision);
        } catch (err) {
          // In-flight requests die with the process; those were never acknowledged.
          if (!(err instanceof ApiClientError) || err.status !== 0) throw err;
          refused++;
          return;
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    // Kill while writes are in flight, once a fair number have been acknowledged.
    while (acked.size < 60) await new Promise((r) => setTimeout(r, 20));
    cp.proc.kill('SIGKILL');
    const exit = await cp.exited;
    stop = true;
    await Promise.all(writers);
    expect(exit.signal).toBe('SIGKILL');
    expect(refused).toBeGreaterThan(0); // the kill really hit in-flight writes

    const again = await startControlPlane({ dataDir, tokenFile: token });
    const { body } = await again.api.request<{ revision: number; items: { name: string }[] }>('GET', '/v1/clusters');
    const stored = new Set(body.items.map((c) => c.name));
    const missing = [...acked.keys()].filter((n) => !stored.has(n));
    expect(missing).toEqual([]);
    const maxAcked = Math.max(...acked.values());
    expect(body.revision).toBeGreaterThanOrEqual(maxAcked);

    const history = await again.api.request<{ items: { revision: number }[] }>('GET', '/v1/revisions?limit=10000');
    const revs = history.body.items.map((r) => r.revision);
    expect(revs).toEqual([...revs].sort((a, b) => b - a));
    expect(new Set(revs).size).toBe(revs.length);

    // The xDS version served after the restart is the persisted revision: never below what was
    // served or acknowledged before the kill.
    const after = await cdsVersion(again.xdsPort);
    expect(after).toBe(body.revision);
    expect(after).toBeGreaterThanOrEqual(Math.max(before, maxAcked));
    const next = await again.api.request<{ revision: number }>('PUT', '/v1/clusters/after-restart', { body: cluster('after-restart') });
    expect(next.body.revision).toBe(body.revision + 1);
    await again.stop();
  });

  it('a bad --resources file: clear error naming the file and path, exit 1, nothing served or stored', async () => {
    const dataDir = join(dir, 'resources');
    const token = writeTokenFile(dir);
    const good = join(dir, 'good.yaml');
    writeFileSync(
      good,
      `- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: r1
  virtual_hosts: [{ name: vh, domains: ["*"] }]
`,
    );
    const cp = await startControlPlane({ dataDir, tokenFile: token, args: ['--resources', good] });
    const loaded = await cp.api.request<{ revision: number; items: unknown[] }>('GET', '/v1/resources');
    expect(loaded.body).toMatchObject({ revision: 1, items: [{ name: 'r1' }] });
    const yamlBefore = (await cp.api.request<string>('GET', '/v1/config?format=json')).body;
    await cp.stop();

    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      `- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: r1
  virtual_hostz: []
`,
    );
    const r = await runCli(['control-plane', '--xds-port', '0', '--api-port', '0', '--data-dir', dataDir, '--api-token-file', token.file, '--resources', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`--resources ${bad} is invalid; nothing was loaded`);
    expect(r.stderr).toContain(`${bad}: $[0].virtual_hostz: unknown field "virtual_hostz"`);
    expect(r.stderr).not.toContain('control plane ready');

    // Decodes strictly, but breaks a protoc-gen-validate rule Envoy enforces: refused as well.
    const refused = join(dir, 'refused.yaml');
    writeFileSync(
      refused,
      `- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: c0
  connect_timeout: 0s
`,
    );
    const p = await runCli(['control-plane', '--xds-port', '0', '--api-port', '0', '--data-dir', dataDir, '--api-token-file', token.file, '--resources', refused]);
    expect(p.code).toBe(1);
    expect(p.stderr).toContain(`${refused}: $[0].connect_timeout: must be greater than 0s`);

    const garbage = join(dir, 'garbage.yaml');
    writeFileSync(garbage, 'resources: [\n  {"@type": ');
    const g = await runCli(['control-plane', '--xds-port', '0', '--api-port', '0', '--data-dir', dataDir, '--api-token-file', token.file, '--resources', garbage]);
    expect(g.code).toBe(1);
    expect(g.stderr).toMatch(/not valid YAML at line \d+, column \d+/);

    // Restarting with the good file again changes nothing: same revision, same config.
    const again = await startControlPlane({ dataDir, tokenFile: token, args: ['--resources', good] });
    expect((await again.api.request<string>('GET', '/v1/config?format=json')).body).toEqual(yamlBefore);
    expect((await again.api.request<{ current: number }>('GET', '/v1/revisions')).body.current).toBe(1);

    // One data dir, one control plane.
    const second = await runCli(['control-plane', '--xds-port', '0', '--api-port', '0', '--data-dir', dataDir, '--api-token-file', token.file]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/in use by another process/);
    const stopped = await again.stop();
    expect(stopped).toEqual({ code: 0, signal: null });
  });

  it('generates an API token on first start, prints it once, and reuses it', async () => {
    const dataDir = join(dir, 'generated-token');
    const first = await runCliUntilReady(dataDir);
    expect(first.stdout).toMatch(/generated API token \(stored in .*api-token, shown only now\): \S{20,}/);
    const second = await runCliUntilReady(dataDir);
    expect(second.stdout).not.toMatch(/generated API token/);
  });
});

/** Starts the control plane without a token file, waits for ready, stops it; returns its output. */
async function runCliUntilReady(dataDir: string): Promise<{ stdout: string }> {
  const { spawnCli } = await import('../support/control-plane-process.js');
  const proc = spawnCli(['control-plane', '--xds-port', '0', '--api-port', '0', '--data-dir', dataDir]);
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
  const exited = new Promise((r) => proc.once('exit', r));
  await new Promise<void>((res, rej) => {
    void exited.then(() => rej(new Error(`exited before ready: ${stderr}`)));
    const t = setTimeout(() => rej(new Error(`not ready: ${stderr}`)), 30_000);
    proc.stderr?.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (stderr.includes('"control plane ready"')) {
        clearTimeout(t);
        res();
      }
    });
  });
  proc.kill('SIGTERM');
  await exited;
  return { stdout };
}
