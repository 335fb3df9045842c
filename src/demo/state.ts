// Where a demo run keeps its kernel and runtime state, named by the pid of the demo process, and
// the sweep that removes what a demo killed without warning (SIGKILL, power loss) left behind.
// Only state whose owner pid is gone is touched, so two demos can run side by side.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Mount, removeCgroup } from '../agent/bpf/cgroup.js';
import { removePinTree } from '../agent/bpf/pins.js';
import { alive, deleteNetns, demoNetnsList } from './netns.js';

export const DEMO_PIN_BASE = '/sys/fs/bpf/ebpf-xds-demo';
export const DEMO_RUN_BASE = '/run/ebpf-xds-demo';
export const DEMO_CGROUP_PREFIX = 'ebpf-xds-demo-';

export interface RunState {
  owner: number;
  /** The agent's --pin-root. */
  pinRoot: string;
  /** Unix sockets and TLS files of this run. */
  runDir: string;
  /** The cgroup v2 directory of the proxy's sockets (SKB splice cleanup) (the agent moves itself into it). */
  cgroup: string;
}

export function runState(owner: number, pinBase = DEMO_PIN_BASE): RunState {
  return {
    owner,
    pinRoot: join(pinBase, String(owner)),
    runDir: join(DEMO_RUN_BASE, String(owner)),
    cgroup: join(cgroup2Mount(), `${DEMO_CGROUP_PREFIX}${owner}`),
  };
}

const owned = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((d) => /^\d+$/.test(d) && !alive(Number(d))) : []);

/** Removes the state of demos that are gone; returns what it removed. */
export async function sweepStaleDemos(pinBase = DEMO_PIN_BASE): Promise<string[]> {
  const removed: string[] = [];
  // Namespaces first: deleting one kills what ran in it (an agent left behind, its workers).
  for (const ns of await demoNetnsList()) {
    if (alive(ns.owner)) continue;
    await deleteNetns(ns.name);
    removed.push(`namespace ${ns.name}`);
  }
  const mount = cgroup2Mount();
  for (const d of readdirSync(mount).filter((n) => n.startsWith(DEMO_CGROUP_PREFIX))) {
    if (alive(Number(d.slice(DEMO_CGROUP_PREFIX.length)))) continue;
    removeCgroup(join(mount, d));
    removed.push(`cgroup ${join(mount, d)}`);
  }
  for (const d of owned(pinBase)) {
    removePinTree(join(pinBase, d));
    removed.push(`pins ${join(pinBase, d)}`);
  }
  for (const d of owned(DEMO_RUN_BASE)) {
    rmSync(join(DEMO_RUN_BASE, d), { recursive: true, force: true });
    removed.push(`run directory ${join(DEMO_RUN_BASE, d)}`);
  }
  return removed;
}
