// Raw koffi bindings to libbpf.so.1 (libbpf 1.1 on Debian 12) and the few libc calls they need.
// Owns: loading the libraries, the typed function table, and the capture of libbpf's log lines
// (libbpf_set_print), so that errors can carry what libbpf said. Everything above this module
// speaks in objects, programs, maps and links; nothing else calls koffi for libbpf.
// libbpf 1.x conventions: int functions return -errno; pointer functions return NULL and set
// errno. Linux on a 64-bit little-endian CPU is assumed (size_t and pointers are 8 bytes).
import koffi, { type LibraryHandle } from 'koffi';

/** A C pointer from koffi (BigInt address), branded by what it points to. */
export type Ptr<T extends string> = bigint & { readonly __ptr: T };
export type ObjectPtr = Ptr<'bpf_object'>;
export type ProgramPtr = Ptr<'bpf_program'>;
export type MapPtr = Ptr<'bpf_map'>;
export type LinkPtr = Ptr<'bpf_link'>;
export type BtfPtr = Ptr<'btf'>;

/** Buffers are passed to C as pointers to their memory; koffi does not copy them. */
type Mem = Buffer | null;

export interface LibBpf {
  // objects
  bpf_object__open_file(path: string, opts: Buffer | null): ObjectPtr | null;
  bpf_object__load(obj: ObjectPtr): number;
  bpf_object__close(obj: ObjectPtr): void;
  bpf_object__name(obj: ObjectPtr): string;
  bpf_object__find_program_by_name(obj: ObjectPtr, name: string): ProgramPtr | null;
  bpf_object__find_map_by_name(obj: ObjectPtr, name: string): MapPtr | null;
  bpf_object__next_program(obj: ObjectPtr, prev: ProgramPtr | null): ProgramPtr | null;
  bpf_object__next_map(obj: ObjectPtr, prev: MapPtr | null): MapPtr | null;
  bpf_object__btf(obj: ObjectPtr): BtfPtr | null;
  // programs
  bpf_program__name(prog: ProgramPtr): string;
  bpf_program__section_name(prog: ProgramPtr): string;
  bpf_program__fd(prog: ProgramPtr): number;
  bpf_program__type(prog: ProgramPtr): number;
  bpf_program__set_type(prog: ProgramPtr, type: number): number;
  bpf_program__expected_attach_type(prog: ProgramPtr): number;
  bpf_program__set_expected_attach_type(prog: ProgramPtr, type: number): number;
  bpf_program__set_autoload(prog: ProgramPtr, autoload: boolean): number;
  bpf_program__attach_xdp(prog: ProgramPtr, ifindex: number): LinkPtr | null;
  bpf_program__attach_cgroup(prog: ProgramPtr, cgroupFd: number): LinkPtr | null;
  bpf_program__attach_netns(prog: ProgramPtr, netnsFd: number): LinkPtr | null;
  // maps (object level)
  bpf_map__name(map: MapPtr): string;
  bpf_map__fd(map: MapPtr): number;
  bpf_map__type(map: MapPtr): number;
  bpf_map__key_size(map: MapPtr): number;
  bpf_map__value_size(map: MapPtr): number;
  bpf_map__max_entries(map: MapPtr): number;
  bpf_map__set_max_entries(map: MapPtr, n: number): number;
  bpf_map__set_pin_path(map: MapPtr, path: string | null): number;
  bpf_map__pin_path(map: MapPtr): string | null;
  bpf_map__is_pinned(map: MapPtr): boolean;
  // links
  bpf_link__fd(link: LinkPtr): number;
  bpf_link__pin(link: LinkPtr, path: string): number;
  bpf_link__unpin(link: LinkPtr): number;
  bpf_link__open(path: string): LinkPtr | null;
  bpf_link__update_program(link: LinkPtr, prog: ProgramPtr): number;
  bpf_link__detach(link: LinkPtr): number;
  bpf_link__destroy(link: LinkPtr): number;
  // syscall wrappers (bpf.h)
  bpf_map_update_elem(fd: number, key: Mem, value: Mem, flags: bigint): number;
  bpf_map_lookup_elem(fd: number, key: Mem, value: Mem): number;
  bpf_map_delete_elem(fd: number, key: Mem): number;
  bpf_map_get_next_key(fd: number, key: Mem, next: Mem): number;
  bpf_map_lookup_batch(fd: number, inBatch: Mem, outBatch: Mem, keys: Mem, values: Mem, count: Uint32Array, opts: Mem): number;
  bpf_obj_pin(fd: number, path: string): number;
  bpf_obj_get(path: string): number;
  bpf_obj_get_info_by_fd(fd: number, info: Mem, len: Uint32Array): number;
  bpf_prog_attach(progFd: number, targetFd: number, type: number, flags: number): number;
  bpf_prog_detach2(progFd: number, targetFd: number, type: number): number;
  bpf_link_create(progFd: number, targetFd: number, type: number, opts: Mem): number;
  bpf_link_detach(linkFd: number): number;
  bpf_link_update(linkFd: number, progFd: number, opts: Mem): number;
  bpf_prog_get_fd_by_id(id: number): number;
  bpf_map_get_fd_by_id(id: number): number;
  bpf_prog_test_run_opts(progFd: number, opts: Buffer): number;
  // tc (netlink)
  bpf_tc_hook_create(hook: Buffer): number;
  bpf_tc_hook_destroy(hook: Buffer): number;
  bpf_tc_attach(hook: Buffer, opts: Buffer): number;
  bpf_tc_detach(hook: Buffer, opts: Buffer): number;
  bpf_tc_query(hook: Buffer, opts: Buffer): number;
  // btf
  btf__find_by_name_kind(btf: BtfPtr, name: string, kind: number): number;
  btf__type_by_id(btf: BtfPtr, id: number): bigint | null;
  btf__name_by_offset(btf: BtfPtr, off: number): string | null;
  btf__resolve_size(btf: BtfPtr, id: number): number;
  btf__load_vmlinux_btf(): BtfPtr | null;
  btf__free(btf: BtfPtr): void;
  // misc
  libbpf_num_possible_cpus(): number;
}

