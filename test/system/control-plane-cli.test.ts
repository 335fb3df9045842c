// The operator CLI against a running control plane process: apply (and apply again), diff with
// its exit codes, get in table/JSON form, and clear messages with non-zero exits on bad files,
// missing tokens and an unreachable API.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAllControlPlanes, runCli, startControlPlane, writeTokenFile, type ControlPlaneProcess } from '../support/control-plane-process.js';

const dir = mkdtempSync(join(tmpdir(), 'exds-cli-'));
let cp: ControlPlaneProcess;
let token: { file: string; token: string };

beforeAll(async () => {
  token = writeTokenFile(dir);
  cp = await startControlPlane({ dataDir: join(dir, 'data'), tokenFile: token });
});
afterAll(async () => {
  await killAllControlPlanes();
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { EBPF_XDS_API: cp.apiUrl, ...env });

describe('ebpf-xds apply / diff / get', () => {
  it('applies the Kafka example, then reports no changes on a second apply', async () => {
    const first = await cli(['apply', '-f', 'envoy/examples/kafka-sni/config.yaml', '--token-file', token.file]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('+ listener kafka');
    expect(first.stdout).toContain('+ cluster kafka3_cluster');
    expect(first.stdout).toContain('applied: revision 1');
    const second = await cli(['apply', '-f', 'envoy/examples/kafka-sni/config.yaml'], { EBPF_XDS_TOKEN: token.token });
    expect(second.code).toBe(0);
    expect(second.stdout.trim()).toBe('no changes (revision 1)');
  });

  it('diff: exit 0 without changes, 1 with changes (showing fields and resources), nothing committed', async () => {
    const same = await cli(['diff', '-f', 'envoy/examples/kafka-sni/config.yaml', '--token', token.token]);
    expect(same.code).toBe(0);
    const changed = join(dir, 'changed.yaml');
    const { readFileSync } = await import('node:fs');
    writeFileSync(changed, readFileSync('envoy/examples/kafka-sni/config.yaml', 'utf8').replace('port: 9094', 'port: 9095'));
    const d = await cli(['diff', '-f', changed, '--token', token.token, '--resources']);
    expect(d.code).toBe(1);
    expect(d.stdout).toContain('~ cluster kafka3_cluster');
    expect(d.stdout).toContain('endpoints[0].port: 9094 -> 9095');
    expect(d.stdout).toContain('changed ClusterLoadAssignment kafka3_cluster');
    expect((await cp.api.request<{ current: number }>('GET', '/v1/revisions')).body.current).toBe(1);
  });

  it('get prints tables and JSON', async () => {
    const listeners = await cli(['get', 'listeners', '--token', token.token]);
    expect(listeners.code).toBe(0);
    expect(listeners.stdout).toMatch(/^NAME\s+ADDRESS\s+PORTS\s+MODE\s+INTERFACE\s+ROUTES\s+CLUSTER\nkafka\s+0\.0\.0\.0\s+4444\s+xdp\s+5\s+3\s*\n$/);
    const clusters = await cli(['get', 'clusters', '-o', 'json', '--token', token.token]);
    expect(JSON.parse(clusters.stdout).map((c: { name: string }) => c.name)).toEqual(['kafka1_cluster', 'kafka2_cluster', 'kafka3_cluster']);
    const revisions = await cli(['get', 'revisions', '--token', token.token]);
    expect(revisions.stdout).toMatch(/1\*\s+\S+\s+PUT \/v1\/config\s+1L 3C 0D 0R/);
    const nodes = await cli(['get', 'nodes', '--token', token.token]);
    expect(nodes.code).toBe(0);
    const config = await cli(['get', 'config', '--token', token.token]);
    expect(config.stdout).toContain('# ebpf-xds config, revision 1');
  });

  it('fails clearly: invalid file, missing token, unknown kind, unreachable API, missing file', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'listeners:\n  - { name: x, address: 0.0.0.0, port: 80, mode: xdp, cluster: nope }\n');
    const invalid = await cli(['apply', '-f', bad, '--token', token.token]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain('error: the config is invalid (2 problems) (HTTP 400)');
    expect(invalid.stderr).toContain('$.listeners[0].interface: mode "xdp" needs an interface');
    expect(invalid.stderr).toContain('$.listeners[0].cluster: unknown cluster "nope"');

    const noToken = await cli(['get', 'clusters'], { EBPF_XDS_TOKEN: '' });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/missing the API token/);
    const kind = await cli(['get', 'widgets', '--token', token.token]);
    expect(kind.code).toBe(1);
    expect(kind.stderr).toMatch(/unknown kind "widgets"/);
    const closedPort = await new Promise<number>((res) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as AddressInfo).port;
        srv.close(() => res(port));
      });
    });
    const down = await runCli(['get', 'clusters', '--api', `http://127.0.0.1:${closedPort}`, '--token', token.token]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`cannot reach the API at http://127.0.0.1:${closedPort} (ECONNREFUSED)`);
    const missing = await cli(['diff', '-f', join(dir, 'nope.yaml'), '--token', token.token]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*nope.yaml/);
    expect((await cp.api.request<{ current: number }>('GET', '/v1/revisions')).body.current).toBe(1);
  });
});
