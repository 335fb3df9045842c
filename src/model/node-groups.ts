// Which translated resources each node receives, and the node groups that follows from it. A
// resource's audience is a list of node selectors (or every node), so what a node receives depends
// only on the set of selectors it matches: nodes matching the same set share one group, one
// snapshot and one response body, however many distinct node ids there are.
import { createHash } from 'node:crypto';
import { selectorKey, selectorMatches, type NodeIdentity } from './node-selector.js';
import type { NodeSelector } from './schema.js';
import type { Translation, TranslatedResource } from './translate.js';

/** The group of nodes that match no selector: they receive the resources meant for every node. */
export const EVERY_NODE_GROUP = 'all';

export class NodeAudience {
  /** Distinct selectors by their stable key, in first-use order. */
  private readonly selectors = new Map<string, NodeSelector>();
  /** Per resource: the keys of its selectors, or null for every node. */
  private readonly audiences: (string[] | null)[];

  constructor(private readonly translation: Translation) {
    this.audiences = translation.resources.map((r) => {
      if (!r.audience) return null;
      return r.audience.map((sel) => {
        const key = selectorKey(sel);
        if (!this.selectors.has(key)) this.selectors.set(key, sel);
        return key;
      });
    });
  }

  /**
   * Identifies the config's selectors as a whole. When it is the same for two revisions, every
   * node matches the same set under both, so no node changes group.
   */
  selectorsKey(): string {
    return JSON.stringify([...this.selectors.keys()].sort());
  }

  /** The keys of the selectors a node matches, sorted: its node group, spelled out. */
  matchedSelectors(node: NodeIdentity): string[] {
    const out: string[] = [];
    for (const [key, sel] of this.selectors) if (selectorMatches(sel, node)) out.push(key);
    return out.sort();
  }

  /** The resources nodes matching exactly `matched` (selector keys) receive, in translation order. */
  resourcesFor(matched: ReadonlySet<string>): TranslatedResource[] {
    return this.translation.resources.filter((_r, i) => this.receives(i, matched));
  }

  /** Whether nodes matching `matched` receive the translation's resource at `index`. */
  receives(index: number, matched: ReadonlySet<string>): boolean {
    const aud = this.audiences[index];
    return aud === null || aud === undefined || aud.some((k) => matched.has(k));
  }

  /** Identifies the audience of the resource at `index`: equal texts, equal audiences. */
  audienceKey(index: number): string {
    const aud = this.audiences[index];
    return aud ? JSON.stringify([...aud].sort()) : '';
  }

  /** The resources one node receives. */
  resourcesForNode(node: NodeIdentity): TranslatedResource[] {
    return this.resourcesFor(new Set(this.matchedSelectors(node)));
  }
}

/**
 * The node group name for a set of matched selector keys (as matchedSelectors returns them):
 * "all" when none match, else "sel-" and a digest of the set. The name depends on the selectors'
 * content only, so it survives revisions that keep them, and a selector written in another order
 * is the same selector.
 */
export function nodeGroupName(matched: readonly string[]): string {
  if (matched.length === 0) return EVERY_NODE_GROUP;
  return `sel-${createHash('sha256').update(JSON.stringify(matched)).digest('base64url').slice(0, 16)}`;
}
