// Which translated resources each node receives. Nodes that match the same set of selectors
// receive the same list, so the control plane filters (and encodes) once per distinct match set.
import { selectorKey, selectorMatches, type NodeIdentity } from './node-selector.js';
import type { NodeSelector } from './schema.js';
import type { Translation, TranslatedResource } from './translate.js';

export class NodeAudience {
  private readonly selectors: { key: string; selector: NodeSelector }[] = [];
  /** Per resource: indexes into `selectors`, or null for every node. */
  private readonly audiences: (number[] | null)[];

  constructor(private readonly translation: Translation) {
    const index = new Map<string, number>();
    this.audiences = translation.resources.map((r) => {
      if (!r.audience) return null;
      return r.audience.map((sel) => {
        const key = selectorKey(sel);
        let i = index.get(key);
        if (i === undefined) {
          i = this.selectors.length;
          index.set(key, i);
          this.selectors.push({ key, selector: sel });
        }
        return i;
      });
    });
  }

  /** Identifies the set of selectors a node matches; equal keys mean equal resource lists. */
  matchKey(node: NodeIdentity): string {
    const hits: number[] = [];
    this.selectors.forEach((s, i) => {
      if (selectorMatches(s.selector, node)) hits.push(i);
    });
    return hits.length === 0 ? 'all' : `all+${hits.join(',')}`;
  }

  /** The resources a node receives, in translation order. */
  resourcesFor(node: NodeIdentity): TranslatedResource[] {
    const matched = new Set<number>();
    this.selectors.forEach((s, i) => {
      if (selectorMatches(s.selector, node)) matched.add(i);
    });
    return this.translation.resources.filter((_r, i) => {
      const aud = this.audiences[i];
      return aud === null || aud === undefined || aud.some((s) => matched.has(s));
    });
  }
}

/**
 * The xDS node group of a node: its identity as far as selectors can see (id, cluster and string
 * metadata). A stream keeps its group for life, so the group must not depend on the current
 * config's selectors; two nodes with the same identity always receive the same resources.
 */
export function nodeGroupKey(node: NodeIdentity): string {
  const labels = Object.entries(node.metadata)
    .filter((e): e is [string, string] => typeof e[1] === 'string')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify({ id: node.id, cluster: node.cluster, labels: Object.fromEntries(labels) });
}

/** Parses a group key back into the identity it stands for. */
export function nodeIdentityOfGroup(key: string): NodeIdentity {
  const parsed = JSON.parse(key) as { id: string; cluster: string; labels: Record<string, string> };
  return { id: parsed.id, cluster: parsed.cluster, metadata: parsed.labels };
}
