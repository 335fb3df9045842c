// The Node this agent presents to the control plane (envoy.config.core.v3.Node as proto3 JSON):
// id (default: the hostname), cluster, user agent, and metadata with what the node has and can
// do: interfaces (name, index, addresses), kernel version, the attach types that work here, the
// agent version and its proxy mode. Node selectors match metadata keys (docs/config.md).
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { AttachProbe } from './attach-probe.js';
import type { ProxyMode } from './decode.js';
import type { NetInterface } from './interfaces.js';

export const USER_AGENT = 'ebpf-xds-agent';

let version: string | undefined;

/** This agent's version (package.json). */
export function agentVersion(): string {
  if (version === undefined) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    version = pkg.version ?? '0.0.0';
  }
  return version;
}

export interface NodeInfoInput {
  nodeId?: string;
  cluster?: string;
  proxy: ProxyMode;
  interfaces: readonly NetInterface[];
  probe: AttachProbe;
}

/** The Node message (proto field names); pure apart from the hostname default. */
export function nodeInfo(input: NodeInfoInput): Record<string, unknown> {
  const id = input.nodeId ?? hostname();
  if (!id) throw new Error('the node id is empty; pass --node-id');
  return {
    id,
    cluster: input.cluster ?? '',
    user_agent_name: USER_AGENT,
    user_agent_version: agentVersion(),
    metadata: {
      agent_version: agentVersion(),
      proxy: input.proxy,
      kernel: input.probe.kernel,
      attach_types: input.probe.supported,
      interfaces: input.interfaces.map((i) => ({ name: i.name, index: i.index, addresses: i.addresses })),
    },
  };
}
