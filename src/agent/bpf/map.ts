// BPF map access: raw (Buffer keys and values) and typed (through struct codecs). Owns an fd when
// opened from a pin; an object's maps borrow the object's fd. Iteration uses batch lookups where
// the kernel supports them for the map type and falls back to get_next_key otherwise. Per-CPU
// values are read per CPU and can be summed field by field.
import { closeSync } from 'node:fs';
import { constants } from 'node:os';
import { BpfError, remedyFor } from './errors.js';
import { lastErrno, libbpf, strerror, withLibbpfLog } from './libbpf.js';
import { defineStruct, type Codec } from './struct-codec.js';

const { ENOENT, ENOSPC, EINVAL, EOPNOTSUPP } = constants.errno;

export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  DEVMAP: 14,
  SOCKMAP: 15,
  SOCKHASH: 18,
  DEVMAP_HASH: 25,
} as const;

const PER_CPU = new Set<number>([MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH, 21]);
/** Map types whose batch lookup the kernel implements (htab and array families). */
const BATCHABLE = new Set<number>([MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH]);

export type UpdateFlag = 'any' | 'noexist' | 'exist';
const FLAG_VALUE: Record<UpdateFlag, bigint> = { any: 0n, noexist: 1n, exist: 2n };

// struct bpf_map_info (uapi/linux/bpf.h), the fields we read.
const MapInfo = defineStruct('bpf_map_info', [
  ['type', 'u32'],
  ['id', 'u32'],
  ['key_size', 'u32'],
  ['value_size', 'u32'],
  ['max_entries', 'u32'],
  ['map_flags', 'u32'],
  ['name', { bytes: 16 }],
] as const);

let cpuCount: number | undefined;
export function possibleCpus(): number {
  if (cpuCount === undefined) {
    const n = libbpf().libbpf_num_possible_cpus();
    if (n <= 0) throw new BpfError({ what: 'count possible CPUs (libbpf_num_possible_cpus)', errno: -n, reason: strerror(-n) });
    cpuCount = n;
  }
  return cpuCount;
}

export interface MapMeta {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  id?: number;
}

export class BpfMap {
  private closed = false;
  private batchBroken = false;

  constructor(
    readonly fd: number,
    readonly meta: MapMeta,
    private readonly ownsFd: boolean,
  ) {}

  /** Opens a pinned map; the returned map owns its fd (close() it). */
  static openPinned(path: string): BpfMap {
    const { value: fd, messages } = withLibbpfLog(() => libbpf().bpf_obj_get(path));
    if (fd < 0) {
      const errno = -fd;
      throw new BpfError({ what: `open pinned map ${path}`, errno, reason: strerror(errno), libbpfLog: messages, remedy: remedyFor(errno, 'open') ?? 'is the datapath loaded (agent running) with this pin root?' });
    }
    const info = Buffer.alloc(256);
    const len = new Uint32Array([info.length]);
    const r = libbpf().bpf_obj_get_info_by_fd(fd, info, len);
    if (r < 0) {
      closeSync(fd);
      throw new BpfError({ what: `read map info of ${path}`, errno: -r, reason: strerror(-r) });
    }
    const mi = MapInfo.decode(info);
    const name = Buffer.from(mi.name).toString('utf8').replace(/\0.*$/s, '');
    return new BpfMap(fd, { name, type: mi.type, keySize: mi.key_size, valueSize: mi.value_size, maxEntries: mi.max_entries, id: mi.id }, true);
  }

  get name(): string {
    return this.meta.name;
  }
  get isPerCpu(): boolean {
    return PER_CPU.has(this.meta.type);
  }
  /** Bytes of one value as user space sees it (all CPUs for per-CPU maps). */
  get valueBytes(): number {
    return this.isPerCpu ? Math.ceil(this.meta.valueSize / 8) * 8 * possibleCpus() : this.meta.valueSize;
  }

  private fail(op: string, ret: number): never {
    const errno = ret < 0 ? -ret : lastErrno();
    throw new BpfError({ what: `${op} on map ${this.name}`, errno, reason: strerror(errno), remedy: remedyFor(errno, 'map') });
  }

  private checkKey(key: Buffer): void {
    if (this.closed) throw new Error(`map ${this.name} is closed`);
    if (key.length !== this.meta.keySize) throw new Error(`map ${this.name}: key must be ${this.meta.keySize} bytes, got ${key.length}`);
  }

