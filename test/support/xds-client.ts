// A raw xDS stream client for tests, built on @grpc/grpc-js and the Envoy protos: open ADS or
// per-type streams (SotW and Delta), send requests, await responses with timeouts, ACK/NACK, and
// assert that nothing arrives. Also a deliberately non-reading client (plain HTTP/2) for
// backpressure tests. Usable by any test that talks to an xDS server.
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { encodeJson, decodeToJson } from '../../src/proto/json.js';
import { protoRegistry } from '../../src/proto/registry.js';

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const METHODS = {
  ads: { sotw: `/${ADS_SERVICE}/StreamAggregatedResources`, delta: `/${ADS_SERVICE}/DeltaAggregatedResources` },
  lds: { sotw: '/envoy.service.listener.v3.ListenerDiscoveryService/StreamListeners', delta: '/envoy.service.listener.v3.ListenerDiscoveryService/DeltaListeners' },
  cds: { sotw: '/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters', delta: '/envoy.service.cluster.v3.ClusterDiscoveryService/DeltaClusters' },
  eds: { sotw: '/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints', delta: '/envoy.service.endpoint.v3.EndpointDiscoveryService/DeltaEndpoints' },
  rds: { sotw: '/envoy.service.route.v3.RouteDiscoveryService/StreamRoutes', delta: '/envoy.service.route.v3.RouteDiscoveryService/DeltaRoutes' },
} as const;
export type ServiceName = keyof typeof METHODS;

export interface NodeSpec {
  id: string;
  cluster?: string;
  metadata?: Record<string, unknown>;
  user_agent_name?: string;
}

export interface ReceivedResource {
  typeUrl: string;
  name: string;
  /** The encoded resource message (the Any's value). */
  bytes: Buffer;
  /** Delta only: the per-resource version. */
  version?: string;
  /** The resource as proto3 JSON with proto field names. */
  json(): Record<string, unknown>;
}

export interface SotwResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: ReceivedResource[];
  bytes: number;
}

export interface DeltaResponse {
  systemVersionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: ReceivedResource[];
  removed: string[];
  bytes: number;
}

export interface StreamEnd {
  code: number;
  details: string;
}

type Plain = Record<string, unknown>;

function received(typeUrl: string, value: Uint8Array, version?: string): ReceivedResource {
  const type = protoRegistry().typeForUrl(typeUrl);
  let name = '';
  if (type) {
    const msg = type.decode(value) as unknown as Plain;
    name = String(msg['name'] ?? msg['cluster_name'] ?? '');
  }
  const bytes = Buffer.from(value);
  const r: ReceivedResource = {
    typeUrl,
    name,
    bytes,
    json: () => decodeToJson(typeUrl.slice(typeUrl.lastIndexOf('/') + 1), bytes) as Record<string, unknown>,
  };
  if (version !== undefined) r.version = version;
  return r;
}

function decodeSotwResponse(buf: Buffer): SotwResponse {
  const t = protoRegistry().type('envoy.service.discovery.v3.DiscoveryResponse');
  const m = t.decode(buf) as unknown as Plain;
  const anys = (m['resources'] as Array<{ type_url: string; value: Uint8Array }> | undefined) ?? [];
  return {
    versionInfo: String(m['version_info'] ?? ''),
    typeUrl: String(m['type_url'] ?? ''),
    nonce: String(m['nonce'] ?? ''),
    resources: anys.map((a) => received(a.type_url, a.value)),
    bytes: buf.length,
  };
}

function decodeDeltaResponse(buf: Buffer): DeltaResponse {
  const t = protoRegistry().type('envoy.service.discovery.v3.DeltaDiscoveryResponse');
  const m = t.decode(buf) as unknown as Plain;
  const res = (m['resources'] as Array<{ name: string; version: string; resource?: { type_url: string; value: Uint8Array } | null }> | undefined) ?? [];
  return {
    systemVersionInfo: String(m['system_version_info'] ?? ''),
    typeUrl: String(m['type_url'] ?? ''),
    nonce: String(m['nonce'] ?? ''),
    resources: res.map((r) => {
      if (!r.resource) return { typeUrl: '', name: r.name, bytes: Buffer.alloc(0), version: r.version, json: () => ({}) };
      const rr = received(r.resource.type_url, r.resource.value, r.version);
      if (rr.name !== r.name) throw new Error(`delta Resource.name ${JSON.stringify(r.name)} differs from the resource's own name ${JSON.stringify(rr.name)}`);
      return rr;
    }),
    removed: (m['removed_resources'] as string[] | undefined) ?? [],
    bytes: buf.length,
  };
}

