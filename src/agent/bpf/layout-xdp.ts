// Codecs for the XDP splice structs of bpf/include/exds_xdp_maps.h (maps pinned under xdp/).
// Field order, names and types mirror the C structs; test/unit/xdp-splice-prog.test.ts checks
// them against the objects' BTF.
import { defineStruct } from './struct-codec.js';

/** struct exds_xdp_key: one direction of a connection as it arrives (addresses IPv4-mapped). */
export const XdpKey = defineStruct('exds_xdp_key', [
  ['saddr', { bytes: 16 }],
  ['daddr', { bytes: 16 }],
  ['sport_be', 'be16'],
  ['dport_be', 'be16'],
] as const);

/** enum exds_xdp_state */
export const XdpState = { LEARN: 1, HOLD: 2, ACTIVE: 3 } as const;
export type XdpStateValue = (typeof XdpState)[keyof typeof XdpState];
export const XDP_STATE_NAMES: Record<number, string> = { 1: 'learn', 2: 'hold', 3: 'active' };

/** EXDS_XDP_F_*: written by user space. */
export const XdpFlag = { TS: 0x1, RESCALE: 0x2 } as const;

/** EXDS_XDP_E_*: written by BPF. */
export const XdpEvent = { TS_SEEN: 0x1, FIN: 0x2, FIN_ACKED: 0x4, PEER_FIN: 0x8, PEER_FIN_ACKED: 0x10, NO_NEIGH: 0x20 } as const;

/** struct exds_xdp_conn (xdp_conns value) */
export const XdpConn = defineStruct('exds_xdp_conn', [
  ['state', 'u32'],
  ['flags', 'u32'],
  ['new_saddr', { bytes: 16 }],
  ['new_daddr', { bytes: 16 }],
  ['new_sport_be', 'be16'],
  ['new_dport_be', 'be16'],
  ['seq_delta', 'u32'],
  ['ack_delta', 'u32'],
  ['tsval_delta', 'u32'],
  ['tsecr_delta', 'u32'],
  ['wscale_in', 'u8'],
  ['wscale_out', 'u8'],
  ['_pad0', 'u16'],
  ['idle_ms', 'u32'],
  ['owner_id', 'u32'],
  ['tsval_last', 'u32'],
  ['events', 'u32'],
  ['fin_ack', 'u32'],
  ['_pad1', 'u32'],
  ['last_seen_ns', 'u64'],
  ['packets', 'u64'],
  ['bytes', 'u64'],
] as const);

/** struct exds_xdp_stats (xdp_stats, per CPU, one element) */
export const XdpStats = defineStruct('exds_xdp_stats', [
  ['spliced_packets', 'u64'],
  ['spliced_bytes', 'u64'],
  ['learned', 'u64'],
  ['hold_dropped', 'u64'],
  ['hold_passed', 'u64'],
  ['fins', 'u64'],
  ['closed_fin', 'u64'],
  ['closed_rst', 'u64'],
  ['closed_syn', 'u64'],
  ['drop_fib', 'u64'],
  ['drop_no_neigh', 'u64'],
  ['neigh_slowpath', 'u64'],
  ['neigh_redirected', 'u64'],
  ['drop_frag_needed', 'u64'],
  ['drop_egress', 'u64'],
  ['pass_fragment', 'u64'],
  ['pass_malformed', 'u64'],
  ['pass_unparsed', 'u64'],
  ['ts_missing', 'u64'],
  ['guard_dropped', 'u64'],
] as const);

/** struct exds_xdp_meta: XDP metadata of a spliced packet on the TC neighbour path. */
export const XdpMeta = defineStruct('exds_xdp_meta', [
  ['magic', 'u32'],
  ['ifindex', 'u32'],
] as const);
export const XDP_META_MAGIC = 0x58445350;

/** struct exds_fwd_stats (fwd_stats of bpf/xdp_fwd.bpf.c, per CPU, one element) */
export const FwdStats = defineStruct('exds_fwd_stats', [
  ['forwarded', 'u64'],
  ['passed', 'u64'],
  ['dropped', 'u64'],
] as const);