export interface LibC {
  strerror(errnum: number): string;
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Uint32Array): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  ioctl(fd: number, request: number, arg: Buffer): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  dup(fd: number): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
}

const PROTOTYPES: Record<keyof LibBpf, string> = {
  bpf_object__open_file: 'bpf_object *bpf_object__open_file(const char *path, void *opts)',
  bpf_object__load: 'int bpf_object__load(bpf_object *obj)',
  bpf_object__close: 'void bpf_object__close(bpf_object *obj)',
  bpf_object__name: 'const char *bpf_object__name(bpf_object *obj)',
  bpf_object__find_program_by_name: 'bpf_program *bpf_object__find_program_by_name(bpf_object *obj, const char *name)',
  bpf_object__find_map_by_name: 'bpf_map *bpf_object__find_map_by_name(bpf_object *obj, const char *name)',
  bpf_object__next_program: 'bpf_program *bpf_object__next_program(bpf_object *obj, bpf_program *prev)',
  bpf_object__next_map: 'bpf_map *bpf_object__next_map(bpf_object *obj, bpf_map *prev)',
  bpf_object__btf: 'btf *bpf_object__btf(bpf_object *obj)',
  bpf_program__name: 'const char *bpf_program__name(bpf_program *prog)',
  bpf_program__section_name: 'const char *bpf_program__section_name(bpf_program *prog)',
  bpf_program__fd: 'int bpf_program__fd(bpf_program *prog)',
  bpf_program__type: 'int bpf_program__type(bpf_program *prog)',
  bpf_program__set_type: 'int bpf_program__set_type(bpf_program *prog, int type)',
  bpf_program__expected_attach_type: 'int bpf_program__expected_attach_type(bpf_program *prog)',
  bpf_program__set_expected_attach_type: 'int bpf_program__set_expected_attach_type(bpf_program *prog, int type)',
  bpf_program__set_autoload: 'int bpf_program__set_autoload(bpf_program *prog, bool autoload)',
  bpf_program__attach_xdp: 'bpf_link *bpf_program__attach_xdp(bpf_program *prog, int ifindex)',
  bpf_program__attach_cgroup: 'bpf_link *bpf_program__attach_cgroup(bpf_program *prog, int cgroup_fd)',
  bpf_program__attach_netns: 'bpf_link *bpf_program__attach_netns(bpf_program *prog, int netns_fd)',
  bpf_map__name: 'const char *bpf_map__name(bpf_map *map)',
  bpf_map__fd: 'int bpf_map__fd(bpf_map *map)',
  bpf_map__type: 'int bpf_map__type(bpf_map *map)',
  bpf_map__key_size: 'uint32_t bpf_map__key_size(bpf_map *map)',
  bpf_map__value_size: 'uint32_t bpf_map__value_size(bpf_map *map)',
  bpf_map__max_entries: 'uint32_t bpf_map__max_entries(bpf_map *map)',
  bpf_map__set_max_entries: 'int bpf_map__set_max_entries(bpf_map *map, uint32_t n)',
  bpf_map__set_pin_path: 'int bpf_map__set_pin_path(bpf_map *map, const char *path)',
  bpf_map__pin_path: 'const char *bpf_map__pin_path(bpf_map *map)',
  bpf_map__is_pinned: 'bool bpf_map__is_pinned(bpf_map *map)',
  bpf_link__fd: 'int bpf_link__fd(bpf_link *link)',
  bpf_link__pin: 'int bpf_link__pin(bpf_link *link, const char *path)',
  bpf_link__unpin: 'int bpf_link__unpin(bpf_link *link)',
  bpf_link__open: 'bpf_link *bpf_link__open(const char *path)',
  bpf_link__update_program: 'int bpf_link__update_program(bpf_link *link, bpf_program *prog)',
  bpf_link__detach: 'int bpf_link__detach(bpf_link *link)',
  bpf_link__destroy: 'int bpf_link__destroy(bpf_link *link)',
  bpf_map_update_elem: 'int bpf_map_update_elem(int fd, void *key, void *value, uint64_t flags)',
  bpf_map_lookup_elem: 'int bpf_map_lookup_elem(int fd, void *key, void *value)',
  bpf_map_delete_elem: 'int bpf_map_delete_elem(int fd, void *key)',
  bpf_map_get_next_key: 'int bpf_map_get_next_key(int fd, void *key, void *next_key)',
  bpf_map_lookup_batch:
    'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, void *opts)',
  bpf_obj_pin: 'int bpf_obj_pin(int fd, const char *path)',
  bpf_obj_get: 'int bpf_obj_get(const char *path)',
  bpf_obj_get_info_by_fd: 'int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *len)',
  bpf_prog_attach: 'int bpf_prog_attach(int prog_fd, int target_fd, int type, uint32_t flags)',
  bpf_prog_detach2: 'int bpf_prog_detach2(int prog_fd, int target_fd, int type)',
  bpf_link_create: 'int bpf_link_create(int prog_fd, int target_fd, int type, void *opts)',
  bpf_link_detach: 'int bpf_link_detach(int link_fd)',
  bpf_link_update: 'int bpf_link_update(int link_fd, int new_prog_fd, void *opts)',
  bpf_prog_get_fd_by_id: 'int bpf_prog_get_fd_by_id(uint32_t id)',
  bpf_map_get_fd_by_id: 'int bpf_map_get_fd_by_id(uint32_t id)',
  bpf_prog_test_run_opts: 'int bpf_prog_test_run_opts(int prog_fd, void *opts)',
  bpf_tc_hook_create: 'int bpf_tc_hook_create(void *hook)',
  bpf_tc_hook_destroy: 'int bpf_tc_hook_destroy(void *hook)',
  bpf_tc_attach: 'int bpf_tc_attach(void *hook, void *opts)',
  bpf_tc_detach: 'int bpf_tc_detach(void *hook, void *opts)',
  bpf_tc_query: 'int bpf_tc_query(void *hook, void *opts)',
  btf__find_by_name_kind: 'int btf__find_by_name_kind(btf *btf, const char *name, uint32_t kind)',
  btf__type_by_id: 'void *btf__type_by_id(btf *btf, uint32_t id)',
  btf__name_by_offset: 'const char *btf__name_by_offset(btf *btf, uint32_t off)',
  btf__resolve_size: 'int64_t btf__resolve_size(btf *btf, uint32_t id)',
  btf__load_vmlinux_btf: 'btf *btf__load_vmlinux_btf()',
  btf__free: 'void btf__free(btf *btf)',
  libbpf_num_possible_cpus: 'int libbpf_num_possible_cpus()',
};

