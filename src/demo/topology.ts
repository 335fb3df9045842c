// The demo's network: a middlebox namespace (mb) routing between a client, two servers and a
// blocked client, each on its own veth link. mb runs the agent and its proxy; its eth0 faces the
// client (XDP splice attaches there and on the servers' links), eth3 faces the blocked client
// (the drop rule's XDP program attaches there: XDP splice holds the other interfaces' XDP slot).
import { createNetns, type Netns } from './netns.js';

export const DEMO_HOSTS = ['mb', 'client', 's1', 's2', 'blocked'] as const;
export type DemoHost = (typeof DEMO_HOSTS)[number];

/** mb's peers in link order: link i is 10.99.i.0/24, mb .1 on eth<i>, the peer .2 on its eth0. */
const PEERS = ['client', 's1', 's2', 'blocked'] as const;

export interface DemoAddresses {
  /** mb as the client reaches it (listeners bind 0.0.0.0; clients connect here). */
  mbForClient: string;
  /** mb as the blocked client reaches it. */
  mbForBlocked: string;
  s1: string;
  s2: string;
  client: string;
  blocked: string;
  /** The blocked client's network, for the drop rule. */
  blockedNet: string;
  /** mb's interface facing the client (the XDP listener's interface). */
  clientIface: string;
}

export function demoAddresses(): DemoAddresses {
  const peer = (host: (typeof PEERS)[number]) => `10.99.${PEERS.indexOf(host)}.2`;
  const mb = (host: (typeof PEERS)[number]) => `10.99.${PEERS.indexOf(host)}.1`;
  return {
    mbForClient: mb('client'),
    mbForBlocked: mb('blocked'),
    s1: peer('s1'),
    s2: peer('s2'),
    client: peer('client'),
    blocked: peer('blocked'),
    blockedNet: `10.99.${PEERS.indexOf('blocked')}.0/24`,
    clientIface: `eth${PEERS.indexOf('client')}`,
  };
}

export class DemoTopology {
  private constructor(
    readonly hosts: Map<DemoHost, Netns>,
    readonly addresses: DemoAddresses,
  ) {}

  host(name: DemoHost): Netns {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`the demo topology has no host "${name}"`);
    return h;
  }

  /**
   * Builds the namespaces and links. `created` is told each namespace as soon as it exists, so a
   * failure halfway leaves nothing the caller does not know about.
   */
  static async create(owner: number, created: (ns: Netns) => void): Promise<DemoTopology> {
    const hosts = new Map<DemoHost, Netns>();
    for (const name of DEMO_HOSTS) {
      const ns = await createNetns(owner, name);
      created(ns);
      hosts.set(name, ns);
    }
    const mb = hosts.get('mb')!;
    for (const [i, peerName] of PEERS.entries()) {
      const peer = hosts.get(peerName)!;
      const mbIf = `eth${i}`;
      await mb.exec('ip', ['link', 'add', 'name', mbIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer.name]);
      await mb.exec('ip', ['addr', 'add', `10.99.${i}.1/24`, 'dev', mbIf]);
      await mb.exec('ip', ['link', 'set', mbIf, 'up']);
      await peer.exec('ip', ['addr', 'add', `10.99.${i}.2/24`, 'dev', 'eth0']);
      await peer.exec('ip', ['link', 'set', 'eth0', 'up']);
      await peer.exec('ip', ['route', 'add', 'default', 'via', `10.99.${i}.1`]);
      // XDP splice redirects frames between the veths: the receiving ends need GRO (veth takes
      // redirected frames only through NAPI) and the sending ends complete checksums (a partial
      // checksum does not survive the redirect). See docs/xdp-splice.md, node requirements.
      await peer.exec('ethtool', ['-K', 'eth0', 'tx', 'off', 'gro', 'on']);
    }
    // XDP splice routes rewritten packets with bpf_fib_lookup, which needs forwarding on.
    await mb.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    return new DemoTopology(hosts, demoAddresses());
  }
}
