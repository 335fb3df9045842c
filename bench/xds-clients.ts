// Simulated ADS clients for bench/xds.ts, in their own process (forked with an IPC channel).
// Each client has its own HTTP/2 connection, a distinct node id (optionally a zone label in its
// node metadata) and one ADS stream (SotW or Delta), subscribes to CDS (wildcard) and to the CLAs
// of every cluster, and ACKs each response as soon as it arrives, as Envoy does. Responses are parsed only as far as an ACK needs (version, nonce, type), so the
// client side stays cheap and the measurement is about the server.
import * as grpc from '@grpc/grpc-js';
import { concatFields, lenField, stringField } from '../src/xds/wire.js';
import { TypeUrl } from '../src/xds/resources.js';

export interface StartCommand {
  cmd: 'start';
  address: string;
  clients: number;
  clusters: number;
  protocol: 'sotw' | 'delta';
  /** Client i carries node metadata zone "z<i % zones>" (none when 0), for node selectors to match. */
  zones?: number;
}
export type ParentMessage = StartCommand | { cmd: 'cpu' } | { cmd: 'stop' };
export type ChildMessage =
  | { event: 'opened'; streams: number; ms: number }
  | { event: 'cpu'; userMs: number; systemMs: number; rssMb: number }
  | { event: 'error'; message: string };

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const send = (m: ChildMessage): void => void process.send?.(m);

// DiscoveryRequest: version_info 1, node 2, resource_names 3, type_url 4, response_nonce 5.
// DeltaDiscoveryRequest: node 1, type_url 2, resource_names_subscribe 3, response_nonce 6.
// Node: id 1, cluster 2, metadata 3 (Struct: fields 1, a map entry of key 1 and Value 2, whose
// string_value is 3).
function nodeField(field: number, id: string, zone: string | null): Buffer {
  const parts = [stringField(1, id), stringField(2, 'bench')];
  if (zone !== null) parts.push(lenField(3, lenField(1, concatFields([stringField(1, 'zone'), lenField(2, stringField(3, zone))]))));
  return lenField(field, concatFields(parts));
}

interface Parsed {
  version: string;
  typeUrl: string;
  nonce: string;
}

/** Reads fields 1 (version), 4 (type_url) and 5 (nonce) of a (Delta)DiscoveryResponse. */
function parseResponse(buf: Buffer): Parsed {
  let o = 0;
  const out: Parsed = { version: '', typeUrl: '', nonce: '' };
  const varint = (): number => {
    let r = 0;
    let mul = 1;
    for (;;) {
      const b = buf[o++] as number;
      r += (b & 0x7f) * mul;
      if (b < 0x80) return r;
      mul *= 128;
    }
  };
  while (o < buf.length) {
    const tag = varint();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (wt === 0) {
      varint();
      continue;
    }
    if (wt !== 2) throw new Error(`unexpected wire type ${wt}`);
    const len = varint();
    if (field === 1) out.version = buf.toString('utf8', o, o + len);
    else if (field === 4) out.typeUrl = buf.toString('utf8', o, o + len);
    else if (field === 5) out.nonce = buf.toString('utf8', o, o + len);
    o += len;
  }
  return out;
}

async function start(c: StartCommand): Promise<grpc.Client[]> {
  const t0 = Date.now();
  const clusterNames = Array.from({ length: c.clusters }, (_, i) => `cluster-${i}`);
  // The names field is the same in every request of every client: encode it once.
  const namesField = concatFields(clusterNames.map((n) => stringField(3, n)));
  const cdsType = stringField(c.protocol === 'sotw' ? 4 : 2, TypeUrl.Cluster);
  const edsType = stringField(c.protocol === 'sotw' ? 4 : 2, TypeUrl.ClusterLoadAssignment);
  const wildcard = stringField(3, '*');
  const clients: grpc.Client[] = [];
  for (let i = 0; i < c.clients; i++) {
    // A local subchannel pool gives every client its own TCP connection, like separate Envoys.
    const client = new grpc.Client(c.address, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': -1,
    });
    clients.push(client);
    const id = (b: Buffer): Buffer => b;
    const call = client.makeBidiStreamRequest(`${ADS}/${c.protocol === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources'}`, id, id);
    call.on('error', (err: Error) => {
      if (!/Cancelled|CANCELLED/.test(err.message)) send({ event: 'error', message: `client ${i}: ${err.message}` });
    });
    const zone = c.zones ? `z${i % c.zones}` : null;
    if (c.protocol === 'sotw') {
      call.write(concatFields([nodeField(2, `bench-${i}`, zone), cdsType, wildcard]));
      call.write(concatFields([edsType, namesField]));
      call.on('data', (buf: Buffer) => {
        const r = parseResponse(buf);
        const names = r.typeUrl === TypeUrl.Cluster ? wildcard : namesField;
        call.write(concatFields([stringField(1, r.version), names, stringField(4, r.typeUrl), stringField(5, r.nonce)]));
      });
    } else {
      call.write(concatFields([nodeField(1, `bench-${i}`, zone), cdsType, wildcard]));
      call.write(concatFields([edsType, namesField]));
      call.on('data', (buf: Buffer) => {
        const r = parseResponse(buf);
        call.write(concatFields([stringField(2, r.typeUrl), stringField(6, r.nonce)]));
      });
    }
    // Yield now and then so connections are set up while we keep opening more.
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  send({ event: 'opened', streams: c.clients, ms: Date.now() - t0 });
  return clients;
}

let clients: grpc.Client[] = [];
process.on('message', (m: ParentMessage) => {
  if (m.cmd === 'start') {
    start(m)
      .then((c) => (clients = c))
      .catch((err: Error) => send({ event: 'error', message: err.stack ?? err.message }));
  } else if (m.cmd === 'cpu') {
    const u = process.cpuUsage();
    send({ event: 'cpu', userMs: u.user / 1000, systemMs: u.system / 1000, rssMb: process.memoryUsage().rss / 2 ** 20 });
  } else if (m.cmd === 'stop') {
    for (const c of clients) c.close();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