const LIBC_PROTOTYPES: Record<keyof LibC, string> = {
  strerror: 'const char *strerror(int errnum)',
  getsockopt: 'int getsockopt(int fd, int level, int name, void *value, _Inout_ uint32_t *len)',
  setsockopt: 'int setsockopt(int fd, int level, int name, void *value, uint32_t len)',
  ioctl: 'int ioctl(int fd, unsigned long request, void *arg)',
  recv: 'intptr_t recv(int fd, void *buf, size_t len, int flags)',
  dup: 'int dup(int fd)',
  fcntl: 'int fcntl(int fd, int cmd, int arg)',
  send: 'intptr_t send(int fd, void *buf, size_t len, int flags)',
};

export interface LibbpfMessage {
  level: 'warn' | 'info' | 'debug';
  text: string;
}

interface Loaded {
  bpf: LibBpf;
  libc: LibC;
  vsnprintf: (buf: Buffer, size: number, fmt: string, ap: bigint) => number;
}

let loaded: Loaded | undefined;
/** Messages of the operation in progress (libbpf is called synchronously on this thread). */
let capture: LibbpfMessage[] | undefined;
/** The last messages outside any capture, for diagnostics. */
const recent: LibbpfMessage[] = [];
let sink: ((m: LibbpfMessage) => void) | undefined;
const FORMAT_BUF = Buffer.alloc(64 * 1024);
const LEVELS = ['warn', 'info', 'debug'] as const;

