// The tls_inspector step of an SNI listener: reads from the (paused) downstream socket until the
// ClientHello parser has an answer, keeps every byte read so it can be forwarded upstream first,
// and pauses the socket again without consuming its end of stream. Like Envoy's
// listener_filters_timeout (15 s by default), inspection gives up after a timeout; unlike
// Envoy's default (continue_on_listener_filters_timeout: false), the connection then continues
// to the default chain, as a server-first protocol on an SNI port must.
import type { Socket } from 'node:net';
import { MAX_INSPECT_BYTES, parseClientHello } from './sni-parse.js';

export const DEFAULT_INSPECT_TIMEOUT_MS = 15_000;

/** Metric label values of exds_proxy_sni_total. */
export type SniOutcome = 'sni_found' | 'sni_not_found' | 'not_tls' | 'malformed' | 'too_large' | 'timeout' | 'closed';

export interface InspectResult {
  outcome: SniOutcome;
  /** Every byte read from the downstream, to forward upstream before anything else. */
  initial: Buffer;
  serverName?: string;
  alpn?: string[];
  ech?: boolean;
  /** Why the input was not a usable ClientHello. */
  detail?: string;
}

export function inspectClientHello(sock: Socket, timeoutMs = DEFAULT_INSPECT_TIMEOUT_MS): Promise<InspectResult> {
  return new Promise<InspectResult>((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    const finish = (r: Omit<InspectResult, 'initial'>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.pause();
      sock.removeListener('data', onData);
      sock.removeListener('end', onEnd);
      sock.removeListener('error', onError);
      sock.removeListener('close', onClose);
      resolve({ ...r, initial: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total) });
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      total += chunk.length;
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
      const r = parseClientHello(buf.length > MAX_INSPECT_BYTES ? buf.subarray(0, MAX_INSPECT_BYTES) : buf);
      switch (r.kind) {
        case 'incomplete':
          return;
        case 'tls':
          return finish(r.serverName !== undefined ? { outcome: 'sni_found', serverName: r.serverName, alpn: r.alpn, ech: r.ech } : { outcome: 'sni_not_found', alpn: r.alpn, ech: r.ech });
        default:
          return finish({ outcome: r.kind, detail: r.reason });
      }
    };
    // The client gave up (or half-closed) before a ClientHello was complete: Envoy closes such
    // connections during listener filter processing, and so do we.
    const onEnd = () => finish({ outcome: 'closed', detail: 'the client closed its side before the ClientHello was complete' });
    const onError = (e: NodeJS.ErrnoException) => finish({ outcome: 'closed', detail: `downstream ${e.code ?? e.message} during TLS inspection` });
    const onClose = () => finish({ outcome: 'closed', detail: 'the downstream closed during TLS inspection' });
    const timer = setTimeout(() => finish({ outcome: 'timeout', detail: `no complete ClientHello within ${timeoutMs} ms` }), timeoutMs);
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('error', onError);
    sock.once('close', onClose);
    sock.resume();
  });
}
