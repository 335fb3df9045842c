// A BPF object file opened and loaded through libbpf: its programs, maps and BTF. Maps declared
// with LIBBPF_PIN_BY_NAME are pinned under the pin directory given at open, and an existing pin
// there is reused (so a restarted agent finds the same maps, with their entries). Load errors
// carry libbpf's messages and, for a verifier rejection, the verifier log.
import { mkdirSync } from 'node:fs';
import { readBtfStruct, type BtfStruct } from './btf.js';
import { BpfError, remedyFor } from './errors.js';
import { addressOf, allocStable, lastErrno, libbpf, strerror, withLibbpfLog, type ObjectPtr, type ProgramPtr } from './libbpf.js';
import { BpfMap } from './map.js';
import { defineStruct } from './struct-codec.js';

export interface OpenOptions {
  /** Directory for LIBBPF_PIN_BY_NAME maps: pinned there on first load, reused afterwards. */
  pinDir?: string;
  /** max_entries per map name, applied before load (capacities are config, not C constants). */
  maxEntries?: Record<string, number>;
  /** Program types to set where the SEC name is not enough for this libbpf version. */
  programTypes?: Record<string, { type: number; expectedAttachType?: number }>;
  /** Programs of the object that must not be loaded. */
  skipPrograms?: string[];
  /** Verifier log buffer size (default 4 MiB; the kernel keeps the tail if it overflows). */
  logSize?: number;
  /** 0: collect the verifier log only on failure (default); 1 or 2: always (debugging). */
  logLevel?: number;
}

// struct bpf_object_open_opts (libbpf 1.1): only the fields we set.
const OpenOpts = defineStruct('bpf_object_open_opts', [
  ['sz', 'u64'],
  ['object_name', 'u64'],
  ['relaxed_maps', 'u64'],
  ['pin_root_path', 'u64'],
  ['_stub', 'u64'],
  ['kconfig', 'u64'],
  ['btf_custom_path', 'u64'],
  ['kernel_log_buf', 'u64'],
  ['kernel_log_size', 'u64'],
  ['kernel_log_level', 'u32'],
] as const);

// struct bpf_test_run_opts (libbpf 1.1).
const TestRunOpts = defineStruct('bpf_test_run_opts', [
  ['sz', 'u64'],
  ['data_in', 'u64'],
  ['data_out', 'u64'],
  ['data_size_in', 'u32'],
  ['data_size_out', 'u32'],
  ['ctx_in', 'u64'],
  ['ctx_out', 'u64'],
  ['ctx_size_in', 'u32'],
  ['ctx_size_out', 'u32'],
  ['retval', 'u32'],
  ['repeat', 'i32'],
  ['duration', 'u32'],
  ['flags', 'u32'],
  ['cpu', 'u32'],
  ['batch_size', 'u32'],
] as const);

export interface TestRunResult {
  retval: number;
  /** Average duration per repetition, ns. */
  durationNs: number;
  dataOut: Buffer;
  ctxOut?: Buffer;
}

export class BpfProgram {
  constructor(
    readonly object: BpfObject,
    readonly ptr: ProgramPtr,
    readonly name: string,
    readonly section: string,
  ) {}

  get fd(): number {
    const fd = libbpf().bpf_program__fd(this.ptr);
    if (fd < 0) throw new Error(`program ${this.name} of ${this.object.path} is not loaded`);
    return fd;
  }

  get type(): number {
    return libbpf().bpf_program__type(this.ptr);
  }

