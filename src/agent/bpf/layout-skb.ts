// Codecs for the SKB splice structs of bpf/include/exds_maps.h (maps pinned under skb/).
import { defineStruct } from './struct-codec.js';

/** enum exds_pair_state */
export const PairState = { NONE: 0, ARMED: 1, BROKEN: 2 } as const;
export type PairStateValue = (typeof PairState)[keyof typeof PairState];

/** struct exds_skb_pair (skb_pairs value; key: u64 cookie of a spliced socket) */
export const SkbPair = defineStruct('exds_skb_pair', [
  ['peer_cookie', 'u64'],
  ['state', 'u32'],
  ['_pad', 'u32'],
] as const);

/** struct exds_skb_sock (skb_sock_stats value; key: u64 socket cookie) */
export const SkbSock = defineStruct('exds_skb_sock', [
  ['passed_bytes', 'u64'],
  ['redirected_bytes', 'u64'],
  ['passed_skbs', 'u64'],
  ['redirected_skbs', 'u64'],
] as const);

/** struct exds_skb_stats (skb_stats, per CPU, one element) */
export const SkbStats = defineStruct('exds_skb_stats', [
  ['socks_released', 'u64'],
  ['socks_cleaned', 'u64'],
  ['passed_bytes', 'u64'],
  ['passed_skbs', 'u64'],
  ['redirected_bytes', 'u64'],
  ['redirected_skbs', 'u64'],
  ['redirect_errors', 'u64'],
  ['unpaired_skbs', 'u64'],
  ['empty_skbs', 'u64'],
] as const);
