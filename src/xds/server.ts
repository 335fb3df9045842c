// Owns the xDS gRPC server: one grpc-js Server carrying ADS and the per-type discovery services
// (SotW and Delta each), optional TLS/mTLS, the stream registry behind status(), and the sweep
// that resets streams whose clients stopped reading. Protocol logic lives in sotw.ts/delta.ts.
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import type { SnapshotCache } from './cache.js';
import { DeltaStream } from './delta.js';
import { xdsMetrics, type XdsMetrics } from './metrics.js';
import { preloadRequestTypes, type RawRequest } from './requests.js';
import { serviceDefinition, xdsMethods, type XdsMethod } from './services.js';
import { SotwStream } from './sotw.js';
import type { ClientStatus } from './status.js';
import { XdsStream, type NodeGrouper, type StreamContext, type StreamLimits, type StreamTransport, type XdsCounters } from './stream.js';
import { serverCredentials, type XdsTls } from './tls.js';

export type { NodeInfo, Locality } from './requests.js';
export type { NodeGrouper, XdsCounters } from './stream.js';
export type { ClientStatus, TypeStatus } from './status.js';
export type { XdsTls } from './tls.js';

export interface XdsLimits {
  /** Resource names per request, and per stream and type (default 50,000). */
  maxNamesPerRequest?: number;
  /** Longest accepted resource name (default 1,024 characters). */
  maxNameLength?: number;
  /** Unflushed response bytes per stream before further responses wait (default 64 MiB). */
  maxQueuedBytesPerStream?: number;
  /** A stream with unflushed bytes and no progress for this long is reset (default 60 s). */
  stallTimeoutMs?: number;
  /** Largest request message accepted (default 8 MiB). */
  maxRequestBytes?: number;
  /** Resource types one stream may subscribe to (default 64). */
  maxTypesPerStream?: number;
}

export interface XdsServerOptions {
  cache: SnapshotCache;
  /**
   * Chooses a node group from the Node at a stream's first request, and again at regroup().
   * Default: every node in "default".
   */
  grouper?: NodeGrouper;
  logger?: Logger;
  /** prom-client registry for the xds_* metrics (a private one when absent). */
  registry?: Registry;
  tls?: XdsTls;
  limits?: XdsLimits;
}

const DEFAULT_LIMITS: Required<XdsLimits> = {
  maxNamesPerRequest: 50_000,
  maxNameLength: 1024,
  maxQueuedBytesPerStream: 64 * 1024 * 1024,
  stallTimeoutMs: 60_000,
  maxRequestBytes: 8 * 1024 * 1024,
  maxTypesPerStream: 64,
};

type Call = grpc.ServerDuplexStream<RawRequest, Buffer>;

export class XdsServer {
  readonly metrics: XdsMetrics;
  private readonly server: grpc.Server;
  private readonly streams = new Set<XdsStream>();
  private readonly ctx: StreamContext;
  private readonly logger: Logger;
  private readonly limits: Required<XdsLimits>;
  private readonly credentials: grpc.ServerCredentials;
  private sweepTimer: NodeJS.Timeout | null = null;
  private listening = false;
  private closing: Promise<void> | null = null;

