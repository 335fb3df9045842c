// The Envoy bootstraps in envoy/: decoded strictly against envoy.config.bootstrap.v3.Bootstrap,
// checked for the ADS wiring they promise, and (for mTLS) checked against the names the control
// plane's Service has and the certificates deploy/tls/gen-dev-certs.sh issues, including a real
// mutual-TLS handshake with those certificates.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { decodeToJson, encodeJson, ProtoJsonError } from '../../src/proto/json.js';
import { protoRegistry } from '../../src/proto/registry.js';
import { REPO_ROOT } from '../support/deploy-kubectl.js';
import { pgvProblems } from '../../src/proto/pgv.js';

const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';
const HTTP_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const TLS_CONTEXT = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

type Json = Record<string, any>;

function load(rel: string): Json {
  return parse(readFileSync(join(REPO_ROOT, rel), 'utf8'), { merge: true }) as Json;
}

function typeUrls(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((v) => typeUrls(v, out));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '@type' && typeof v === 'string') out.push(v);
      else typeUrls(v, out);
    }
  }
  return out;
}

const bootstraps = readdirSync(join(REPO_ROOT, 'envoy'))
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => `envoy/${f}`);

// Bootstraps under envoy/examples/ (e.g. the Kafka SNI reference config) get the same strict
// decode and PGV check, though not the ADS expectations: they are static configs.
const exampleBootstraps = readdirSync(join(REPO_ROOT, 'envoy', 'examples'), { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => `envoy/examples/${f}`)
  .filter((rel) => {
    const doc = load(rel);
    return ['static_resources', 'dynamic_resources'].some((k) => k in doc);
  });

describe('Envoy bootstraps', () => {
  it('finds the plain and the mTLS bootstrap', () => {
    expect(bootstraps).toEqual(expect.arrayContaining(['envoy/bootstrap.yaml', 'envoy/bootstrap-mtls.yaml']));
  });

  it.each(bootstraps)('%s decodes strictly as a Bootstrap and round-trips', (rel) => {
    const json = load(rel);
    const bytes = encodeJson(BOOTSTRAP, json); // throws ProtoJsonError listing every bad path
    const back = decodeToJson(BOOTSTRAP, bytes);
    expect(Buffer.from(encodeJson(BOOTSTRAP, back))).toEqual(Buffer.from(bytes));
  });

  it.each(bootstraps)('%s satisfies the protoc-gen-validate rules Envoy enforces at start', (rel) => {
    const json = decodeToJson(BOOTSTRAP, encodeJson(BOOTSTRAP, load(rel))) as Json;
    expect(pgvProblems(BOOTSTRAP, json)).toEqual([]);
  });

  it.each(exampleBootstraps)('example %s decodes strictly and satisfies the PGV rules', (rel) => {
    const json = decodeToJson(BOOTSTRAP, encodeJson(BOOTSTRAP, load(rel))) as Json;
    expect(pgvProblems(BOOTSTRAP, json)).toEqual([]);
  });

  it('reports PGV violations a strict decode lets through (the check can fail)', () => {
    const json = decodeToJson(BOOTSTRAP, encodeJson(BOOTSTRAP, load('envoy/bootstrap.yaml'))) as Json;
    const xds = json.static_resources.clusters[0];
    xds.connect_timeout = '0s';
    xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = 70000;
    json.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name = '';
    const sock = '$.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address';
    expect(pgvProblems(BOOTSTRAP, json)).toEqual([
      { path: '$.static_resources.clusters[0].connect_timeout', message: 'must be greater than 0s' },
      { path: `${sock}.port_value`, message: 'must be at most 65535' },
      { path: '$.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name', message: 'at least 1 characters required' },
    ]);
  });

  it.each(bootstraps)('%s uses only typed configs the registry can load', (rel) => {
    const urls = typeUrls(load(rel));
    expect(urls.length).toBeGreaterThan(0);
    for (const url of urls) expect(protoRegistry().typeForUrl(url), url).toBeDefined();
  });

  it.each(bootstraps)('%s takes LDS and CDS over ADS from an HTTP/2 xds_cluster, with admin on loopback', (rel) => {
    const b = load(rel);
    expect(b.node.id).toMatch(/\S/);
    expect(b.node.cluster).toMatch(/\S/);

    const ads = b.dynamic_resources.ads_config;
    expect(['GRPC', 'DELTA_GRPC']).toContain(ads.api_type);
    expect(ads.transport_api_version).toBe('V3');
    expect(ads.grpc_services).toHaveLength(1);
    const clusterName = ads.grpc_services[0].envoy_grpc.cluster_name;
    for (const key of ['lds_config', 'cds_config']) {
      expect(b.dynamic_resources[key], key).toEqual({ ads: {}, resource_api_version: 'V3' });
    }

    const xds = (b.static_resources.clusters as Json[]).find((c) => c.name === clusterName);
    expect(xds, `static cluster ${clusterName}`).toBeDefined();
    const opts = xds!.typed_extension_protocol_options[HTTP_OPTIONS];
    expect(opts['@type']).toBe(`type.googleapis.com/${HTTP_OPTIONS}`);
    expect(opts.explicit_http_config.http2_protocol_options).toBeDefined();
    const endpoints = xds!.load_assignment.endpoints.flatMap((e: Json) => e.lb_endpoints);
    expect(endpoints.length).toBeGreaterThan(0);
    for (const e of endpoints) expect(e.endpoint.address.socket_address.port_value).toBe(18000);

    expect(['127.0.0.1', '::1']).toContain(b.admin.address.socket_address.address);
  });

  it('points the plain bootstrap at the Compose control-plane service', () => {
    const b = load('envoy/bootstrap.yaml');
    const sock = b.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    const compose = load('docker-compose.yml');
    expect(Object.keys(compose.services)).toContain(sock.address);
    const cmd: string[] = compose.services[sock.address].command;
    expect(cmd[cmd.indexOf('--xds-port') + 1]).toBe(String(sock.port_value));
    expect(b.static_resources.clusters[0].transport_socket).toBeUndefined();
  });

  it('rejects a bootstrap with a misspelt field or an unknown typed config, naming the path', () => {
    const b = load('envoy/bootstrap.yaml');
    b.dynamic_resources.ads_config.api_typ = 'GRPC';
    b.overload_manager.resource_monitors[0].typed_config['@type'] = 'type.googleapis.com/envoy.no.Such';
    let err: unknown;
    try {
      encodeJson(BOOTSTRAP, b);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtoJsonError);
    const paths = (err as ProtoJsonError).problems.map((p) => p.path);
    expect(paths).toContain('$.dynamic_resources.ads_config.api_typ');
    expect(paths.some((p) => p.startsWith('$.overload_manager.resource_monitors[0].typed_config'))).toBe(true);
  });
});

describe('mTLS bootstrap, Service names and development certificates', () => {
  const b = load('envoy/bootstrap-mtls.yaml');
  const xds = b.static_resources.clusters[0] as Json;
  const sock = xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
  const tls = xds.transport_socket.typed_config as Json;
  let certs: string;

  beforeAll(() => {
    certs = join(mkdtempSync(join(tmpdir(), 'ebpf-xds-certs-')), 'out');
    execFileSync('sh', [join(REPO_ROOT, 'deploy/tls/gen-dev-certs.sh'), certs], { stdio: 'pipe' });
  });
  afterAll(() => {
    if (certs) rmSync(join(certs, '..'), { recursive: true, force: true });
  });

  it('verifies the server by SNI and SAN, both the name it dials, with only the operator CA', () => {
    expect(xds.transport_socket.name).toBe('envoy.transport_sockets.tls');
    expect(tls['@type']).toBe(TLS_CONTEXT);
    expect(tls.sni).toBe(sock.address);
    const ctx = tls.common_tls_context;
    expect(ctx.alpn_protocols).toEqual(['h2']);
    expect(ctx.validation_context.match_typed_subject_alt_names).toEqual([{ san_type: 'DNS', matcher: { exact: sock.address } }]);
    expect(ctx.validation_context.trusted_ca.filename).toBe('/etc/envoy/tls/ca.crt');
    expect(ctx.tls_certificates).toEqual([
      { certificate_chain: { filename: '/etc/envoy/tls/tls.crt' }, private_key: { filename: '/etc/envoy/tls/tls.key' } },
    ]);
  });

  it('dials the control plane Service of the kustomize base by its cluster DNS name and xDS port', () => {
    const service = load('deploy/base/control-plane/service.yaml');
    const namespace = load('deploy/base/kustomization.yaml').namespace as string;
    expect(sock.address).toBe(`${service.metadata.name}.${namespace}.svc.cluster.local`);
    expect(service.spec.ports.find((p: Json) => p.name === 'xds').port).toBe(sock.port_value);
  });

  it('gets certificates from gen-dev-certs.sh that carry the right names and key usages', () => {
    const ca = new X509Certificate(readFileSync(join(certs, 'ca.crt')));
    expect(ca.ca).toBe(true);
    const server = new X509Certificate(readFileSync(join(certs, 'control-plane/tls.crt')));
    for (const name of [sock.address, tls.sni, 'control-plane', 'ebpf-xds-control-plane.ebpf-xds.svc']) {
      expect(server.checkHost(name), name).toBe(name);
    }
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // serverAuth only
    for (const client of ['agent', 'envoy']) {
      const cert = new X509Certificate(readFileSync(join(certs, client, 'tls.crt')));
      expect(cert.keyUsage, client).toEqual(['1.3.6.1.5.5.7.3.2']); // clientAuth only
      expect(cert.checkIssued(ca) && cert.verify(ca.publicKey), client).toBe(true);
      expect(readFileSync(join(certs, client, 'ca.crt'), 'utf8')).toBe(readFileSync(join(certs, 'ca.crt'), 'utf8'));
    }
    expect(server.checkIssued(ca) && server.verify(ca.publicKey)).toBe(true);
  });

  it('completes a mutual-TLS handshake with those certificates and refuses a client without one', async () => {
    const read = (f: string) => readFileSync(join(certs, f));
    const server = createServer({
      cert: read('control-plane/tls.crt'),
      key: read('control-plane/tls.key'),
      ca: read('control-plane/ca.crt'),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    });
    const clientNames: string[] = [];
    server.on('secureConnection', (s: TLSSocket) => {
      clientNames.push(String(s.getPeerCertificate().subject.CN));
      s.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const dial = (withCert: boolean) =>
      new Promise<string>((resolve, reject) => {
        const sock = connect({
          host: '127.0.0.1',
          port,
          servername: tls.sni as string, // what Envoy sends, and checks the certificate against
          ca: read('envoy/ca.crt'),
          ...(withCert ? { cert: read('envoy/tls.crt'), key: read('envoy/tls.key') } : {}),
          ALPNProtocols: ['h2'],
        });
        sock.on('secureConnect', () => {
          const alpn = String(sock.alpnProtocol);
          // TLS 1.3 reports a rejected client certificate after the handshake, on the first read.
          sock.on('data', () => undefined);
          sock.on('end', () => resolve(alpn));
        });
        sock.on('error', reject);
      });
    try {
      expect(await dial(true)).toBe('h2');
      expect(clientNames).toEqual(['ebpf-xds-envoy']);
      await expect(dial(false)).rejects.toThrow(/certificate/i);
      expect(clientNames).toEqual(['ebpf-xds-envoy']);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
