// Attachments: bpf_link for XDP, cgroup (sock_release), netns (sk_lookup) and sockmap verdicts, each
// pinned so that it outlives the agent; and tc filters through libbpf's tc API (netlink, which
// has no pinnable link). Re-attaching where a pinned link already exists ADOPTS it: the link is
// kept and its program swapped atomically (bpf_link_update), never attached twice. Detach is
// complete and idempotent.
import { closeSync, existsSync, openSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { BpfError, remedyFor } from './errors.js';
import { lastErrno, libbpf, strerror, withLibbpfLog, type LinkPtr, type LibbpfMessage } from './libbpf.js';
import type { BpfMap } from './map.js';
import type { BpfProgram } from './object.js';
import { defineStruct } from './struct-codec.js';

const { ENOENT, EINVAL, EOPNOTSUPP } = constants.errno;

export const AttachType = {
  CGROUP_SOCK_OPS: 3,
  SK_SKB_STREAM_PARSER: 4,
  SK_SKB_STREAM_VERDICT: 5,
  SK_LOOKUP: 36,
  XDP: 37,
  SK_SKB_VERDICT: 38,
} as const;

export const LinkType = { CGROUP: 3, NETNS: 5, XDP: 6, TCX: 11, SOCKMAP: 14 } as const;

export type AttachTarget =
  | { kind: 'xdp'; ifindex: number; ifname?: string }
  | { kind: 'cgroup'; path: string }
  | { kind: 'netns'; path: string }
  | { kind: 'sockmap'; map: BpfMap; verdict?: 'stream_verdict' | 'skb_verdict' };

export interface LinkInfo {
  type: number;
  id: number;
  progId: number;
  /** cgroup links */
  cgroupId?: bigint;
  /** netns links */
  netnsIno?: number;
  /** XDP links: 0 once the device is gone */
  ifindex?: number;
  /** sockmap links: 0 once the map is gone */
  mapId?: number;
  attachType?: number;
}

export function linkInfo(fd: number): LinkInfo {
  const buf = Buffer.alloc(64);
  const len = new Uint32Array([buf.length]);
  const r = libbpf().bpf_obj_get_info_by_fd(fd, buf, len);
  if (r !== 0) {
    const errno = r < 0 ? -r : lastErrno();
    throw new BpfError({ what: `read link info (fd ${fd})`, errno, reason: strerror(errno) });
  }
  const info: LinkInfo = { type: buf.readUInt32LE(0), id: buf.readUInt32LE(4), progId: buf.readUInt32LE(8) };
  const u = 16;
  switch (info.type) {
    case LinkType.CGROUP:
      info.cgroupId = buf.readBigUInt64LE(u);
      info.attachType = buf.readUInt32LE(u + 8);
      break;
    case LinkType.NETNS:
      info.netnsIno = buf.readUInt32LE(u);
      info.attachType = buf.readUInt32LE(u + 4);
      break;
    case LinkType.XDP:
      info.ifindex = buf.readUInt32LE(u);
      break;
    case LinkType.SOCKMAP:
      info.mapId = buf.readUInt32LE(u);
      info.attachType = buf.readUInt32LE(u + 4);
      break;
  }
  return info;
}

/** The fields of /proc/self/fdinfo/<fd>: every BPF fd says there what it is (map_id, prog_id, link_id...). */
export function bpfFdInfo(fd: number): Record<string, string> {
  const text = readFdInfo(fd);
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+):\s*(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

function readFdInfo(fd: number): string {
  return readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
}

function idOfFd(fd: number, key: 'prog_id' | 'map_id'): number {
  const v = bpfFdInfo(fd)[key];
  if (v === undefined) throw new Error(`fd ${fd} has no ${key} in /proc/self/fdinfo`);
  return Number(v);
}

/** An attachment this process holds: a link fd (pinned at pinPath), or a legacy prog_attach. */
export class AttachedLink {
  private released = false;

  constructor(
    readonly pinPath: string,
    readonly target: AttachTarget,
    /** true when an existing pinned link was adopted (program swapped) instead of created. */
    readonly adopted: boolean,
    private readonly fd: number,
    private readonly libbpfLink: LinkPtr | undefined,
    /** Set for sockmap verdicts attached with bpf_prog_attach (kernels without sockmap links). */
    private readonly legacy?: { progFd: number; targetFd: number; type: number },
  ) {}

  get kind(): AttachTarget['kind'] {
    return this.target.kind;
  }

  info(): LinkInfo | undefined {
    return this.fd >= 0 ? linkInfo(this.fd) : undefined;
  }

  /** Drops this process's reference; a pinned link stays attached. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.libbpfLink) libbpf().bpf_link__destroy(this.libbpfLink);
    else if (this.fd >= 0) closeSync(this.fd);
  }

  /** Detaches for good: forces the link off its target, removes the pin. Idempotent. */
  detach(): void {
    if (this.legacy) {
      if (!this.released) libbpf().bpf_prog_detach2(this.legacy.progFd, this.legacy.targetFd, this.legacy.type);
      this.released = true;
      return;
    }
    if (!this.released && this.fd >= 0) forceDetachFd(this.fd);
    this.release();
    detachPinnedLink(this.pinPath);
  }
}

function forceDetachFd(fd: number): void {
  const r = libbpf().bpf_link_detach(fd);
  // EINVAL/ENOLINK-ish answers mean the link is already defunct (device or cgroup gone).
  if (r !== 0 && -r !== EINVAL && -r !== ENOENT && -r !== 67 /* ENOLINK */ && -r !== EOPNOTSUPP) {
    throw new BpfError({ what: `detach link (fd ${fd})`, errno: -r, reason: strerror(-r) });
  }
}

/** Detaches and unpins the link pinned at path; nothing to do when there is none. */
export function detachPinnedLink(path: string): void {
  if (!existsSync(path)) return;
  const fd = libbpf().bpf_obj_get(path);
  if (fd >= 0) {
    try {
      forceDetachFd(fd);
    } finally {
      closeSync(fd);
    }
  }
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Does the pinned link still serve this target (and is not defunct)? */
function linkMatches(info: LinkInfo, target: AttachTarget): boolean {
  switch (target.kind) {
    case 'xdp':
      return info.type === LinkType.XDP && info.ifindex === target.ifindex;
    case 'cgroup':
      return info.type === LinkType.CGROUP && info.cgroupId === BigInt(statSync(target.path).ino);
    case 'netns':
      return info.type === LinkType.NETNS && info.netnsIno === statSync(target.path).ino;
    case 'sockmap':
      return info.type === LinkType.SOCKMAP && info.mapId === idOfFd(target.map.fd, 'map_id') && info.attachType === sockmapAttachType(target);
  }
}

function sockmapAttachType(t: Extract<AttachTarget, { kind: 'sockmap' }>): number {
  return t.verdict === 'skb_verdict' ? AttachType.SK_SKB_VERDICT : AttachType.SK_SKB_STREAM_VERDICT;
}

function describe(target: AttachTarget): string {
  switch (target.kind) {
    case 'xdp':
      return `XDP on interface ${target.ifname ?? ''}#${target.ifindex}`;
    case 'cgroup':
      return `cgroup ${target.path}`;
    case 'netns':
      return `network namespace ${target.path}`;
    case 'sockmap':
      return `${target.verdict ?? 'stream_verdict'} of map ${target.map.name}`;
  }
}

function attachError(prog: BpfProgram, target: AttachTarget, errno: number, messages: LibbpfMessage[]): BpfError {
  return new BpfError({
    what: `attach program ${prog.name} to ${describe(target)}`,
    errno,
    reason: strerror(errno),
    libbpfLog: messages,
    remedy: remedyFor(errno, 'attach'),
  });
}

/**
 * Attaches prog to target through a link pinned at pinPath. An existing pinned link for the same
 * target is adopted (its program replaced by prog); a stale one (other target, or defunct) is
 * detached first.
 */
export function attachPinned(prog: BpfProgram, target: AttachTarget, pinPath: string): AttachedLink {
  const lib = libbpf();
  if (existsSync(pinPath)) {
    const fd = lib.bpf_obj_get(pinPath);
    if (fd >= 0) {
      let keep = false;
      try {
        const info = linkInfo(fd);
        if (linkMatches(info, target)) {
          if (info.progId !== idOfFd(prog.fd, 'prog_id')) {
            const r = lib.bpf_link_update(fd, prog.fd, null);
            if (r !== 0) throw new BpfError({ what: `replace the program of pinned link ${pinPath} with ${prog.name}`, errno: -r, reason: strerror(-r) });
          }
          keep = true;
          return new AttachedLink(pinPath, target, true, fd, undefined);
        }
      } finally {
        if (!keep) closeSync(fd);
      }
    }
    detachPinnedLink(pinPath);
  }

  if (target.kind === 'sockmap') return attachSockmap(prog, target, pinPath);

  const { value: link, messages } = withLibbpfLog(() => {
    switch (target.kind) {
      case 'xdp':
        return lib.bpf_program__attach_xdp(prog.ptr, target.ifindex);
      case 'cgroup': {
        const cg = openSync(target.path, 'r');
        try {
          return lib.bpf_program__attach_cgroup(prog.ptr, cg);
        } finally {
          closeSync(cg);
        }
      }
      case 'netns': {
        const ns = openSync(target.path, 'r');
        try {
          return lib.bpf_program__attach_netns(prog.ptr, ns);
        } finally {
          closeSync(ns);
        }
      }
    }
  });
  if (!link) throw attachError(prog, target, lastErrno(), messages);
  const r = lib.bpf_link__pin(link, pinPath);
  if (r !== 0) {
    lib.bpf_link__destroy(link);
    throw new BpfError({ what: `pin link of ${prog.name} at ${pinPath}`, errno: -r, reason: strerror(-r), remedy: remedyFor(-r, 'pin') });
  }
  return new AttachedLink(pinPath, target, false, lib.bpf_link__fd(link), link);
}

function attachSockmap(prog: BpfProgram, target: Extract<AttachTarget, { kind: 'sockmap' }>, pinPath: string): AttachedLink {
  const lib = libbpf();
  const type = sockmapAttachType(target);
  const { value: fd, messages } = withLibbpfLog(() => lib.bpf_link_create(prog.fd, target.map.fd, type, null));
  if (fd >= 0) {
    const r = lib.bpf_obj_pin(fd, pinPath);
    if (r !== 0) {
      closeSync(fd);
      throw new BpfError({ what: `pin sockmap link of ${prog.name} at ${pinPath}`, errno: -r, reason: strerror(-r), remedy: remedyFor(-r, 'pin') });
    }
    return new AttachedLink(pinPath, target, false, fd, undefined);
  }
  // Sockmap links exist since Linux 6.10; older kernels attach to the map itself, and the
  // attachment lives as long as the (pinned) map.
  if (-fd === EINVAL || -fd === EOPNOTSUPP || -fd === 524) {
    const r = lib.bpf_prog_attach(prog.fd, target.map.fd, type, 0);
    if (r !== 0) throw attachError(prog, target, -r, messages);
    return new AttachedLink(pinPath, target, false, -1, undefined, { progFd: prog.fd, targetFd: target.map.fd, type });
  }
  throw attachError(prog, target, -fd, messages);
}

// ---- tc (clsact) through libbpf's netlink API -------------------------------------------

const TcHook = defineStruct('bpf_tc_hook', [
  ['sz', 'u64'],
  ['ifindex', 'i32'],
  ['attach_point', 'u32'],
  ['parent', 'u32'],
  ['_pad', 'u32'],
] as const);

const TcOpts = defineStruct('bpf_tc_opts', [
  ['sz', 'u64'],
  ['prog_fd', 'i32'],
  ['flags', 'u32'],
  ['prog_id', 'u32'],
  ['handle', 'u32'],
  ['priority', 'u32'],
  ['_pad', 'u32'],
] as const);

const TC_POINT = { ingress: 1, egress: 2 } as const;
const BPF_TC_F_REPLACE = 1;

export interface TcSpec {
  ifindex: number;
  point: 'ingress' | 'egress';
  /** Filter handle and priority identify our filter on the hook (defaults 1 and 1). */
  handle?: number;
  priority?: number;
}

function tcHook(spec: TcSpec): Buffer {
  return TcHook.encode({ sz: BigInt(TcHook.size), ifindex: spec.ifindex, attach_point: TC_POINT[spec.point], parent: 0 });
}

function tcOpts(spec: TcSpec, progFd: number, flags: number): Buffer {
  return TcOpts.encode({ sz: BigInt(TcOpts.size), prog_fd: progFd, flags, prog_id: 0, handle: spec.handle ?? 1, priority: spec.priority ?? 1 });
}

/**
 * Attaches a tc program (creating the clsact qdisc if needed). Replaces our own filter if it is
 * already there (same handle and priority), so a restart adopts instead of stacking filters.
 * Returns whether the clsact hook was created by this call.
 */
export function tcAttach(prog: BpfProgram, spec: TcSpec): { createdHook: boolean; progId: number } {
  const lib = libbpf();
  const hook = tcHook(spec);
  const { value: hr, messages: hm } = withLibbpfLog(() => lib.bpf_tc_hook_create(hook));
  if (hr !== 0 && -hr !== constants.errno.EEXIST) {
    throw new BpfError({ what: `create clsact qdisc on ifindex ${spec.ifindex}`, errno: -hr, reason: strerror(-hr), libbpfLog: hm, remedy: remedyFor(-hr, 'attach') });
  }
  const opts = tcOpts(spec, prog.fd, BPF_TC_F_REPLACE);
  const { value: r, messages } = withLibbpfLog(() => lib.bpf_tc_attach(hook, opts));
  if (r !== 0) {
    throw new BpfError({ what: `attach tc ${spec.point} program ${prog.name} on ifindex ${spec.ifindex}`, errno: -r, reason: strerror(-r), libbpfLog: messages, remedy: remedyFor(-r, 'attach') });
  }
  return { createdHook: hr === 0, progId: TcOpts.decode(opts).prog_id };
}

/** The program id of our tc filter, or undefined when it is not attached. */
export function tcQuery(spec: TcSpec): number | undefined {
  const opts = tcOpts(spec, 0, 0);
  const { value: r } = withLibbpfLog(() => libbpf().bpf_tc_query(tcHook(spec), opts));
  if (r === 0) return TcOpts.decode(opts).prog_id;
  if (-r === ENOENT || -r === EINVAL || -r === constants.errno.ENODEV) return undefined;
  throw new BpfError({ what: `query tc ${spec.point} filter on ifindex ${spec.ifindex}`, errno: -r, reason: strerror(-r) });
}

/** Removes our tc filter; nothing to do when it (or the device) is gone. */
export function tcDetach(spec: TcSpec): void {
  const opts = tcOpts(spec, 0, 0);
  const { value: r, messages } = withLibbpfLog(() => libbpf().bpf_tc_detach(tcHook(spec), opts));
  if (r !== 0 && -r !== ENOENT && -r !== EINVAL && -r !== constants.errno.ENODEV) {
    throw new BpfError({ what: `detach tc ${spec.point} filter on ifindex ${spec.ifindex}`, errno: -r, reason: strerror(-r), libbpfLog: messages });
  }
}

/**
 * Removes the clsact qdisc of an interface, and with it EVERY tc filter on it, ours or not. Only
 * call it for a hook that tcAttach reported as created by us.
 */
export function tcHookDestroy(ifindex: number): void {
  const hook = TcHook.encode({ sz: BigInt(TcHook.size), ifindex, attach_point: TC_POINT.ingress | TC_POINT.egress, parent: 0 });
  const { value: r } = withLibbpfLog(() => libbpf().bpf_tc_hook_destroy(hook));
  if (r !== 0 && -r !== ENOENT && -r !== EINVAL && -r !== constants.errno.ENODEV) {
    throw new BpfError({ what: `remove clsact qdisc on ifindex ${ifindex}`, errno: -r, reason: strerror(-r) });
  }
}