  constructor(private readonly opts: XdsServerOptions) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'xds' });
    this.limits = { ...DEFAULT_LIMITS, ...definedOnly(opts.limits ?? {}) };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!Number.isFinite(v) || v <= 0) throw new Error(`xDS server limit ${k} must be a positive number, got ${v}`);
    }
    this.metrics = xdsMetrics(opts.registry ?? new Registry());
    opts.cache.bindMetrics(this.metrics);
    // Fails early, with a clear message, on bad certificates instead of at the first handshake.
    this.credentials = opts.tls ? serverCredentials(opts.tls) : grpc.ServerCredentials.createInsecure();
    preloadRequestTypes();
    const limits: StreamLimits = this.limits;
    this.ctx = {
      cache: opts.cache,
      counters: { responses: 0, acks: 0, nacks: 0, rejectedRequests: 0, slowStreamsCancelled: 0 },
      grouper: opts.grouper ?? (() => 'default'),
      metrics: this.metrics,
      logger: this.logger,
      limits,
      onClosed: (s) => this.streams.delete(s),
    };
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': this.limits.maxRequestBytes,
      'grpc.max_send_message_length': -1,
      // Find clients that vanished without closing their connection.
      'grpc.keepalive_time_ms': 60_000,
      'grpc.keepalive_timeout_ms': 20_000,
    });
    const byService = new Map<string, XdsMethod[]>();
    for (const m of xdsMethods()) {
      const list = byService.get(m.serviceName) ?? [];
      list.push(m);
      byService.set(m.serviceName, list);
    }
    for (const methods of byService.values()) {
      const impl: grpc.UntypedServiceImplementation = {};
      for (const m of methods) impl[m.methodName] = m.kind === 'fetch' ? this.fetchHandler(m, methods) : this.streamHandler(m);
      this.server.addService(serviceDefinition(methods), impl);
    }
  }

  /** Binds and starts serving. Returns the bound port (useful with port 0). */
  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    if (this.listening) throw new Error('the xDS server is already listening');
    const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
    const bound = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(address, this.credentials, (err, p) => {
        if (err) reject(new Error(`cannot listen for xDS on ${address}: ${err.message}`));
        else resolve(p);
      });
    });
    this.listening = true;
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(1000, this.limits.stallTimeoutMs / 4));
    this.sweepTimer.unref();
    this.logger.info({ address: host, port: bound, tls: !!this.opts.tls, mtls: !!this.opts.tls?.clientCa }, 'xDS server listening');
    return bound;
  }

  /** Ends every stream (UNAVAILABLE, so clients reconnect elsewhere) and stops the server. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** The cache the server reads snapshots from. */
  get cache(): SnapshotCache {
    return this.opts.cache;
  }

  /** One entry per open stream. */
  status(): ClientStatus[] {
    return [...this.streams].map((s) => s.status());
  }

  /**
   * Runs the grouper again for every open stream, after a config change that can alter which group
   * a node belongs to (the control plane calls it when the set of node selectors changed). Streams
   * whose group changed move to it and get exactly what differs from what their client holds
   * (XdsStream.regroup). Synchronous, so no response goes out between the new snapshots and the
   * move. Returns the number of streams that moved.
   */
  regroup(): number {
    let moved = 0;
    for (const s of [...this.streams]) if (s.regroup()) moved++;
    if (moved > 0) this.logger.info({ moved, streams: this.streams.size }, 'streams moved to new node groups');
    return moved;
  }

  /** The node groups open streams are in, with how many streams each; cheaper than status(). */
  groupsInUse(): Map<string, number> {
    const out = new Map<string, number>();
    for (const s of this.streams) if (s.group !== null) out.set(s.group, (out.get(s.group) ?? 0) + 1);
    return out;
  }

  /** Totals since start, plus the number of open streams. */
  stats(): XdsCounters & { streams: number } {
    return { ...this.ctx.counters, streams: this.streams.size };
  }

  private async shutdown(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    for (const s of [...this.streams]) s.shutdown('xDS server shutting down');
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      force.unref();
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    this.logger.info('xDS server stopped');
  }

  private sweep(): void {
    const now = Date.now();
    for (const s of this.streams) s.checkStalled(now);
  }

  private streamHandler(m: XdsMethod): grpc.handleBidiStreamingCall<unknown, Buffer> {
    return (rawCall) => {
      const call = rawCall as Call;
      if (this.closing) {
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'xDS server shutting down' });
        return;
      }
      const transport = grpcTransport(call, this.logger);
      const stream = m.kind === 'delta' ? new DeltaStream(m.label, m.typeUrl, transport, this.ctx) : new SotwStream(m.label, m.typeUrl, transport, this.ctx);
      this.streams.add(stream);
      call.on('data', (req: RawRequest) => stream.onRequest(req));
      call.on('end', () => {
        // The client half-closed: it will send nothing more, so the exchange is over.
        stream.close();
        call.end();
      });
      call.on('cancelled', () => stream.close());
      call.on('close', () => stream.close());
      call.on('error', (err: Error) => {
        this.logger.debug({ err, stream: stream.id }, 'xDS stream error');
        stream.close();
      });
    };
  }

  private fetchHandler(m: XdsMethod, siblings: readonly XdsMethod[]): grpc.handleUnaryCall<unknown, Buffer> {
    const streaming = siblings.filter((x) => x.kind !== 'fetch').map((x) => x.methodName);
    const details = `${m.serviceName}/${m.methodName} (polling) is not supported; use the streaming ${streaming.join(' or ')}, or ADS`;
    return (_call, callback) => {
      this.metrics.rejectedRequests.inc({ reason: 'fetch_unimplemented' });
      callback({ code: grpc.status.UNIMPLEMENTED, details });
    };
  }
}

/** Adapts a grpc-js bidi call to what a stream needs. */
function grpcTransport(call: Call, logger: Logger): StreamTransport {
  let peerCertificate: string | undefined;
  try {
    const cn = call.getAuthContext().sslPeerCertificate?.subject?.CN;
    if (cn) peerCertificate = Array.isArray(cn) ? cn.join(',') : cn;
  } catch {
    // Plaintext connections have no auth context to report.
  }
  return {
    peer: call.getPeer(),
    ...(peerCertificate !== undefined ? { peerCertificate } : {}),
    write(buf, done) {
      call.write(buf, done);
    },
    end(code, details) {
      call.emit('error', { code, details });
    },
    reset(details) {
      // A status would queue behind the unread data and never arrive, so reset the HTTP/2 stream
      // instead; grpc-js has no public API for it. ENHANCE_YOUR_CALM maps to RESOURCE_EXHAUSTED
      // in gRPC clients. If the internals ever change, fall back to a (queued) status.
      const h2 = (call as unknown as { call?: { stream?: Partial<http2.ServerHttp2Stream> } }).call?.stream;
      if (h2 && typeof h2.close === 'function' && 'session' in h2 && !h2.closed) {
        h2.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
        return;
      }
      logger.warn('cannot reset the HTTP/2 stream directly; ending it with a status instead');
      call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details });
    },
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
