// The arithmetic of XDP splice pairing (docs/xdp-splice.md): whether two proxied TCP legs can be
// spliced at all (negotiated options, window scales, MSS), and the two xdp_conns entries that
// turn one leg's packets into the other's. Pure code: facts in, entries out.
//
// Naming: the downstream leg is client C <-> proxy socket M1, the upstream leg is proxy socket
// M2 <-> server S. "c2s" is the entry for packets C sends to M1, rewritten into M2 -> S; "s2c"
// the reverse. All sequence and timestamp values are u32 and wrap (RFC 1982 arithmetic).
import { isV4Mapped, ipToBytes } from '../bpf/ip-bytes.js';
import { XdpFlag, XdpState, type XdpConn, type XdpKey } from '../bpf/layout-xdp.js';
import type { ValueOf } from '../bpf/struct-codec.js';

export type XdpKeyValue = ValueOf<typeof XdpKey>;
export type XdpConnValue = ValueOf<typeof XdpConn>;

/** tcpi_options bits (uapi/linux/tcp.h). */
export const TcpiOpt = { TIMESTAMPS: 1, SACK: 2, WSCALE: 4, ECN: 8 } as const;
/** Bytes the timestamp option takes in every segment (NOP, NOP, TS), RFC 7323 appendix A. */
export const TS_OPTION_BYTES = 12;

/** What TCP_INFO says about one leg, from the proxy socket's point of view. */
export interface LegCaps {
  /** tcpi_options */
  options: number;
  /** tcpi_snd_wscale: the shift the peer announced (it scales the windows the peer sends). */
  sndWscale: number;
  /** tcpi_rcv_wscale: the shift this socket announced (the peer scales our windows by it). */
  rcvWscale: number;
  /** tcpi_snd_mss: payload this socket puts in a segment to the peer (options deducted). */
  sndMss: number;
  /** tcpi_advmss: the MSS this socket announced to the peer. */
  advmss: number;
}

export type WscalePolicy = 'rescale' | 'fallback';

export type Compatibility =
  | { ok: true; timestamps: boolean; rescale: boolean }
  | { ok: false; reason: string };

/**
 * Can these legs be spliced? Options must match on both legs (a peer must never see an option it
 * did not negotiate), segments one peer may send must fit the other leg, and window fields must
 * mean the same on both legs, or be rescaled when the policy allows it.
 */
export function checkCompatible(down: LegCaps, up: LegCaps, policy: WscalePolicy = 'rescale'): Compatibility {
  const both = (bit: number) => [(down.options & bit) !== 0, (up.options & bit) !== 0] as const;
  for (const [bit, name] of [
    [TcpiOpt.TIMESTAMPS, 'timestamps'],
    [TcpiOpt.SACK, 'SACK'],
    [TcpiOpt.ECN, 'ECN'],
  ] as const) {
    const [d, u] = both(bit);
    if (d !== u) return { ok: false, reason: `${name} negotiated on the ${d ? 'client' : 'server'} leg only` };
  }
  const timestamps = (down.options & TcpiOpt.TIMESTAMPS) !== 0;
  const optBytes = timestamps ? TS_OPTION_BYTES : 0;
  // The client's segments are at most the MSS M1 announced; they must fit what M2 may send to
  // S (S's MSS and the path MTU, both folded into M2's send MSS). Likewise the other way.
  const c2sMax = down.advmss - optBytes;
  const s2cMax = up.advmss - optBytes;
  if (c2sMax > up.sndMss) return { ok: false, reason: `MSS: the client may send ${c2sMax}-byte segments, the server leg carries ${up.sndMss}` };
  if (s2cMax > down.sndMss) return { ok: false, reason: `MSS: the server may send ${s2cMax}-byte segments, the client leg carries ${down.sndMss}` };
  // C's window fields are scaled by the shift C announced (down.sndWscale); S reads them with the
  // shift M2 announced (up.rcvWscale). And the other way round.
  const rescale = down.sndWscale !== up.rcvWscale || up.sndWscale !== down.rcvWscale;
  if (rescale && policy === 'fallback') {
    return {
      ok: false,
      reason: `window scale: client ${down.sndWscale} vs proxy-to-server ${up.rcvWscale}, server ${up.sndWscale} vs proxy-to-client ${down.rcvWscale}`,
    };
  }
  return { ok: true, timestamps, rescale };
}

export interface Endpoint {
  address: string;
  port: number;
}

