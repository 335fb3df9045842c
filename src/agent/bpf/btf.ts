// Struct layouts read from BTF (an object's own, or the kernel's vmlinux BTF), so that the
// TypeScript codecs can be checked against what the compiler actually laid out.
import { BpfError } from './errors.js';
import { libbpf, readMemory, type BtfPtr } from './libbpf.js';
import type { StructCodec, FieldList } from './struct-codec.js';

const BTF_KIND_STRUCT = 4;

export interface BtfMember {
  name: string;
  /** Offset in bytes (bitfields: offset of the containing byte). */
  offset: number;
  /** Size in bytes of the member's type (0 for bitfields). */
  size: number;
  bitfieldSize?: number;
}

export interface BtfStruct {
  name: string;
  size: number;
  members: BtfMember[];
}

export function readBtfStruct(btf: BtfPtr, name: string): BtfStruct | undefined {
  const lib = libbpf();
  const id = lib.btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);
  if (id < 0) return undefined;
  const t = lib.btf__type_by_id(btf, id);
  if (!t) return undefined;
  const head = readMemory(t, 12);
  const info = head.readUInt32LE(4);
  const vlen = info & 0xffff;
  const kflag = info >>> 31 === 1;
  const size = head.readUInt32LE(8);
  const raw = readMemory(t + 12n, vlen * 12);
  const members: BtfMember[] = [];
  for (let i = 0; i < vlen; i++) {
    const nameOff = raw.readUInt32LE(i * 12);
    const typeId = raw.readUInt32LE(i * 12 + 4);
    const off = raw.readUInt32LE(i * 12 + 8);
    const bitOffset = kflag ? off & 0xffffff : off;
    const bitfieldSize = kflag ? off >>> 24 : 0;
    const msize = bitfieldSize ? 0 : Number(lib.btf__resolve_size(btf, typeId));
    members.push({
      name: lib.btf__name_by_offset(btf, nameOff) ?? '',
      offset: Math.floor(bitOffset / 8),
      size: msize,
      ...(bitfieldSize ? { bitfieldSize } : {}),
    });
  }
  return { name, size, members };
}

/** The running kernel's BTF; call free() when done. */
export function vmlinuxBtf(): { btf: BtfPtr; free: () => void } {
  const btf = libbpf().btf__load_vmlinux_btf();
  if (!btf) throw new BpfError({ what: 'load vmlinux BTF', errno: 2, reason: 'not found', remedy: 'the kernel needs CONFIG_DEBUG_INFO_BTF=y (/sys/kernel/btf/vmlinux)' });
  return { btf, free: () => libbpf().btf__free(btf) };
}

/**
 * Differences between a codec and the struct in BTF: size, member names and offsets, member
 * sizes. Empty when they agree.
 */
export function compareWithBtf(codec: StructCodec<FieldList>, s: BtfStruct | undefined, cName = codec.name): string[] {
  if (!s) return [`struct ${cName} is not in the BTF`];
  const problems: string[] = [];
  if (s.size !== codec.size) problems.push(`struct ${cName}: size ${s.size} in BTF, ${codec.size} in the codec`);
  const names = codec.fields.map((f) => f.name);
  const btfNames = s.members.map((m) => m.name);
  if (names.join(',') !== btfNames.join(',')) problems.push(`struct ${cName}: members [${btfNames.join(', ')}] in BTF, [${names.join(', ')}] in the codec`);
  for (const f of codec.fields) {
    const m = s.members.find((x) => x.name === f.name);
    if (!m) continue;
    if (m.offset !== f.offset) problems.push(`struct ${cName}.${f.name}: offset ${m.offset} in BTF, ${f.offset} in the codec`);
    if (m.size !== f.size) problems.push(`struct ${cName}.${f.name}: size ${m.size} in BTF, ${f.size} in the codec`);
  }
  return problems;
}
