import type { PodContext, SchedNode, ScorePlugin, TopologyIndex } from './types.js';

/**
 * Replica counts per topology domain: for a label key (zone, site …), how many pods of each
 * owner run on nodes carrying each value of it. One instance is shared by every node of a
 * snapshot (`SchedNode.topology`), so a score looking at one node can still see its whole
 * zone. Keys are indexed lazily, the first time a pod spreads by them, from the nodes'
 * `podsByOwner`; after that `accountPod` keeps them current as scheduleBatch binds.
 */
export class TopologyCounts implements TopologyIndex {
  /** label key → `${owner}\0${value}` → pods. */
  private readonly byKey = new Map<string, Map<string, number>>();

  constructor(private readonly nodes: readonly SchedNode[]) {}

  /** Pods of `owner` on nodes whose label `key` equals `value`. */
  count(key: string, value: string, owner: string): number {
    return this.index(key).get(`${owner}\0${value}`) ?? 0;
  }

  /** Records one more pod of `owner` on `node`, for every key indexed so far. */
  add(node: SchedNode, owner: string): void {
    for (const [key, counts] of this.byKey) {
      const value = node.labels[key];
      if (value === undefined) continue;
      const k = `${owner}\0${value}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
  }

  private index(key: string): Map<string, number> {
    let counts = this.byKey.get(key);
    if (counts !== undefined) return counts;
    counts = new Map();
    for (const n of this.nodes) {
      const value = n.labels[key];
      if (value === undefined) continue;
      for (const [owner, pods] of n.podsByOwner) {
        const k = `${owner}\0${value}`;
        counts.set(k, (counts.get(k) ?? 0) + pods);
      }
    }
    this.byKey.set(key, counts);
    return counts;
  }
}

function domainCount(node: SchedNode, ctx: PodContext): number | undefined {
  const key = ctx.spreadBy;
  const owner = ctx.owner;
  if (key === undefined || owner === undefined) return 0;
  const value = node.labels[key];
  if (value === undefined) return undefined;
  return node.topology !== undefined ? node.topology.count(key, value, owner) : (node.podsByOwner.get(owner) ?? 0);
}

/**
 * `placement.spreadBy`: fewer replicas of the owner in the node's domain (its value of the
 * label) → higher, so a zone or site going dark takes out as few replicas as possible. A node
 * without the label scores 0: it belongs to no domain, so placing there spreads nothing.
 * Weight 3: balancing domains comes before balancing nodes (owner-spread, 2) — within a
 * domain owner-spread still picks the emptiest node. Applies to binpack too (pack nodes, but
 * keep zones even), as Kubernetes' topology spread does.
 */
export const topologySpread: ScorePlugin = {
  name: 'topology-spread',
  weight: 3,
  normalize: true,
  enabled: (_pod, ctx) => ctx.owner !== undefined && ctx.spreadBy !== undefined,
  score: (_pod, node, ctx) => {
    const n = domainCount(node, ctx);
    return n === undefined ? 0 : 100 / (1 + n);
  },
};
