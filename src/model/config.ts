// Small facts about a config document that validation, translation and the API all need:
// the stored (normalized) form, derived names, a listener's ports and the defaults of optional fields.
import { parsePortSpec, type PortRange } from './ports.js';
import type { Cluster, ConfigDocument, ConfigDocumentInput, DropRule, LbPolicy, Listener } from './schema.js';

/** The form the store keeps: every collection present, in a fixed key order, nothing else changed. */
export function normalizeConfig(input: ConfigDocumentInput): ConfigDocument {
  return {
    listeners: input.listeners ?? [],
    clusters: input.clusters ?? [],
    dropRules: input.dropRules ?? [],
    resources: (input.resources ?? []) as ConfigDocument['resources'],
  };
}

/** A drop rule's name: its own, or its CIDR text when it has none. */
export function dropRuleName(rule: DropRule): string {
  return rule.name ?? rule.cidr;
}

/** A listener's ports as ranges, first the listening port. Assumes a validated listener. */
export function listenerPortRanges(l: Listener): PortRange[] {
  const specs = l.ports ?? (l.port !== undefined ? [l.port] : []);
  const out: PortRange[] = [];
  for (const s of specs) {
    const p = parsePortSpec(s);
    if ('range' in p) out.push(p.range);
  }
  return out;
}

export const CLUSTER_DEFAULTS = {
  lbPolicy: 'round_robin' as LbPolicy,
  connectTimeout: '5s',
  maxConnectAttempts: 1,
  unhealthyThreshold: 3,
  healthyThreshold: 2,
  weight: 1,
} as const;

export function clusterLbPolicy(c: Cluster): LbPolicy {
  return c.lbPolicy ?? CLUSTER_DEFAULTS.lbPolicy;
}

/** Deterministic JSON (object keys sorted), for equality and digests of documents. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out;
  }
  return v;
}