  lookup(key: Buffer): Buffer | undefined {
    this.checkKey(key);
    const value = Buffer.alloc(this.valueBytes);
    const r = libbpf().bpf_map_lookup_elem(this.fd, key, value);
    if (r === 0) return value;
    if (-r === ENOENT) return undefined;
    this.fail('lookup', r);
  }

  update(key: Buffer, value: Buffer, flag: UpdateFlag = 'any'): void {
    this.checkKey(key);
    if (value.length !== this.valueBytes) throw new Error(`map ${this.name}: value must be ${this.valueBytes} bytes, got ${value.length}`);
    const r = libbpf().bpf_map_update_elem(this.fd, key, value, FLAG_VALUE[flag]);
    if (r !== 0) this.fail(`update (${flag})`, r);
  }

  /** Puts a socket into a SOCKMAP/SOCKHASH (the value is the socket's fd). */
  updateSocket(key: Buffer, socketFd: number, flag: UpdateFlag = 'any'): void {
    this.checkKey(key);
    const value = Buffer.alloc(this.meta.valueSize);
    if (this.meta.valueSize === 8) value.writeBigUInt64LE(BigInt(socketFd));
    else value.writeUInt32LE(socketFd);
    const r = libbpf().bpf_map_update_elem(this.fd, key, value, FLAG_VALUE[flag]);
    if (r !== 0) this.fail(`insert socket fd ${socketFd} (${flag})`, r);
  }

  /** Deletes a key; false when it was not there. */
  delete(key: Buffer): boolean {
    this.checkKey(key);
    const r = libbpf().bpf_map_delete_elem(this.fd, key);
    if (r === 0) return true;
    if (-r === ENOENT) return false;
    this.fail('delete', r);
  }

  /** Every key, by get_next_key (a snapshot that tolerates concurrent deletes). */
  keys(): Buffer[] {
    if (this.closed) throw new Error(`map ${this.name} is closed`);
    const out: Buffer[] = [];
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.meta.keySize);
      const r = libbpf().bpf_map_get_next_key(this.fd, prev, next);
      if (r !== 0) {
        if (-r === ENOENT) break;
        this.fail('get_next_key', r);
      }
      out.push(next);
      prev = next;
      if (out.length > this.meta.maxEntries + 1) throw new Error(`map ${this.name}: iteration does not end (more keys than max_entries)`);
    }
    return out;
  }

  /** Every entry; batch lookup when the map type supports it. */
  entries(): Array<[Buffer, Buffer]> {
    if (BATCHABLE.has(this.meta.type) && !this.batchBroken) {
      const r = this.entriesBatch();
      if (r) return r;
    }
    const out: Array<[Buffer, Buffer]> = [];
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) out.push([k, v]); // deleted between the two calls: skip
    }
    return out;
  }

  private entriesBatch(): Array<[Buffer, Buffer]> | undefined {
    const ks = this.meta.keySize;
    const vs = this.valueBytes;
    let chunk = Math.min(Math.max(this.meta.maxEntries, 1), 1024);
    const out: Array<[Buffer, Buffer]> = [];
    const tokenSize = Math.max(ks, 8);
    let inBatch: Buffer | null = null;
    for (;;) {
      const outBatch = Buffer.alloc(tokenSize);
      const keys = Buffer.alloc(ks * chunk);
      const values = Buffer.alloc(vs * chunk);
      const count = new Uint32Array([chunk]);
      const r = libbpf().bpf_map_lookup_batch(this.fd, inBatch, outBatch, keys, values, count, null);
      const errno = r < 0 ? -r : 0;
      if (r === 0 || errno === ENOENT) {
        for (let i = 0; i < count[0]!; i++) out.push([Buffer.from(keys.subarray(i * ks, (i + 1) * ks)), Buffer.from(values.subarray(i * vs, (i + 1) * vs))]);
        if (errno === ENOENT) return out;
        inBatch = outBatch;
        continue;
      }
      if (errno === ENOSPC && chunk < 1 << 16) {
        chunk *= 2; // a hash bucket holds more entries than the chunk: retry larger
        continue;
      }
      if (out.length === 0 && (errno === EINVAL || errno === 524 /* ENOTSUPP */ || errno === EOPNOTSUPP)) {
        this.batchBroken = true;
        return undefined;
      }
      this.fail('lookup_batch', r);
    }
  }

  count(): number {
    return this.keys().length;
  }

  /** Deletes every entry (not possible for arrays, whose entries always exist). */
  clear(): number {
    let n = 0;
    for (const k of this.keys()) if (this.delete(k)) n++;
    return n;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsFd) closeSync(this.fd);
  }
}

