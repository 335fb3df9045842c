// Codecs for the shared key/value structs of bpf/include/exds_maps.h ("shared" section).
// Field order, names and types mirror the C structs; test/unit/bpf-layouts.test.ts checks them
// against the objects' BTF.
import { defineStruct } from './struct-codec.js';

/** struct exds_port_key */
export const PortKey = defineStruct('exds_port_key', [
  ['port', 'u16'],
  ['_pad', 'u16'],
] as const);

/** struct exds_port_val */
export const PortVal = defineStruct('exds_port_val', [['listener_id', 'u32']] as const);