/** One proxy socket, frozen in TCP repair mode, and what XDP learned about its peer. */
export interface FrozenLeg {
  local: Endpoint;
  remote: Endpoint;
  caps: LegCaps;
  /** TCP_QUEUE_SEQ of the send queue (write_seq; = snd_nxt with an empty queue). */
  sndNxt: number;
  /** TCP_QUEUE_SEQ of the receive queue (rcv_nxt). */
  rcvNxt: number;
  /** TCP_TIMESTAMP: the TSval this socket would send now. */
  tsNow: number;
  /** The peer's latest TSval, recorded by XDP in LEARN/HOLD; undefined when none was seen. */
  peerTsval: number | undefined;
}

export interface PlannedEntry {
  key: XdpKeyValue;
  conn: XdpConnValue;
}

export type Plan = { ok: true; c2s: PlannedEntry; s2c: PlannedEntry } | { ok: false; reason: string; retry: boolean };

const u32 = (x: number) => x >>> 0;

function addr(e: Endpoint, what: string): Uint8Array {
  const b = ipToBytes(e.address);
  if (!isV4Mapped(b)) throw new Error(`${what} ${e.address} is IPv6: XDP splice rewrites IPv4 only`);
  return b;
}

/** The xdp_conns key of packets a peer sends to a proxy socket. */
export function keyOf(leg: { local: Endpoint; remote: Endpoint }): XdpKeyValue {
  return { saddr: addr(leg.remote, 'peer'), daddr: addr(leg.local, 'proxy address'), sport_be: leg.remote.port, dport_be: leg.local.port };
}

/** An entry with no rewrite yet (LEARN or HOLD). */
export function blankConn(state: number, opts: { idleMs: number; ownerId: number; nowNs: bigint }): XdpConnValue {
  return {
    state,
    flags: 0,
    new_saddr: new Uint8Array(16),
    new_daddr: new Uint8Array(16),
    new_sport_be: 0,
    new_dport_be: 0,
    seq_delta: 0,
    ack_delta: 0,
    tsval_delta: 0,
    tsecr_delta: 0,
    wscale_in: 0,
    wscale_out: 0,
    idle_ms: opts.idleMs,
    owner_id: opts.ownerId,
    tsval_last: 0,
    events: 0,
    fin_ack: 0,
    last_seen_ns: opts.nowNs,
    packets: 0n,
    bytes: 0n,
  };
}

/**
 * The two ACTIVE entries for frozen legs. Sequence numbers: C's byte at M1's rcv_nxt becomes
 * M2's byte at snd_nxt, so seq(c2s) = snd_nxt(M2) - rcv_nxt(M1); acknowledgments and SACK edges
 * travel the other way and take the reverse offset, negated. Timestamps: C's clock is shifted
 * onto M2's (S must see TSvals that continue M2's, RFC 7323 5.3 PAWS), and echoes shifted back.
 */
export function planEntries(
  down: FrozenLeg,
  up: FrozenLeg,
  compat: Extract<Compatibility, { ok: true }>,
  opts: { idleMs: number; ownerId: number; nowNs: bigint },
): Plan {
  let tsC2s = 0;
  let tsS2c = 0;
  if (compat.timestamps) {
    if (down.peerTsval === undefined || up.peerTsval === undefined) {
      return { ok: false, retry: true, reason: `no TSval learned yet from the ${down.peerTsval === undefined ? 'client' : 'server'}` };
    }
    tsC2s = u32(up.tsNow - down.peerTsval);
    tsS2c = u32(down.tsNow - up.peerTsval);
  }
  const seqC2s = u32(up.sndNxt - down.rcvNxt);
  const seqS2c = u32(down.sndNxt - up.rcvNxt);
  const flags = (compat.timestamps ? XdpFlag.TS : 0) | (compat.rescale ? XdpFlag.RESCALE : 0);
  const entry = (from: FrozenLeg, to: FrozenLeg, seq: number, ack: number, tsval: number, tsecr: number): PlannedEntry => ({
    key: keyOf(from),
    conn: {
      ...blankConn(XdpState.ACTIVE, opts),
      flags,
      new_saddr: addr(to.local, 'proxy address'),
      new_daddr: addr(to.remote, 'peer'),
      new_sport_be: to.local.port,
      new_dport_be: to.remote.port,
      seq_delta: seq,
      ack_delta: ack,
      tsval_delta: tsval,
      tsecr_delta: tsecr,
      // Window fields from `from`'s peer are scaled by the shift it announced; the receiving
      // peer reads them with the shift `to` announced to it.
      wscale_in: from.caps.sndWscale,
      wscale_out: to.caps.rcvWscale,
    },
  });
  return {
    ok: true,
    c2s: entry(down, up, seqC2s, u32(-seqS2c), tsC2s, u32(-tsS2c)),
    s2c: entry(up, down, seqS2c, u32(-seqC2s), tsS2c, u32(-tsC2s)),
  };
}
