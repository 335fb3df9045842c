// The node's network interfaces and routes, as the agent's network namespace sees them (through
// iproute2's JSON output, which asks the kernel over netlink in the caller's namespace), and the
// pure resolution of a listener's interface reference against them.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { InterfaceRef } from './desired-state.js';

const execFileP = promisify(execFile);

export interface NetInterface {
  name: string;
  index: number;
  up: boolean;
  loopback: boolean;
  /** Addresses with prefix length, e.g. 10.0.0.1/24, fd00::1/64. */
  addresses: string[];
}

async function ip(args: string[]): Promise<unknown> {
  let stdout: string;
  try {
    ({ stdout } = await execFileP('ip', ['-j', ...args], { maxBuffer: 16 << 20 }));
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new Error('the "ip" command (iproute2) is missing; install iproute2, the agent reads interfaces and routes with it');
    throw new Error(`ip ${args.join(' ')} failed: ${(err.stderr ?? '').trim() || err.message}`);
  }
  return stdout.trim() === '' ? [] : (JSON.parse(stdout) as unknown);
}

/** Every interface of this network namespace with its addresses. */
export async function listInterfaces(): Promise<NetInterface[]> {
  const rows = (await ip(['addr', 'show'])) as Array<{ ifindex: number; ifname: string; flags?: string[]; addr_info?: Array<{ local?: string; prefixlen?: number }> }>;
  return rows.map((r) => ({
    name: r.ifname,
    index: r.ifindex,
    up: (r.flags ?? []).includes('UP'),
    loopback: (r.flags ?? []).includes('LOOPBACK'),
    addresses: (r.addr_info ?? []).filter((a) => a.local).map((a) => `${a.local}/${a.prefixlen ?? ''}`),
  }));
}

/** The interface packets to `address` leave through (undefined: no route, or a local address). */
export async function egressInterface(address: string): Promise<string | undefined> {
  let rows: Array<{ dev?: string; type?: string }>;
  try {
    rows = (await ip(['route', 'get', address])) as Array<{ dev?: string; type?: string }>;
  } catch (e) {
    if (/unreachable|No route|Network is unreachable/i.test((e as Error).message)) return undefined;
    throw e;
  }
  const r = rows[0];
  if (!r || r.type === 'local' || !r.dev) return undefined;
  return r.dev;
}

/**
 * Resolves an interface reference on this node. Returns the interface, or an error that names
 * the reference, the node and what it has.
 */
export function resolveInterface(ref: InterfaceRef, ifaces: readonly NetInterface[], nodeId: string): { iface: NetInterface } | { error: string } {
  const have = ifaces.map((i) => i.name).join(', ') || 'none';
  if (ref.name !== undefined) {
    const found = ifaces.find((i) => i.name === ref.name);
    return found ? { iface: found } : { error: `interface "${ref.name}" not found on node ${nodeId} (have: ${have})` };
  }
  if (ref.index !== undefined) {
    const found = ifaces.find((i) => i.index === ref.index);
    return found ? { iface: found } : { error: `interface index ${ref.index} not found on node ${nodeId} (have: ${ifaces.map((i) => `${i.name}=${i.index}`).join(', ') || 'none'}); prefer interface names, indexes differ between nodes` };
  }
  return { error: 'no interface given' };
}

/** Interfaces that hold `address` (for 0.0.0.0 and ::, every up interface but loopback). */
export function interfacesForAddress(address: string, ifaces: readonly NetInterface[]): NetInterface[] {
  if (address === '0.0.0.0' || address === '::') return ifaces.filter((i) => i.up && !i.loopback);
  return ifaces.filter((i) => i.addresses.some((a) => a.slice(0, a.lastIndexOf('/')) === address));
}
