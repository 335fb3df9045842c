// Network-namespace topologies for tests and benchmarks: hosts joined by veth links, addressed
// and routed, with processes started inside them. Every name carries NETNS_PREFIX, the run id of
// the owning test run and a random tag, so concurrent runs never collide, and destroy() (or the
// orphan sweep) removes everything. A run id is owned by a live PID recorded under OWNERS_DIR;
// only namespaces whose owner is gone count as orphans.
// Uses `nsenter --net=` rather than `ip netns exec`, which remounts /sys and hides /sys/fs/bpf.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
export const NETNS_PREFIX = 'exds-';
const OWNERS_DIR = '/run/ebpf-xds-test/owners';

/**
 * The id of this test run: inherited through EXDS_RUN_ID (set by the global setup before workers
 * start), or created here and owned by this process (benchmarks, ad-hoc scripts).
 */
export function testRunId(): string {
  let id = process.env['EXDS_RUN_ID'];
  if (!id) {
    id = randomBytes(3).toString('hex');
    mkdirSync(OWNERS_DIR, { recursive: true });
    writeFileSync(`${OWNERS_DIR}/${id}`, String(process.pid));
    process.env['EXDS_RUN_ID'] = id;
  }
  return id;
}

/** Forgets the owner record of this process's run (call when the run is over). */
export function releaseTestRunId(): void {
  const id = process.env['EXDS_RUN_ID'];
  if (id) rmSync(`${OWNERS_DIR}/${id}`, { force: true });
}

