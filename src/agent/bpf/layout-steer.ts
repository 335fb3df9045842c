// Codecs for the sk_lookup steering structs of bpf/include/exds_maps.h (maps pinned under steer/).
import { defineStruct } from './struct-codec.js';

/** struct exds_steer_key: local address (all zero = any), port (host order), IP protocol. */
export const SteerKey = defineStruct('exds_steer_key', [
  ['addr', { bytes: 16 }],
  ['port', 'u16'],
  ['proto', 'u8'],
  ['_pad', 'u8'],
] as const);

/** struct exds_steer_val */
export const SteerVal = defineStruct('exds_steer_val', [['slot', 'u32']] as const);

/** struct exds_steer_stats (steer_stats, per CPU, one element) */
export const SteerStats = defineStruct('exds_steer_stats', [
  ['matched', 'u64'],
  ['assigned', 'u64'],
  ['no_socket', 'u64'],
  ['assign_errors', 'u64'],
] as const);
