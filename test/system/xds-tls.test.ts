// TLS and mTLS on the xDS port, with certificates made by openssl at test time.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnapshotCache } from '../../src/xds/cache.js';
import { TypeUrl } from '../../src/xds/resources.js';
import { XdsServer } from '../../src/xds/server.js';
import { loadTlsFiles } from '../../src/xds/tls.js';
import { XdsTestClient } from '../support/xds-client.js';
import { edsCluster, startXdsServer, type RunningServer } from '../support/xds-fixtures.js';

const run = promisify(execFile);
// The server certificate names localhost; without the override grpc-js sends the IP as SNI.
const SNI = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.initial_reconnect_backoff_ms': 100 };
let dir: string;
const pem = (name: string): Buffer => readFileSync(join(dir, name));

async function openssl(...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

/** A key and a certificate signed by `ca`, with the given extensions. */
async function issue(name: string, ca: string, ext: string): Promise<void> {
  writeFileSync(join(dir, `${name}.ext`), ext);
  await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`);
}

async function makeCa(name: string): Promise<void> {
  await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'exds-xds-tls-'));
  await makeCa('ca');
  await makeCa('rogue-ca');
  await issue('server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await issue('envoy-node-1', 'ca', 'extendedKeyUsage=clientAuth\n');
  await issue('intruder', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
}, 30_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function firstClusters(client: XdsTestClient): Promise<{ ok: true; names: string[] } | { ok: false; code: number; details: string }> {
  const s = client.sotw();
  s.subscribe(TypeUrl.Cluster);
  const outcome = await Promise.race([s.nextOf(TypeUrl.Cluster, 8000).then((r) => ({ r })), s.ended(8000).then((e) => ({ e }))]);
  if ('r' in outcome) return { ok: true, names: outcome.r.resources.map((x) => x.name) };
  return { ok: false, code: outcome.e.code, details: outcome.e.details };
}

describe('xDS over TLS', () => {
  let srv: RunningServer;
  const clients: XdsTestClient[] = [];
  afterAll(async () => {
    for (const c of clients) c.close();
    await srv?.close();
  });

  it('serves clients that trust the CA; plaintext clients cannot talk to it', async () => {
    srv = await startXdsServer({ tls: loadTlsFiles({ cert: join(dir, 'server.crt'), key: join(dir, 'server.key') }) });
    srv.cache.setSnapshot('default', '1', [edsCluster('secure')]);
    const good = new XdsTestClient(srv.address, { node: { id: 'tls-client' }, credentials: grpc.credentials.createSsl(pem('ca.crt')), channelOptions: SNI });
    const plain = new XdsTestClient(srv.address, { node: { id: 'plain' }, channelOptions: { 'grpc.initial_reconnect_backoff_ms': 100 } });
    clients.push(good, plain);
    expect(await firstClusters(good)).toEqual({ ok: true, names: ['secure'] });
    const refused = await firstClusters(plain);
    expect(refused).toMatchObject({ ok: false, code: grpc.status.UNAVAILABLE });
  });
});

describe('xDS over mTLS', () => {
  let srv: RunningServer;
  const clients: XdsTestClient[] = [];
  beforeAll(async () => {
    srv = await startXdsServer({
      tls: loadTlsFiles({ cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), clientCa: join(dir, 'ca.crt') }),
    });
    srv.cache.setSnapshot('default', '1', [edsCluster('mutual')]);
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await srv?.close();
  });
  const client = (id: string, creds: grpc.ChannelCredentials): XdsTestClient => {
    const c = new XdsTestClient(srv.address, { node: { id }, credentials: creds, channelOptions: SNI });
    clients.push(c);
    return c;
  };

  it('refuses a client without a certificate', async () => {
    const r = await firstClusters(client('no-cert', grpc.credentials.createSsl(pem('ca.crt'))));
    expect(r).toMatchObject({ ok: false, code: grpc.status.UNAVAILABLE });
    expect(srv.server.status()).toEqual([]);
  });

  it('refuses a client whose certificate another CA signed', async () => {
    const r = await firstClusters(client('intruder', grpc.credentials.createSsl(pem('ca.crt'), pem('intruder.key'), pem('intruder.crt'))));
    expect(r).toMatchObject({ ok: false, code: grpc.status.UNAVAILABLE });
    expect(srv.server.status()).toEqual([]);
  });

  it('serves a client with a valid certificate and reports its identity', async () => {
    const r = await firstClusters(client('envoy-node-1', grpc.credentials.createSsl(pem('ca.crt'), pem('envoy-node-1.key'), pem('envoy-node-1.crt'))));
    expect(r).toEqual({ ok: true, names: ['mutual'] });
    expect(srv.server.status()).toMatchObject([{ node: { id: 'envoy-node-1' }, peerCertificate: 'envoy-node-1' }]);
  });
});

describe('TLS configuration errors', () => {
  it('a key that does not match the certificate fails at construction with a clear message', () => {
    const tls = { cert: pem('server.crt'), key: pem('intruder.key') };
    expect(() => new XdsServer({ cache: new SnapshotCache(), tls })).toThrow(/invalid xDS TLS material: .*(key values mismatch|KEY_VALUES_MISMATCH)/i);
  });

  it('missing or non-PEM files are named with their flag', () => {
    expect(() => loadTlsFiles({ cert: join(dir, 'nope.crt'), key: join(dir, 'server.key') })).toThrow(/cannot read the xDS TLS certificate ".*nope.crt" \(--xds-tls-cert\): ENOENT/);
    writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
    expect(() => loadTlsFiles({ cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), clientCa: join(dir, 'junk.pem') })).toThrow(/client CA .*junk.pem" \(--xds-client-ca\) is not PEM/);
  });
});
