// The bpffs pin layout of one datapath root, and its complete removal. Layout (DESIGN.md, "Agent
// ↔ kernel contract"), under the root (default /sys/fs/bpf/ebpf-xds/):
//   skb/                SKB splice maps, link_release, link_verdict
//   steer/              sk_lookup maps, link_sk_lookup
//   firewall/<ifname>/  drop-rule maps, link_xdp
//   xdp/<ifname>/       XDP splice (its own module decides the names inside)
// Tests use a unique root per test, so nothing they pin can collide with an agent's.
import { closeSync, existsSync, readdirSync, readFileSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { libbpf } from './libbpf.js';
import { bpfFdInfo, detachPinnedLink } from './link.js';

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/ebpf-xds';

const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;

export class PinLayout {
  readonly root: string;

  constructor(root: string = DEFAULT_PIN_ROOT) {
    this.root = resolve(root);
    const mount = bpffsMountFor(this.root);
    if (!mount) {
      throw new Error(`pin root ${this.root} is not on a bpffs mount; mount one (mount -t bpf bpf /sys/fs/bpf) or choose a root under /sys/fs/bpf`);
    }
  }

  get skb(): string {
    return join(this.root, 'skb');
  }
  get steer(): string {
    return join(this.root, 'steer');
  }
  firewall(ifname: string): string {
    return join(this.root, 'firewall', checkIfname(ifname));
  }
  xdp(ifname: string): string {
    return join(this.root, 'xdp', checkIfname(ifname));
  }
}

function checkIfname(ifname: string): string {
  if (!IFNAME.test(ifname)) throw new Error(`"${ifname}" is not a valid interface name (1-15 characters, no "/" or spaces)`);
  return ifname;
}

/** The bpffs mount point that contains path, if any. */
export function bpffsMountFor(path: string): string | undefined {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'bpf')
    .map((f) => f[1]!)
    .sort((a, b) => b.length - a.length);
  return mounts.find((m) => path === m || path.startsWith(m.endsWith('/') ? m : `${m}/`));
}

export type PinKind = 'link' | 'map' | 'prog' | 'unknown';

/** What a pinned object is (from its fdinfo). */
export function pinKind(path: string): PinKind {
  const fd = libbpf().bpf_obj_get(path);
  if (fd < 0) return 'unknown';
  try {
    const info = bpfFdInfo(fd);
    if ('link_type' in info || 'link_id' in info) return 'link';
    if ('map_type' in info) return 'map';
    if ('prog_type' in info) return 'prog';
    return 'unknown';
  } finally {
    closeSync(fd);
  }
}

/** Every pinned object under dir (files only), depth first. */
export function listPins(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listPins(p));
    else out.push(p);
  }
  return out;
}

/**
 * Removes everything under dir: links are detached first (so programs stop before their maps
 * go), then maps and programs are unpinned and the directories removed. Idempotent.
 */
export function removePinTree(dir: string): { links: number; others: number } {
  if (!existsSync(dir)) return { links: 0, others: 0 };
  if (!bpffsMountFor(resolve(dir))) throw new Error(`refusing to remove ${dir}: not on a bpffs mount`);
  const pins = listPins(dir);
  let links = 0;
  let others = 0;
  for (const p of pins) {
    if (pinKind(p) === 'link') {
      detachPinnedLink(p);
      links++;
    }
  }
  for (const p of pins) {
    if (!existsSync(p)) continue;
    unlinkSync(p);
    others++;
  }
  removeDirs(dir);
  return { links, others };
}

function removeDirs(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeDirs(join(dir, e.name));
  rmdirSync(dir);
}