  /** BPF_PROG_TEST_RUN: runs the program on a crafted packet (XDP, tc) `repeat` times. */
  testRun(opts: { data: Buffer; repeat?: number; ctx?: Buffer; dataOutSize?: number; flags?: number }): TestRunResult {
    const dataOut = Buffer.alloc(opts.dataOutSize ?? opts.data.length + 256);
    const ctxOut = opts.ctx ? Buffer.alloc(opts.ctx.length) : undefined;
    const o = TestRunOpts.encode({
      sz: BigInt(TestRunOpts.size),
      data_in: addressOf(opts.data),
      data_out: addressOf(dataOut),
      data_size_in: opts.data.length,
      data_size_out: dataOut.length,
      ctx_in: opts.ctx ? addressOf(opts.ctx) : 0n,
      ctx_out: ctxOut ? addressOf(ctxOut) : 0n,
      ctx_size_in: opts.ctx?.length ?? 0,
      ctx_size_out: ctxOut?.length ?? 0,
      retval: 0,
      repeat: opts.repeat ?? 1,
      duration: 0,
      flags: opts.flags ?? 0,
      cpu: 0,
      batch_size: 0,
    });
    const { value: r, messages } = withLibbpfLog(() => libbpf().bpf_prog_test_run_opts(this.fd, o));
    if (r !== 0) {
      const errno = r < 0 ? -r : lastErrno();
      throw new BpfError({ what: `test run of program ${this.name}`, errno, reason: strerror(errno), libbpfLog: messages });
    }
    const out = TestRunOpts.decode(o);
    return {
      retval: out.retval,
      durationNs: out.duration,
      dataOut: dataOut.subarray(0, out.data_size_out),
      ...(ctxOut ? { ctxOut: ctxOut.subarray(0, out.ctx_size_out) } : {}),
    };
  }
}

export class BpfObject {
  private closed = false;
  private loaded = false;
  private readonly programsByName = new Map<string, BpfProgram>();
  private readonly mapsByName = new Map<string, BpfMap>();

  private constructor(
    readonly path: string,
    readonly ptr: ObjectPtr,
    private readonly log: ReturnType<typeof allocStable>,
    private readonly logSize: number,
  ) {}