/** A map whose keys and values are C structs described by codecs. */
export class TypedMap<K, V> {
  constructor(
    readonly raw: BpfMap,
    readonly key: Codec<K>,
    readonly value: Codec<V>,
  ) {
    if (key.size !== raw.meta.keySize) throw new Error(`map ${raw.name}: codec ${key.name} is ${key.size} bytes, the map's key is ${raw.meta.keySize}`);
    if (!raw.isPerCpu && value.size !== raw.meta.valueSize && !isSocketMap(raw)) {
      throw new Error(`map ${raw.name}: codec ${value.name} is ${value.size} bytes, the map's value is ${raw.meta.valueSize}`);
    }
  }

  get name(): string {
    return this.raw.name;
  }

  lookup(k: K): V | undefined {
    const v = this.raw.lookup(this.key.encode(k));
    return v ? this.value.decode(v) : undefined;
  }

  update(k: K, v: V, flag: UpdateFlag = 'any'): void {
    this.raw.update(this.key.encode(k), this.value.encode(v), flag);
  }

  delete(k: K): boolean {
    return this.raw.delete(this.key.encode(k));
  }

  keys(): K[] {
    return this.raw.keys().map((b) => this.key.decode(b));
  }

  entries(): Array<{ key: K; value: V }> {
    return this.raw.entries().map(([k, v]) => ({ key: this.key.decode(k), value: this.value.decode(v) }));
  }

  count(): number {
    return this.raw.count();
  }

  clear(): number {
    return this.raw.clear();
  }
}

function isSocketMap(m: BpfMap): boolean {
  return m.meta.type === MapType.SOCKMAP || m.meta.type === MapType.SOCKHASH;
}

/** A per-CPU map: values are read for every possible CPU and summed field by field. */
export class PerCpuMap<K, V> {
  constructor(
    readonly raw: BpfMap,
    readonly key: Codec<K>,
    readonly value: Codec<V>,
  ) {
    if (!raw.isPerCpu) throw new Error(`map ${raw.name} is not a per-CPU map`);
    if (value.size !== raw.meta.valueSize) throw new Error(`map ${raw.name}: codec ${value.name} is ${value.size} bytes, the map's value is ${raw.meta.valueSize}`);
  }

  lookupPerCpu(k: K): V[] | undefined {
    const buf = this.raw.lookup(this.key.encode(k));
    return buf ? this.split(buf) : undefined;
  }

  /** The value summed over CPUs (numbers and bigints add; byte fields come from CPU 0). */
  lookupSum(k: K): V | undefined {
    const per = this.lookupPerCpu(k);
    return per ? sumValues(per) : undefined;
  }

  entriesSum(): Array<{ key: K; value: V }> {
    return this.raw.entries().map(([kb, vb]) => ({ key: this.key.decode(kb), value: sumValues(this.split(vb)) }));
  }

  /** Writes the same value on every CPU (e.g. zero to reset a counter). */
  updateAll(k: K, v: V): void {
    const stride = Math.ceil(this.value.size / 8) * 8;
    const buf = Buffer.alloc(this.raw.valueBytes);
    const one = this.value.encode(v);
    for (let c = 0; c < possibleCpus(); c++) one.copy(buf, c * stride);
    this.raw.update(this.key.encode(k), buf);
  }

  private split(buf: Buffer): V[] {
    const stride = Math.ceil(this.value.size / 8) * 8;
    const out: V[] = [];
    for (let c = 0; c < possibleCpus(); c++) out.push(this.value.decode(buf, c * stride));
    return out;
  }
}

export function sumValues<T>(values: T[]): T {
  const first = values[0];
  if (first === undefined) throw new Error('sumValues: no values');
  const out: Record<string, unknown> = { ...(first as Record<string, unknown>) };
  for (const v of values.slice(1)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const acc = out[k];
      if (typeof x === 'bigint' && typeof acc === 'bigint') out[k] = acc + x;
      else if (typeof x === 'number' && typeof acc === 'number') out[k] = acc + x;
    }
  }
  return out as T;
}