/** A queue of messages from a stream, with timeouts and a promise for the final status. */
class Inbox<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (v: T) => void; reject: (e: Error) => void } | null = null;
  private endStatus: StreamEnd | null = null;
  private readonly endWaiters: Array<(s: StreamEnd) => void> = [];

  push(item: T): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(item);
    } else this.items.push(item);
  }

  end(status: StreamEnd): void {
    if (this.endStatus) return;
    this.endStatus = status;
    for (const w of this.endWaiters.splice(0)) w(status);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(new Error(`stream ended (code ${status.code}: ${status.details}) while waiting for a response`));
    }
  }

  get pending(): number {
    return this.items.length;
  }

  next(timeoutMs: number, what: string): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.endStatus) return Promise.reject(new Error(`stream already ended (code ${this.endStatus.code}: ${this.endStatus.details})`));
    if (this.waiter) return Promise.reject(new Error('next() called twice concurrently'));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  async expectNone(ms: number, describe: (t: T) => string): Promise<void> {
    if (this.items.length > 0) throw new Error(`expected no response, but one is queued: ${describe(this.items[0] as T)}`);
    try {
      const got = await this.next(ms, 'response');
      throw new UnexpectedResponse(`expected no response within ${ms} ms, got ${describe(got)}`);
    } catch (err) {
      if (err instanceof UnexpectedResponse) throw err;
      if (!/^no response within/.test((err as Error).message)) throw err;
    }
  }

  ended(timeoutMs: number): Promise<StreamEnd> {
    if (this.endStatus) return Promise.resolve(this.endStatus);
    return new Promise<StreamEnd>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`stream did not end within ${timeoutMs} ms`)), timeoutMs);
      this.endWaiters.push((s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  }
}

class UnexpectedResponse extends Error {}

interface RawCall {
  write(b: Buffer): boolean;
  end(): void;
  cancel(): void;
  on(ev: 'data', f: (b: Buffer) => void): void;
  on(ev: 'status', f: (s: grpc.StatusObject) => void): void;
  on(ev: 'error', f: (e: Error) => void): void;
}

abstract class BaseStream<Resp> {
  protected readonly inbox = new Inbox<Resp>();
  protected nodeSent = false;

  constructor(
    protected readonly call: RawCall,
    protected readonly node: NodeSpec | null,
    decode: (b: Buffer) => Resp,
  ) {
    call.on('data', (b: Buffer) => {
      try {
        this.inbox.push(decode(b));
      } catch (err) {
        this.inbox.end({ code: -1, details: `client could not decode a response: ${(err as Error).message}` });
      }
    });
    call.on('status', (s) => this.inbox.end({ code: s.code, details: s.details }));
    call.on('error', () => {
      // The status event carries the code; errors are reported through ended().
    });
  }

  protected nodeField(): Plain {
    if (this.nodeSent || !this.node) return {};
    this.nodeSent = true;
    return { node: this.node };
  }

  /** Sends an already-encoded request (for malformed-input tests). */
  sendRaw(bytes: Uint8Array): void {
    this.call.write(Buffer.from(bytes));
  }

  /** Number of responses received and not yet taken. */
  get queued(): number {
    return this.inbox.pending;
  }

  /** Resolves with the stream's final gRPC status. */
  ended(timeoutMs = 5000): Promise<StreamEnd> {
    return this.inbox.ended(timeoutMs);
  }

  /** Half-closes the stream. */
  end(): void {
    this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }
}

export interface SotwRequestSpec {
  typeUrl: string;
  resourceNames?: string[];
  versionInfo?: string;
  responseNonce?: string;
  errorDetail?: { code?: number; message: string };
  node?: NodeSpec;
}

export class SotwStream extends BaseStream<SotwResponse> {
  private readonly names = new Map<string, string[]>();
  private readonly ackedVersion = new Map<string, string>();

