// Owns the shape of the connected-clients view (GET /v1/nodes is built from it): one entry per
// open xDS stream, with per-type subscription, last response, ACK and last NACK.
import type { NodeInfo } from './requests.js';
import type { AckInfo, NackInfo, SentInfo } from './stream-state.js';

export interface TypeStatus {
  typeUrl: string;
  subscription: {
    wildcard: boolean;
    /** Number of explicitly named resources. */
    nameCount: number;
    /** Up to the first 100 explicitly named resources. */
    names: string[];
  };
  /** Resources the client holds as far as the server knows. */
  knownResources: number;
  /** The last response sent for this type. */
  lastSent: SentInfo | null;
  /** The last ACK: for SotW `version` is the client's version_info. */
  acked: AckInfo | null;
  /** The last NACK on this stream for this type; kept after later ACKs, for the record. */
  lastNack: NackInfo | null;
  /** True while a response awaits its ACK/NACK. */
  awaitingAck: boolean;
}

export interface ClientStatus {
  /** Unique per server process. */
  streamId: string;
  protocol: 'sotw' | 'delta';
  /** gRPC service: ads, lds, cds, eds, rds or sds. */
  service: string;
  /** Null until the first request arrives. */
  node: NodeInfo | null;
  /** The node group chosen for the node; null until the first request. */
  group: string | null;
  peer: string;
  /** Subject common name of the client certificate, when mTLS is on. */
  peerCertificate?: string;
  /** ISO 8601. */
  connectedAt: string;
  types: TypeStatus[];
}
