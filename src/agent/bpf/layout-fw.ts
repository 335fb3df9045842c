// Codecs for the XDP drop-rule structs of bpf/include/exds_maps.h (maps pinned under
// firewall/<ifname>/).
import { defineStruct } from './struct-codec.js';

/** struct exds_fw_key: LPM key, data = destination port (network order, 0 = any) + source address. */
export const FwKey = defineStruct('exds_fw_key', [
  ['prefixlen', 'u32'],
  ['port_be', 'be16'],
  ['addr', { bytes: 16 }],
  ['_pad', { bytes: 2 }],
] as const);

/** Bits of the LPM data before the address: the port. */
export const FW_PORT_BITS = 16;

/** struct exds_fw_rule */
export const FwRule = defineStruct('exds_fw_rule', [['index', 'u32']] as const);

/** struct exds_fw_counter (fw_counters, per CPU, one per rule) */
export const FwCounter = defineStruct('exds_fw_counter', [
  ['packets', 'u64'],
  ['bytes', 'u64'],
] as const);

/** struct exds_fw_stats (fw_stats, per CPU, one element) */
export const FwStats = defineStruct('exds_fw_stats', [
  ['passed', 'u64'],
  ['dropped', 'u64'],
  ['not_ip', 'u64'],
  ['malformed', 'u64'],
] as const);