function ownerAlive(runId: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(`${OWNERS_DIR}/${runId}`, 'utf8'));
  } catch {
    return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function runIdOf(netns: string): string {
  return netns.slice(NETNS_PREFIX.length).split('-')[0] ?? '';
}

export async function sh(cmd: string, args: string[], opts: { allowFail?: boolean; input?: string } = {}): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { maxBuffer: 64 << 20 });
    return stdout;
  } catch (e) {
    if (opts.allowFail) return '';
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err.stderr ?? '').trim() || err.message}`);
  }
}

export interface LinkSpec {
  a: string;
  b: string;
  /** Interface names inside a and b (default eth<n> per host, in link order). */
  ifA?: string;
  ifB?: string;
  mtu?: number;
}

export interface TopologySpec {
  /** Short label for names, e.g. "skb" → netns exds-skb-1a2b-client. */
  label: string;
  hosts: string[];
  links: LinkSpec[];
  /** host → neighbour host used as default gateway (both IPv4 and IPv6). */
  gateways?: Record<string, string>;
  /** hosts that forward packets (net.ipv4.ip_forward, IPv6 forwarding). */
  routers?: string[];
}

export interface Iface {
  host: string;
  name: string;
  ifindex: number;
  mac: string;
  ipv4: string;
  ipv6: string;
  peer: { host: string; name: string; ipv4: string; ipv6: string };
}

export class Host {
  readonly procs = new Set<ChildProcess>();
  constructor(
    readonly name: string,
    readonly netns: string,
  ) {}

  get nsPath(): string {
    return `/var/run/netns/${this.netns}`;
  }

  /** Runs a command inside the namespace and returns stdout; throws with stderr on failure. */
  exec(cmd: string, args: string[] = [], opts: { allowFail?: boolean } = {}): Promise<string> {
    return sh('nsenter', [`--net=${this.nsPath}`, cmd, ...args], opts);
  }

  /** Starts a long-running process inside the namespace; destroy() kills it. */
  spawn(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('nsenter', [`--net=${this.nsPath}`, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.procs.add(child);
    child.once('exit', () => this.procs.delete(child));
    return child;
  }

  async killAll(): Promise<void> {
    const waits = [...this.procs].map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once('exit', () => resolve());
          p.kill('SIGKILL');
        }),
    );
    await Promise.all(waits);
  }
}

export class Topology {
  readonly hosts = new Map<string, Host>();
  readonly ifaces: Iface[] = [];
  private destroyed = false;

  private constructor(readonly tag: string) {}

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host "${name}" in topology ${this.tag} (have: ${[...this.hosts.keys()].join(', ')})`);
    return h;
  }

  /** The interface of `host` that faces `peer`. */
  iface(host: string, peer: string): Iface {
    const i = this.ifaces.find((x) => x.host === host && x.peer.host === peer);
    if (!i) throw new Error(`no link between ${host} and ${peer} in topology ${this.tag}`);
    return i;
  }

  static async create(spec: TopologySpec): Promise<Topology> {
    await requireRoot();
    const tag = `${NETNS_PREFIX}${testRunId()}-${spec.label}-${randomBytes(2).toString('hex')}`;
    const topo = new Topology(tag);
    try {
      for (const name of spec.hosts) {
        const h = new Host(name, `${tag}-${name}`);
        await sh('ip', ['netns', 'add', h.netns]);
        topo.hosts.set(name, h);
        await h.exec('ip', ['link', 'set', 'lo', 'up']);
      }
      const ifCount = new Map<string, number>();
      const nextIf = (host: string) => {
        const n = ifCount.get(host) ?? 0;
        ifCount.set(host, n + 1);
        return `eth${n}`;
      };
      for (const [i, link] of spec.links.entries()) {
        const a = topo.host(link.a);
        const b = topo.host(link.b);
        const ifA = link.ifA ?? nextIf(link.a);
        const ifB = link.ifB ?? nextIf(link.b);
        await sh('ip', ['link', 'add', 'name', ifA, 'netns', a.netns, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.netns]);
        const v4 = (side: number) => `10.${200 + (i >> 8)}.${i & 255}.${side}`;
        const v6 = (side: number) => `fd00:e0:${i.toString(16)}::${side}`;
        for (const [h, ifn, side] of [
          [a, ifA, 1],
          [b, ifB, 2],
        ] as const) {
          if (link.mtu) await h.exec('ip', ['link', 'set', ifn, 'mtu', String(link.mtu)]);
          await h.exec('ip', ['addr', 'add', `${v4(side)}/24`, 'dev', ifn]);
          await h.exec('ip', ['-6', 'addr', 'add', `${v6(side)}/64`, 'dev', ifn, 'nodad']);
          await h.exec('ip', ['link', 'set', ifn, 'up']);
        }
        for (const [h, ifn, side, peerHost, peerIf, peerSide] of [
          [a, ifA, 1, b, ifB, 2],
          [b, ifB, 2, a, ifA, 1],
        ] as const) {
          const info = JSON.parse(await h.exec('ip', ['-j', 'link', 'show', ifn])) as { ifindex: number; address: string }[];
          topo.ifaces.push({
            host: h.name,
            name: ifn,
            ifindex: info[0]!.ifindex,
            mac: info[0]!.address,
            ipv4: v4(side),
            ipv6: v6(side),
            peer: { host: peerHost.name, name: peerIf, ipv4: v4(peerSide), ipv6: v6(peerSide) },
          });
        }
      }
      for (const r of spec.routers ?? []) {
        const h = topo.host(r);
        await h.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
      }
      for (const [host, gw] of Object.entries(spec.gateways ?? {})) {
        const via = topo.iface(gw, host);
        await topo.host(host).exec('ip', ['route', 'add', 'default', 'via', via.ipv4]);
        await topo.host(host).exec('ip', ['-6', 'route', 'add', 'default', 'via', via.ipv6]);
      }
      return topo;
    } catch (e) {
      await topo.destroy();
      throw e;
    }
  }

  /** Kills every process started in the topology and deletes its namespaces. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const h of this.hosts.values()) await h.killAll();
    for (const h of this.hosts.values()) await sh('ip', ['netns', 'del', h.netns], { allowFail: true });
  }
}

/** Fails loudly (never skips) when the test cannot do kernel work here. */
export async function requireRoot(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('this test needs root (CAP_BPF, CAP_NET_ADMIN); run `npm test` as root');
  const mounts = await sh('cat', ['/proc/mounts']);
  if (!/^\S+ \/sys\/fs\/bpf bpf /m.test(mounts)) throw new Error('bpffs is not mounted at /sys/fs/bpf; `npm test` mounts it, or run: mount -t bpf bpf /sys/fs/bpf');
}

/** Our namespaces: those of this run (scope "run"), or those whose owning run is gone ("orphans"). */
export async function leftoverNetns(scope: 'run' | 'orphans'): Promise<string[]> {
  const out = await sh('ip', ['netns', 'list'], { allowFail: true });
  const mine = process.env['EXDS_RUN_ID'];
  return out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(NETNS_PREFIX))
    .filter((n) => (scope === 'run' ? runIdOf(n) === mine : !ownerAlive(runIdOf(n))));
}

/** Deletes our namespaces in `scope` and kills what still runs inside them. */
export async function sweepLeftoverNetns(scope: 'run' | 'orphans'): Promise<string[]> {
  const left = await leftoverNetns(scope);
  for (const ns of left) {
    const pids = await sh('ip', ['netns', 'pids', ns], { allowFail: true });
    for (const pid of pids.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await sh('ip', ['netns', 'del', ns], { allowFail: true });
  }
  return left;
}
