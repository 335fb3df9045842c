// cgroup v2 paths for the SKB splice's cgroup/sock_release program. The agent attaches to a cgroup
// it chooses, by default its own (from /proc/self/cgroup), never blindly to the root: the program
// then runs only for the sockets of processes in that cgroup (the agent's proxy, or a patched Envoy's).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Mount point of the cgroup v2 hierarchy (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified). */
export function cgroup2Mount(): string {
  const line = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[2] === 'cgroup2');
  if (!line) throw new Error('no cgroup v2 hierarchy is mounted; mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) so the SKB splice cleanup can be attached');
  return line[1]!;
}

/** The cgroup v2 directory of a process (default: this one). */
export function cgroupOf(pid: number | 'self' = 'self'): string {
  const text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  const v2 = text.split('\n').find((l) => l.startsWith('0::'));
  if (v2 === undefined) throw new Error(`process ${pid} has no cgroup v2 membership in /proc/${pid}/cgroup`);
  return join(cgroup2Mount(), v2.slice(3));
}

/** Creates (or reuses) a child cgroup under parent. */
export function makeCgroup(parent: string, name: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`"${name}" is not a valid cgroup name`);
  const path = join(parent, name);
  mkdirSync(path, { recursive: true });
  return path;
}

/** Moves a process (all its threads) into a cgroup. */
export function moveToCgroup(path: string, pid: number): void {
  writeFileSync(join(path, 'cgroup.procs'), String(pid));
}

export function cgroupPids(path: string): number[] {
  if (!existsSync(path)) return [];
  return readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
}

/**
 * Removes a cgroup; processes still in it move to the parent first (rmdir needs it empty).
 * Idempotent.
 */
export function removeCgroup(path: string): void {
  if (!existsSync(path)) return;
  const parent = join(path, '..');
  for (const pid of cgroupPids(path)) {
    try {
      moveToCgroup(parent, pid);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e; // exited meanwhile
    }
  }
  rmdirSync(path);
}