  send(req: SotwRequestSpec): void {
    const json: Plain = {
      ...(req.node ? { node: req.node } : this.nodeField()),
      type_url: req.typeUrl,
      resource_names: req.resourceNames ?? [],
      version_info: req.versionInfo ?? '',
      response_nonce: req.responseNonce ?? '',
    };
    if (req.node) this.nodeSent = true;
    if (req.errorDetail) json['error_detail'] = { code: req.errorDetail.code ?? 3, message: req.errorDetail.message };
    this.names.set(req.typeUrl, req.resourceNames ?? []);
    this.call.write(Buffer.from(encodeJson('envoy.service.discovery.v3.DiscoveryRequest', json)));
  }

  /** Subscribes to `names` of a type (empty: wildcard on LDS/CDS), as a first request does. */
  subscribe(typeUrl: string, names: string[] = []): void {
    this.send({ typeUrl, resourceNames: names, versionInfo: this.ackedVersion.get(typeUrl) ?? '' });
  }

  next(timeoutMs = 5000): Promise<SotwResponse> {
    return this.inbox.next(timeoutMs, 'response');
  }

  /** Waits for the next response and checks its type. */
  async nextOf(typeUrl: string, timeoutMs = 5000): Promise<SotwResponse> {
    const r = await this.next(timeoutMs);
    if (r.typeUrl !== typeUrl) throw new Error(`expected a ${typeUrl} response, got ${r.typeUrl} (version ${r.versionInfo})`);
    return r;
  }

  expectNone(ms = 300): Promise<void> {
    return this.inbox.expectNone(ms, (r) => `${r.typeUrl} version ${r.versionInfo} with ${r.resources.length} resources`);
  }

  /** ACKs a response, keeping (or replacing) the subscribed names. */
  ack(resp: SotwResponse, names?: string[]): void {
    this.ackedVersion.set(resp.typeUrl, resp.versionInfo);
    this.send({ typeUrl: resp.typeUrl, versionInfo: resp.versionInfo, responseNonce: resp.nonce, resourceNames: names ?? this.names.get(resp.typeUrl) ?? [] });
  }

  /** NACKs a response: previous good version, the nonce, and error_detail. */
  nack(resp: SotwResponse, message: string, names?: string[]): void {
    this.send({
      typeUrl: resp.typeUrl,
      versionInfo: this.ackedVersion.get(resp.typeUrl) ?? '',
      responseNonce: resp.nonce,
      resourceNames: names ?? this.names.get(resp.typeUrl) ?? [],
      errorDetail: { code: 3, message },
    });
  }
}

export interface DeltaRequestSpec {
  typeUrl: string;
  subscribe?: string[];
  unsubscribe?: string[];
  initialResourceVersions?: Record<string, string>;
  responseNonce?: string;
  errorDetail?: { code?: number; message: string };
  node?: NodeSpec;
}

export class DeltaStream extends BaseStream<DeltaResponse> {
  send(req: DeltaRequestSpec): void {
    const json: Plain = {
      ...(req.node ? { node: req.node } : this.nodeField()),
      type_url: req.typeUrl,
      resource_names_subscribe: req.subscribe ?? [],
      resource_names_unsubscribe: req.unsubscribe ?? [],
      initial_resource_versions: req.initialResourceVersions ?? {},
      response_nonce: req.responseNonce ?? '',
    };
    if (req.node) this.nodeSent = true;
    if (req.errorDetail) json['error_detail'] = { code: req.errorDetail.code ?? 3, message: req.errorDetail.message };
    this.call.write(Buffer.from(encodeJson('envoy.service.discovery.v3.DeltaDiscoveryRequest', json)));
  }

  next(timeoutMs = 5000): Promise<DeltaResponse> {
    return this.inbox.next(timeoutMs, 'response');
  }

  async nextOf(typeUrl: string, timeoutMs = 5000): Promise<DeltaResponse> {
    const r = await this.next(timeoutMs);
    if (r.typeUrl !== typeUrl) throw new Error(`expected a ${typeUrl} response, got ${r.typeUrl}`);
    return r;
  }

  expectNone(ms = 300): Promise<void> {
    return this.inbox.expectNone(ms, (r) => `${r.typeUrl} with ${r.resources.length} resources, removed [${r.removed.join(', ')}]`);
  }

