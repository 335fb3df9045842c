// The demo's example configuration (pure): one listener per path the agent offers (SKB splice,
// XDP splice, and a user-space listener that routes TLS by SNI) and a drop rule for the blocked
// client. The traffic driver's targets are derived from the same constants, so the two agree.
import type { ConfigDocumentInput } from '../model/schema.js';
import type { DemoAddresses } from './topology.js';

export const DEMO_NODE_ID = 'demo-mb';

/** Ports the servers listen on. */
export const SERVER_PORTS = { plain: 9000, tls: 9443 } as const;

export interface DemoListener {
  name: string;
  port: number;
  mode: 'skb' | 'xdp' | 'userspace';
  /** The path its connections should take in the agent (exds_proxy_connections_total{path}). */
  path: 'skb' | 'xdp' | 'userspace';
  /** TLS clients and the server name each one asks for, with the server that must answer. */
  sni?: Array<{ serverName: string; server: 's1' | 's2' }>;
}

export const DEMO_LISTENERS: DemoListener[] = [
  { name: 'bulk-skb', port: 7001, mode: 'skb', path: 'skb' },
  { name: 'bulk-xdp', port: 7002, mode: 'xdp', path: 'xdp' },
  {
    name: 'tls-sni',
    port: 7443,
    mode: 'userspace',
    path: 'userspace',
    sni: [
      { serverName: 'a.demo.test', server: 's1' },
      { serverName: 'b.demo.test', server: 's2' },
    ],
  },
];

export const DROP_RULE_NAME = 'blocked';

export function demoConfig(a: DemoAddresses): ConfigDocumentInput {
  const addr = { s1: a.s1, s2: a.s2 };
  return {
    listeners: DEMO_LISTENERS.map((l) => ({
      name: l.name,
      address: '0.0.0.0',
      port: l.port,
      mode: l.mode,
      ...(l.mode === 'xdp' ? { interface: a.clientIface } : {}),
      ...(l.sni ? { routes: l.sni.map((r) => ({ serverNames: [r.serverName], cluster: `tls-${r.server}` })) } : { cluster: 'web' }),
    })),
    clusters: [
      {
        name: 'web',
        lbPolicy: 'round_robin',
        connectTimeout: '1s',
        healthCheck: { interval: '2s', timeout: '500ms', unhealthyThreshold: 2, healthyThreshold: 1 },
        endpoints: [
          { address: a.s1, port: SERVER_PORTS.plain },
          { address: a.s2, port: SERVER_PORTS.plain },
        ],
      },
      ...(['s1', 's2'] as const).map((s) => ({ name: `tls-${s}`, connectTimeout: '1s', endpoints: [{ address: addr[s], port: SERVER_PORTS.tls }] })),
    ],
    dropRules: [{ name: DROP_RULE_NAME, cidr: a.blockedNet }],
  };
}