function load(): Loaded {
  if (loaded) return loaded;
  let bpfLib: LibraryHandle;
  try {
    bpfLib = koffi.load('libbpf.so.1');
  } catch (e) {
    throw new Error(`cannot load libbpf.so.1 (${(e as Error).message}); install it: apt-get install -y libbpf1 (npm run build:bpf installs libbpf-dev, which brings it)`);
  }
  const libcLib = koffi.load('libc.so.6');
  for (const t of ['bpf_object', 'bpf_program', 'bpf_map', 'bpf_link', 'btf']) koffi.opaque(t);
  const bpf = Object.fromEntries(Object.entries(PROTOTYPES).map(([k, proto]) => [k, bpfLib.func(proto)])) as unknown as LibBpf;
  const libc = Object.fromEntries(Object.entries(LIBC_PROTOTYPES).map(([k, proto]) => [k, libcLib.func(proto)])) as unknown as LibC;
  // va_list is passed to callbacks as a pointer on x86_64 and arm64, so vsnprintf can format it.
  const vsnprintf = libcLib.func('int vsnprintf(void *buf, size_t size, const char *fmt, void *ap)') as Loaded['vsnprintf'];
  const printProto = koffi.proto('int exds_libbpf_print_fn(int level, const char *fmt, void *ap)');
  const setPrint = bpfLib.func('void *libbpf_set_print(exds_libbpf_print_fn *fn)');
  const cb = koffi.register((level: number, fmt: string, ap: bigint): number => {
    let text: string;
    try {
      const n = vsnprintf(FORMAT_BUF, FORMAT_BUF.length, fmt, ap);
      const len = Math.max(0, Math.min(n, FORMAT_BUF.length - 1));
      text = FORMAT_BUF.toString('utf8', 0, len).replace(/\n+$/, '');
      if (n >= FORMAT_BUF.length) text += ' …(truncated)';
    } catch (e) {
      text = `(could not format libbpf message "${fmt.trim()}": ${(e as Error).message})`;
    }
    const m: LibbpfMessage = { level: LEVELS[level] ?? 'debug', text };
    if (capture) capture.push(m);
    else {
      recent.push(m);
      if (recent.length > 50) recent.shift();
    }
    if (m.level !== 'debug') sink?.(m);
    return 0;
  }, koffi.pointer(printProto));
  setPrint(cb);
  loaded = { bpf, libc, vsnprintf };
  return loaded;
}

export function libbpf(): LibBpf {
  return load().bpf;
}

export function libc(): LibC {
  return load().libc;
}

/** errno of the last C call made through koffi on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/** Receives libbpf's warn and info messages as they happen (e.g. to forward them to pino). */
export function onLibbpfMessage(fn: ((m: LibbpfMessage) => void) | undefined): void {
  sink = fn;
}

/**
 * Runs fn and returns its result with the libbpf messages it caused. Captures nest: an inner
 * capture's messages also reach the outer one.
 */
export function withLibbpfLog<T>(fn: () => T): { value: T; messages: LibbpfMessage[] } {
  load();
  const outer = capture;
  const mine: LibbpfMessage[] = [];
  capture = mine;
  try {
    const value = fn();
    return { value, messages: mine };
  } finally {
    capture = outer;
    outer?.push(...mine);
  }
}

export function strerror(errno: number): string {
  return libc().strerror(errno);
}

/** Allocates C memory that does not move (for pointers libbpf keeps after a call returns). */
export function allocStable(size: number): { ptr: bigint; read: (len: number) => Buffer; free: () => void } {
  load();
  const p = koffi.alloc('uint8_t', size) as bigint;
  let freed = false;
  return {
    ptr: p,
    read: (len: number) => Buffer.from(koffi.view(p, Math.min(len, size))),
    free: () => {
      if (!freed) koffi.free(p);
      freed = true;
    },
  };
}

/** Reads `len` bytes of C memory at `ptr` (copied). */
export function readMemory(ptr: bigint, len: number): Buffer {
  return Buffer.from(koffi.view(ptr, len));
}

/** Address of a Buffer's memory, for pointer fields inside option structs. Keep the Buffer alive. */
export function addressOf(buf: Buffer): bigint {
  load();
  return koffi.address(buf);
}
