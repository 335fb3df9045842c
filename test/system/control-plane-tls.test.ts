// The control-plane command's TLS flags, end to end: with --xds-tls-cert/--xds-tls-key and
// --xds-client-ca, a node with a certificate from that CA gets the config made through the API,
// and a node without one is refused; wrong flag combinations and bad files stop the start with
// a clear message and exit code 1. Certificates are made by openssl at test time.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/xds/resources.js';
import { killAllControlPlanes, runCli, startControlPlane, writeTokenFile } from '../support/control-plane-process.js';
import { XdsTestClient } from '../support/xds-client.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'exds-cp-tls-'));
const clients: XdsTestClient[] = [];
const file = (name: string) => join(dir, name);

async function openssl(...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

async function makeCa(name: string): Promise<void> {
  await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`);
}

async function issue(name: string, ca: string, ext: string): Promise<void> {
  writeFileSync(file(`${name}.ext`), ext);
  await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`);
}

beforeAll(async () => {
  await makeCa('ca');
  await issue('server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await issue('node-1', 'ca', 'extendedKeyUsage=clientAuth\n');
}, 30_000);
afterAll(async () => {
  for (const c of clients) c.close();
  await killAllControlPlanes();
  rmSync(dir, { recursive: true, force: true });
});

function client(port: number, withCert: boolean): XdsTestClient {
  const ca = readFileSync(file('ca.crt'));
  const creds = withCert ? grpc.credentials.createSsl(ca, readFileSync(file('node-1.key')), readFileSync(file('node-1.crt'))) : grpc.credentials.createSsl(ca);
  const c = new XdsTestClient(`127.0.0.1:${port}`, {
    credentials: creds,
    node: { id: 'node-1', cluster: 'edge' },
    channelOptions: { 'grpc.ssl_target_name_override': 'localhost', 'grpc.initial_reconnect_backoff_ms': 100 },
  });
  clients.push(c);
  return c;
}

describe('control-plane --xds-tls-* flags', () => {
  it('mTLS: a node with a certificate from --xds-client-ca gets the API-made config; one without is refused', async () => {
    const cp = await startControlPlane({
      dataDir: file('data'),
      tokenFile: writeTokenFile(dir),
      args: ['--xds-tls-cert', file('server.crt'), '--xds-tls-key', file('server.key'), '--xds-client-ca', file('ca.crt')],
    });
    expect(cp.stderr()).toMatch(/"tls":true,"mtls":true,"msg":"control plane ready"/);
    await cp.api.request('PUT', '/v1/clusters/secure', { body: { name: 'secure', endpoints: [{ address: '10.0.0.1', port: 443 }] } });

    const s = client(cp.xdsPort, true).sotw('ads');
    s.subscribe(TypeUrl.Cluster);
    const r = await s.nextOf(TypeUrl.Cluster, 10_000);
    expect(r.resources.map((x) => x.name)).toEqual(['secure']);

    const refused = client(cp.xdsPort, false).sotw('ads');
    refused.subscribe(TypeUrl.Cluster);
    const end = await refused.ended(10_000);
    expect(end.code).toBe(grpc.status.UNAVAILABLE);
    await cp.stop();
  });

  it('refuses half-given or unreadable TLS material before serving', async () => {
    const base = ['control-plane', '--xds-port', '0', '--api-port', '0', '--data-dir', file('data2')];
    const onlyCert = await runCli([...base, '--xds-tls-cert', file('server.crt')]);
    expect(onlyCert.code).toBe(1);
    expect(onlyCert.stderr).toContain('--xds-tls-cert and --xds-tls-key go together');
    const caOnly = await runCli([...base, '--xds-client-ca', file('ca.crt')]);
    expect(caOnly.code).toBe(1);
    expect(caOnly.stderr).toContain('--xds-client-ca needs --xds-tls-cert and --xds-tls-key');
    const missing = await runCli([...base, '--xds-tls-cert', file('nope.crt'), '--xds-tls-key', file('server.key')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('nope.crt');
    const mismatched = await runCli([...base, '--xds-tls-cert', file('server.crt'), '--xds-tls-key', file('node-1.key')]);
    expect(mismatched.code).toBe(1);
    expect(mismatched.stderr).toMatch(/invalid xDS TLS material/);
    for (const r of [onlyCert, caOnly, missing, mismatched]) expect(r.stderr).not.toContain('control plane ready');
  });
});