  /** Opens an object file and applies the options; call load() next. */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    const lib = libbpf();
    if (opts.pinDir) mkdirSync(opts.pinDir, { recursive: true });
    const logSize = opts.logSize ?? 4 << 20;
    const log = allocStable(logSize);
    const pinRoot = opts.pinDir ? Buffer.from(`${opts.pinDir}\0`) : undefined;
    const o = OpenOpts.encode({
      sz: BigInt(OpenOpts.size),
      object_name: 0n,
      relaxed_maps: 0n,
      pin_root_path: pinRoot ? addressOf(pinRoot) : 0n,
      kconfig: 0n,
      btf_custom_path: 0n,
      kernel_log_buf: log.ptr,
      kernel_log_size: BigInt(logSize),
      kernel_log_level: opts.logLevel ?? 0,
    });
    const { value: ptr, messages } = withLibbpfLog(() => lib.bpf_object__open_file(path, o));
    if (!ptr) {
      log.free();
      const errno = lastErrno();
      throw new BpfError({
        what: `open BPF object ${path}`,
        errno,
        reason: strerror(errno),
        libbpfLog: messages,
        remedy: errno === 2 ? 'build the BPF objects: npm run build:bpf' : remedyFor(errno, 'open'),
      });
    }
    const obj = new BpfObject(path, ptr, log, logSize);
    try {
      for (const [name, n] of Object.entries(opts.maxEntries ?? {})) {
        const m = lib.bpf_object__find_map_by_name(ptr, name);
        if (!m) throw new Error(`${path} has no map "${name}" to resize (have: ${obj.mapNames().join(', ')})`);
        const r = lib.bpf_map__set_max_entries(m, n);
        if (r !== 0) throw new BpfError({ what: `set max_entries of map ${name} to ${n}`, errno: -r, reason: strerror(-r) });
      }
      for (const [name, t] of Object.entries(opts.programTypes ?? {})) {
        const p = obj.programPtr(name);
        lib.bpf_program__set_type(p, t.type);
        if (t.expectedAttachType !== undefined) lib.bpf_program__set_expected_attach_type(p, t.expectedAttachType);
      }
      for (const name of opts.skipPrograms ?? []) lib.bpf_program__set_autoload(obj.programPtr(name), false);
    } catch (e) {
      obj.close();
      throw e;
    }
    return obj;
  }

  /** Opens and loads in one step. */
  static load(path: string, opts: OpenOptions = {}): BpfObject {
    const obj = BpfObject.open(path, opts);
    try {
      obj.load();
    } catch (e) {
      obj.close();
      throw e;
    }
    return obj;
  }

  load(): void {
    if (this.loaded) return;
    const { value: r, messages } = withLibbpfLog(() => libbpf().bpf_object__load(this.ptr));
    if (r !== 0) {
      const errno = -r;
      const failedProg = messages.map((m) => /prog '([^']+)': failed to load/.exec(m.text)?.[1]).find(Boolean);
      const pinMismatch = messages.some((m) => /couldn't reuse pinned map|failed to reuse map/i.test(m.text));
      const verifierLog = failedProg ? this.log.read(this.logSize).toString('utf8').replace(/\0[\s\S]*$/, '') : undefined;
      throw new BpfError({
        what: `load BPF object ${this.path}`,
        errno,
        reason: failedProg ? `the verifier rejected program "${failedProg}" (${strerror(errno)})` : strerror(errno),
        libbpfLog: messages,
        ...(verifierLog ? { verifierLog } : {}),
        ...(failedProg ? { program: failedProg } : {}),
        remedy: pinMismatch
          ? 'a map pinned by an earlier version does not match this object; detach and unpin the old datapath (ebpf-xds agent detach, or remove the pin directory), then retry'
          : failedProg
            ? 'the kernel refused the program: check the verifier log tail above; the kernel needs Linux 6.1+ with BTF'
            : remedyFor(errno, 'load'),
      });
    }
    this.loaded = true;
    this.log.free(); // only needed during load
  }

  private programPtr(name: string): ProgramPtr {
    const p = libbpf().bpf_object__find_program_by_name(this.ptr, name);
    if (!p) throw new Error(`${this.path} has no program "${name}" (have: ${this.programNames().join(', ')})`);
    return p;
  }

  programNames(): string[] {
    const lib = libbpf();
    const out: string[] = [];
    for (let p = lib.bpf_object__next_program(this.ptr, null); p; p = lib.bpf_object__next_program(this.ptr, p)) out.push(lib.bpf_program__name(p));
    return out;
  }

  mapNames(): string[] {
    const lib = libbpf();
    const out: string[] = [];
    for (let m = lib.bpf_object__next_map(this.ptr, null); m; m = lib.bpf_object__next_map(this.ptr, m)) out.push(lib.bpf_map__name(m));
    return out;
  }

  program(name: string): BpfProgram {
    this.assertOpen();
    let p = this.programsByName.get(name);
    if (!p) {
      const ptr = this.programPtr(name);
      p = new BpfProgram(this, ptr, name, libbpf().bpf_program__section_name(ptr));
      this.programsByName.set(name, p);
    }
    return p;
  }

  /** A loaded map of this object (the fd belongs to the object). */
  map(name: string): BpfMap {
    this.assertOpen();
    if (!this.loaded) throw new Error(`map ${name}: object ${this.path} is not loaded yet`);
    let m = this.mapsByName.get(name);
    if (!m) {
      const lib = libbpf();
      const ptr = lib.bpf_object__find_map_by_name(this.ptr, name);
      if (!ptr) throw new Error(`${this.path} has no map "${name}" (have: ${this.mapNames().join(', ')})`);
      m = new BpfMap(
        lib.bpf_map__fd(ptr),
        { name, type: lib.bpf_map__type(ptr), keySize: lib.bpf_map__key_size(ptr), valueSize: lib.bpf_map__value_size(ptr), maxEntries: lib.bpf_map__max_entries(ptr) },
        false,
      );
      this.mapsByName.set(name, m);
    }
    return m;
  }

  /** Where a map is pinned (undefined when it is not pinned). */
  mapPinPath(name: string): string | undefined {
    const lib = libbpf();
    const ptr = lib.bpf_object__find_map_by_name(this.ptr, name);
    if (!ptr) throw new Error(`${this.path} has no map "${name}"`);
    return lib.bpf_map__pin_path(ptr) ?? undefined;
  }

  /** A struct's layout in this object's BTF. */
  btfStruct(name: string): BtfStruct | undefined {
    const btf = libbpf().bpf_object__btf(this.ptr);
    return btf ? readBtfStruct(btf, name) : undefined;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`BPF object ${this.path} is closed`);
  }

  /** Closes the object: its fds go away. Pinned maps and pinned links stay. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.mapsByName.values()) m.close(); // borrowed fds die with the object
    libbpf().bpf_object__close(this.ptr);
    this.log.free();
  }
}
