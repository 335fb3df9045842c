// Network namespaces of the demo: creating, entering (nsenter --net, which keeps /sys/fs/bpf
// visible, unlike `ip netns exec`), deleting, and finding the ones a demo that died left behind.
// Names are `xdsdemo-<pid>-<host>`, the pid being the demo process that owns them.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const DEMO_NETNS_PREFIX = 'xdsdemo-';

/** Runs a command and returns its stdout; the error names the command and carries its stderr. */
export async function run(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === 'ENOENT') throw new Error(`${cmd} is not installed (npm start installs it: it runs scripts/setup.mjs first)`);
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err.stderr ?? '').trim() || err.message}`);
  }
}

export class Netns {
  constructor(
    /** Short name in the demo (client, mb, s1, ...). */
    readonly host: string,
    /** The namespace's name under /var/run/netns. */
    readonly name: string,
  ) {}

  get path(): string {
    return `/var/run/netns/${this.name}`;
  }

  exec(cmd: string, args: string[] = []): Promise<string> {
    return run('nsenter', [`--net=${this.path}`, cmd, ...args]);
  }

  /** Starts a process inside the namespace (nsenter execs it: the child's pid is the process's). */
  spawn(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    return spawn('nsenter', [`--net=${this.path}`, cmd, ...args], opts);
  }
}

export async function createNetns(owner: number, host: string): Promise<Netns> {
  const ns = new Netns(host, `${DEMO_NETNS_PREFIX}${owner}-${host}`);
  await run('ip', ['netns', 'add', ns.name]);
  await ns.exec('ip', ['link', 'set', 'lo', 'up']);
  return ns;
}

/** Deletes a namespace after killing what still runs in it (a namespace outlives no process, but its veths would). */
export async function deleteNetns(name: string): Promise<void> {
  const pids = await run('ip', ['netns', 'pids', name]).catch(() => '');
  for (const pid of pids.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const list = await run('ip', ['netns', 'list']);
  if (!list.split('\n').some((l) => l.split(' ')[0] === name)) return;
  await run('ip', ['netns', 'del', name]);
}

/** Demo namespaces, with the pid of the demo that made them. */
export async function demoNetnsList(): Promise<Array<{ name: string; owner: number }>> {
  const out = await run('ip', ['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(DEMO_NETNS_PREFIX))
    .map((name) => ({ name, owner: Number(name.slice(DEMO_NETNS_PREFIX.length).split('-')[0]) }));
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
