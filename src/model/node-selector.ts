// Node selectors: which xDS nodes receive a listener or raw resource. Every node receives
// everything unless a selector narrows it; all fields of a selector must match (AND), and within
// `ids` or `clusters` any entry matches (OR).
import type { NodeSelector } from './schema.js';

/** What a selector can look at: the xDS Node's id, cluster and metadata. */
export interface NodeIdentity {
  id: string;
  cluster: string;
  metadata: Record<string, unknown>;
}

export function selectorMatches(sel: NodeSelector | undefined, node: NodeIdentity): boolean {
  if (!sel) return true;
  if (sel.ids && !sel.ids.includes(node.id)) return false;
  if (sel.clusters && !sel.clusters.includes(node.cluster)) return false;
  if (sel.labels) {
    for (const [k, v] of Object.entries(sel.labels)) {
      if (node.metadata[k] !== v) return false;
    }
  }
  return true;
}

/**
 * False only when no node can match both selectors, which validation uses to allow two listeners
 * on one address:port for disjoint sets of nodes.
 */
export function selectorsMayOverlap(a: NodeSelector | undefined, b: NodeSelector | undefined): boolean {
  if (!a || !b) return true;
  if (a.ids && b.ids && !a.ids.some((id) => b.ids?.includes(id))) return false;
  if (a.clusters && b.clusters && !a.clusters.some((c) => b.clusters?.includes(c))) return false;
  if (a.labels && b.labels) {
    for (const [k, v] of Object.entries(a.labels)) {
      const other = b.labels[k];
      if (other !== undefined && other !== v) return false;
    }
  }
  return true;
}

/** A stable text form, so equal selectors written in different orders are one selector. */
export function selectorKey(sel: NodeSelector): string {
  const labels = sel.labels ? Object.entries(sel.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : undefined;
  return JSON.stringify([sel.ids ? [...sel.ids].sort() : null, sel.clusters ? [...sel.clusters].sort() : null, labels ?? null]);
}