  ack(resp: DeltaResponse): void {
    this.send({ typeUrl: resp.typeUrl, responseNonce: resp.nonce });
  }

  nack(resp: DeltaResponse, message: string): void {
    this.send({ typeUrl: resp.typeUrl, responseNonce: resp.nonce, errorDetail: { code: 3, message } });
  }
}

export interface XdsClientOptions {
  credentials?: grpc.ChannelCredentials;
  /** Sent on the first request of each stream. */
  node?: NodeSpec;
  channelOptions?: grpc.ChannelOptions;
}

/** One gRPC channel to an xDS server; opens any number of streams on it. */
export class XdsTestClient {
  private readonly client: grpc.Client;
  private readonly node: NodeSpec | null;
  private readonly calls: RawCall[] = [];

  constructor(address: string, opts: XdsClientOptions = {}) {
    this.client = new grpc.Client(address, opts.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      ...opts.channelOptions,
    });
    this.node = opts.node ?? null;
  }

  /** Resolves once the channel is connected (or rejects after the timeout, e.g. a refused TLS handshake). */
  waitReady(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()));
    });
  }

  private open(path: string): RawCall {
    const call = this.client.makeBidiStreamRequest(path, (b: Buffer) => b, (b: Buffer) => b) as unknown as RawCall;
    this.calls.push(call);
    return call;
  }

  /** A SotW stream: ADS by default, or a per-type service. */
  sotw(service: ServiceName = 'ads', node: NodeSpec | null = this.node): SotwStream {
    return new SotwStream(this.open(METHODS[service].sotw), node, decodeSotwResponse);
  }

  /** A Delta stream: ADS by default, or a per-type service. */
  delta(service: ServiceName = 'ads', node: NodeSpec | null = this.node): DeltaStream {
    return new DeltaStream(this.open(METHODS[service].delta), node, decodeDeltaResponse);
  }

  /** A unary call (for the Fetch* methods). */
  unary(path: string, request: Uint8Array, timeoutMs = 5000): Promise<{ ok: Buffer } | { error: StreamEnd }> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(request),
        { deadline: Date.now() + timeoutMs },
        (err: grpc.ServiceError | null, res?: Buffer) => resolve(err ? { error: { code: err.code, details: err.details } } : { ok: res as Buffer }),
      );
    });
  }

  close(): void {
    for (const c of this.calls) c.cancel();
    this.client.close();
  }
}

/** Encodes a DiscoveryRequest from proto3 JSON (snake_case names), for raw sends. */
export function encodeSotwRequest(json: Plain): Uint8Array {
  return encodeJson('envoy.service.discovery.v3.DiscoveryRequest', json);
}

/**
 * Opens a gRPC stream over plain HTTP/2, sends one request and then never reads: the client's
 * flow-control window fills and the server's writes stop completing. `closed` resolves with the
 * HTTP/2 RST_STREAM code (or the gRPC status) when the server gives up on the stream.
 */
export async function openNonReadingStream(
  address: string,
  path: string,
  request: Uint8Array,
): Promise<{ closed: Promise<{ rstCode: number; grpcStatus?: string }>; destroy(): void }> {
  const session = http2.connect(`http://${address}`, { settings: { initialWindowSize: 65535 } });
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  session.on('error', () => {
    // The server may reset the session; the stream's close event reports it.
  });
  const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(request.length, 1);
  Buffer.from(request).copy(frame, 5);
  req.write(frame);
  req.pause(); // never read: no 'data' listener, no resume
  let grpcStatus: string | undefined;
  req.on('trailers', (t) => {
    grpcStatus = String(t['grpc-status']);
  });
  req.on('error', () => {
    // RST_STREAM surfaces as an error; `closed` carries the code.
  });
  const closed = new Promise<{ rstCode: number; grpcStatus?: string }>((resolve) => {
    req.on('close', () => resolve(grpcStatus === undefined ? { rstCode: req.rstCode ?? -1 } : { rstCode: req.rstCode ?? -1, grpcStatus }));
  });
  return {
    closed,
    destroy: () => {
      req.destroy();
      session.destroy();
    },
  };
}
