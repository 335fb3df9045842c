// tc programs attached through a TCX link (Linux 6.6+): a bpf_link on the device's ingress or
// egress hook, pinnable like XDP links, with no clsact qdisc to create or clean up. A pinned
// link for the same hook is adopted on restart (program swapped with bpf_link_update), never
// stacked. Kernels without TCX answer EINVAL; callers then fall back to the netlink tc API
// (tcAttach in link.ts). Call these inside the device's network namespace (netns.ts withNetns):
// the ifindex is resolved against the calling thread's namespace.
import { closeSync, existsSync } from 'node:fs';
import { constants } from 'node:os';
import { BpfError, remedyFor } from './errors.js';
import { libbpf, strerror, withLibbpfLog } from './libbpf.js';
import { detachPinnedLink, linkInfo, LinkType } from './link.js';
import type { BpfProgram } from './object.js';

export const TcxAttachType = { ingress: 46, egress: 47 } as const;
export type TcxPoint = keyof typeof TcxAttachType;

/** A TCX link held by this process and pinned at pinPath. */
export interface TcxLink {
  pinPath: string;
  ifindex: number;
  point: TcxPoint;
  adopted: boolean;
  /** Drops our fd; the pinned link stays attached. */
  release(): void;
  /** Detaches for good and removes the pin. Idempotent. */
  detach(): void;
}

/** The ifindex and hook of a TCX link fd (bpf_link_info.tcx). */
function tcxInfo(fd: number): { ifindex: number; attachType: number; progId: number } | undefined {
  const info = linkInfo(fd);
  if (info.type !== LinkType.TCX) return undefined;
  // linkInfo decodes the union only for the types link.ts knows; read the tcx member ourselves.
  const buf = Buffer.alloc(64);
  const len = new Uint32Array([buf.length]);
  if (libbpf().bpf_obj_get_info_by_fd(fd, buf, len) !== 0) return undefined;
  return { ifindex: buf.readUInt32LE(16), attachType: buf.readUInt32LE(20), progId: info.progId };
}

function progId(prog: BpfProgram): number {
  const buf = Buffer.alloc(256);
  const len = new Uint32Array([buf.length]);
  const r = libbpf().bpf_obj_get_info_by_fd(prog.fd, buf, len);
  if (r !== 0) throw new BpfError({ what: `read program info of ${prog.name}`, errno: -r, reason: strerror(-r) });
  return buf.readUInt32LE(4); // bpf_prog_info: type, id
}

function holder(pinPath: string, ifindex: number, point: TcxPoint, adopted: boolean, fd: number): TcxLink {
  let open = true;
  const release = () => {
    if (open) closeSync(fd);
    open = false;
  };
  return {
    pinPath,
    ifindex,
    point,
    adopted,
    release,
    detach() {
      if (open) {
        const r = libbpf().bpf_link_detach(fd);
        if (r !== 0 && -r !== constants.errno.EINVAL && -r !== constants.errno.ENOENT && -r !== 67 /* ENOLINK */) {
          throw new BpfError({ what: `detach TCX link ${pinPath}`, errno: -r, reason: strerror(-r) });
        }
      }
      release();
      detachPinnedLink(pinPath);
    },
  };
}

/**
 * Attaches prog to the ingress or egress hook of ifindex through a TCX link pinned at pinPath,
 * adopting a pinned link already there. Returns undefined when the kernel has no TCX (before
 * Linux 6.6): use the netlink tc API instead.
 */
export function attachTcxPinned(prog: BpfProgram, ifindex: number, point: TcxPoint, pinPath: string): TcxLink | undefined {
  const lib = libbpf();
  const type = TcxAttachType[point];
  if (existsSync(pinPath)) {
    const fd = lib.bpf_obj_get(pinPath);
    if (fd >= 0) {
      let keep = false;
      try {
        const info = tcxInfo(fd);
        if (info && info.ifindex === ifindex && info.attachType === type) {
          if (info.progId !== progId(prog)) {
            const r = lib.bpf_link_update(fd, prog.fd, null);
            if (r !== 0) throw new BpfError({ what: `replace the program of pinned TCX link ${pinPath} with ${prog.name}`, errno: -r, reason: strerror(-r) });
          }
          keep = true;
          return holder(pinPath, ifindex, point, true, fd);
        }
      } finally {
        if (!keep) closeSync(fd);
      }
    }
    detachPinnedLink(pinPath); // stale: another device, or defunct
  }
  const { value: fd, messages } = withLibbpfLog(() => lib.bpf_link_create(prog.fd, ifindex, type, null));
  if (fd < 0) {
    if (-fd === constants.errno.EINVAL && messages.length === 0) return undefined;
    throw new BpfError({ what: `attach ${prog.name} to TCX ${point} of ifindex ${ifindex}`, errno: -fd, reason: strerror(-fd), libbpfLog: messages, remedy: remedyFor(-fd, 'attach') });
  }
  const r = lib.bpf_obj_pin(fd, pinPath);
  if (r !== 0) {
    closeSync(fd);
    throw new BpfError({ what: `pin TCX link of ${prog.name} at ${pinPath}`, errno: -r, reason: strerror(-r), remedy: remedyFor(-r, 'pin') });
  }
  return holder(pinPath, ifindex, point, false, fd);
}
