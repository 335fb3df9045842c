// C struct codecs: a struct is declared once as an ordered field list, and the codec computes
// the C layout (natural alignment, trailing padding) and converts between Buffers and plain
// objects. Used for BPF map keys and values (mirroring bpf/include/exds_maps.h) and for the
// option structs passed to libbpf. Pure code: no I/O. Little-endian hosts only (x86_64, arm64),
// like the BPF programs' own view of host-order fields.

export type Scalar = 'u8' | 'u16' | 'u32' | 'i32' | 'u64' | 'be16' | 'be32';
/** `{ bytes: n }` is a byte array (`__u8 x[n]`), decoded as a Buffer copy. */
export type FieldSpec = Scalar | { readonly bytes: number };
export type FieldList = readonly (readonly [string, FieldSpec])[];

type FieldValue<F> = F extends 'u64' ? bigint : F extends { bytes: number } ? Uint8Array : number;

/** The JS shape of a struct: every field except padding (names starting with `_`). */
export type StructValue<FL extends FieldList> = {
  [E in FL[number] as E[0] extends `_${string}` ? never : E[0]]: FieldValue<E[1]>;
};

export interface FieldLayout {
  name: string;
  spec: FieldSpec;
  offset: number;
  size: number;
}

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, u16: 2, u32: 4, i32: 4, u64: 8, be16: 2, be32: 4 };

function sizeOf(spec: FieldSpec): number {
  return typeof spec === 'string' ? SCALAR_SIZE[spec] : spec.bytes;
}
function alignOf(spec: FieldSpec): number {
  return typeof spec === 'string' ? SCALAR_SIZE[spec] : 1;
}

/** What maps need from a codec: its size and the two conversions. */
export interface Codec<T> {
  readonly name: string;
  readonly size: number;
  readonly fields: readonly FieldLayout[];
  encode(value: T): Buffer;
  decode(buf: Uint8Array, base?: number): T;
}

/** The JS value type a codec produces. */
export type ValueOf<C> = C extends Codec<infer T> ? T : never;

export class StructCodec<FL extends FieldList> implements Codec<StructValue<FL>> {
  readonly size: number;
  readonly align: number;
  readonly fields: readonly FieldLayout[];

  constructor(
    readonly name: string,
    fieldList: FL,
  ) {
    let off = 0;
    let align = 1;
    const fields: FieldLayout[] = [];
    for (const [fname, spec] of fieldList) {
      const a = alignOf(spec);
      const size = sizeOf(spec);
      if (!Number.isInteger(size) || size <= 0) throw new Error(`struct ${name}: field ${fname} has invalid size ${size}`);
      off = Math.ceil(off / a) * a;
      fields.push({ name: fname, spec, offset: off, size });
      off += size;
      align = Math.max(align, a);
    }
    this.size = Math.ceil(off / align) * align;
    this.align = align;
    this.fields = fields;
  }

  /** Encodes into a fresh zero-filled buffer (padding and unset bytes stay zero). */
  encode(value: StructValue<FL>): Buffer {
    const buf = Buffer.alloc(this.size);
    this.encodeInto(value, buf, 0);
    return buf;
  }

  encodeInto(value: StructValue<FL>, buf: Buffer, base: number): void {
    const v = value as Record<string, unknown>;
    for (const f of this.fields) {
      if (f.name.startsWith('_')) continue;
      const x = v[f.name];
      if (x === undefined) throw new Error(`struct ${this.name}: field ${f.name} is missing`);
      writeField(buf, base + f.offset, f, x, this.name);
    }
  }

  decode(buf: Uint8Array, base = 0): StructValue<FL> {
    if (buf.length < base + this.size) {
      throw new Error(`struct ${this.name}: need ${this.size} bytes at offset ${base}, have ${buf.length - base}`);
    }
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    const out: Record<string, unknown> = {};
    for (const f of this.fields) {
      if (f.name.startsWith('_')) continue;
      out[f.name] = readField(b, base + f.offset, f);
    }
    return out as StructValue<FL>;
  }
}

export function defineStruct<const FL extends FieldList>(name: string, fields: FL): StructCodec<FL> {
  return new StructCodec(name, fields);
}

function writeField(buf: Buffer, off: number, f: FieldLayout, x: unknown, struct: string): void {
  const bad = (want: string) => new Error(`struct ${struct}: field ${f.name} must be ${want}, got ${typeof x === 'bigint' ? `${x}n` : JSON.stringify(x)}`);
  if (typeof f.spec !== 'string') {
    if (!(x instanceof Uint8Array) || x.length !== f.spec.bytes) throw bad(`${f.spec.bytes} bytes`);
    buf.set(x, off);
    return;
  }
  if (f.spec === 'u64') {
    if (typeof x !== 'bigint' || x < 0n || x > 0xffff_ffff_ffff_ffffn) throw bad('a u64 bigint');
    buf.writeBigUInt64LE(x, off);
    return;
  }
  if (typeof x !== 'number' || !Number.isInteger(x)) throw bad('an integer');
  switch (f.spec) {
    case 'u8':
      if (x < 0 || x > 0xff) throw bad('0..255');
      buf.writeUInt8(x, off);
      return;
    case 'u16':
    case 'be16':
      if (x < 0 || x > 0xffff) throw bad('0..65535');
      if (f.spec === 'u16') buf.writeUInt16LE(x, off);
      else buf.writeUInt16BE(x, off);
      return;
    case 'u32':
    case 'be32':
      if (x < 0 || x > 0xffff_ffff) throw bad('0..2^32-1');
      if (f.spec === 'u32') buf.writeUInt32LE(x, off);
      else buf.writeUInt32BE(x, off);
      return;
    case 'i32':
      if (x < -0x8000_0000 || x > 0x7fff_ffff) throw bad('a 32-bit signed integer');
      buf.writeInt32LE(x, off);
      return;
  }
}

function readField(buf: Buffer, off: number, f: FieldLayout): unknown {
  if (typeof f.spec !== 'string') return Buffer.from(buf.subarray(off, off + f.size));
  switch (f.spec) {
    case 'u8':
      return buf.readUInt8(off);
    case 'u16':
      return buf.readUInt16LE(off);
    case 'be16':
      return buf.readUInt16BE(off);
    case 'u32':
      return buf.readUInt32LE(off);
    case 'be32':
      return buf.readUInt32BE(off);
    case 'i32':
      return buf.readInt32LE(off);
    case 'u64':
      return buf.readBigUInt64LE(off);
  }
}

/** Codec for a plain u32 or u64 key/value (array indexes, socket cookies). */
export const U32 = defineStruct('u32', [['v', 'u32']] as const);
export const U64 = defineStruct('u64', [['v', 'u64']] as const);
