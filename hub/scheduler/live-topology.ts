import { TopologyCounts } from './topology.js';
import type { SchedNode } from './types.js';

/**
 * TopologyCounts for a LiveSnapshot: the same answers as a fresh TopologyCounts over the same
 * nodes, but kept across scheduler passes, so it also has to forget pods (deleted, moved,
 * un-booked after a pass) and follow node label edits. Keys are indexed lazily, as in the
 * base class, the first time a pod spreads by them; then every change is applied by `adjust`.
 *
 * A subclass (rather than a second implementation of TopologyIndex) so snapshot.ts's nodeView
 * takes either as a TopologyCounts; scheduleBatch calls `add` on it through SchedNode.topology.
 * The base class's own index stays empty and unused.
 */
export class LiveTopology extends TopologyCounts {
  /**
   * label key → value → owner → pods; zero counts are removed. Nested maps rather than the base
   * class's `${owner}\0${value}` keys: `count` runs per pod × sampled node and allocates nothing.
   */
  private readonly indexed = new Map<string, Map<string, Map<string, number>>>();

  constructor(private readonly all: readonly SchedNode[]) {
    super(all);
  }

  override count(key: string, value: string, owner: string): number {
    return this.indexOf(key).get(value)?.get(owner) ?? 0;
  }

  override add(node: SchedNode, owner: string): void {
    this.adjust(node, owner, 1);
  }

  /** `delta` more (or fewer) pods of `owner` on `node`, for every key indexed so far. */
  adjust(node: SchedNode, owner: string, delta: number): void {
    if (delta === 0) return;
    for (const [key, byValue] of this.indexed) {
      const value = node.labels[key];
      if (value !== undefined) bump(byValue, value, owner, delta);
    }
  }

  /** Adds (`sign` 1) or removes (-1) every pod booked on `node`: a node joining or leaving, or relabelled. */
  adjustNode(node: SchedNode, sign: 1 | -1): void {
    if (this.indexed.size === 0) return;
    for (const [owner, pods] of node.podsByOwner) this.adjust(node, owner, sign * pods);
  }

  /** Whether some indexed key has a different value in `labels` than on `node`. */
  labelsMatter(node: SchedNode, labels: Readonly<Record<string, string>>): boolean {
    for (const key of this.indexed.keys()) if (node.labels[key] !== labels[key]) return true;
    return false;
  }

  /** Drops every index (the nodes were rebuilt from scratch). */
  clear(): void {
    this.indexed.clear();
  }

  private indexOf(key: string): Map<string, Map<string, number>> {
    let byValue = this.indexed.get(key);
    if (byValue !== undefined) return byValue;
    byValue = new Map();
    for (const n of this.all) {
      const value = n.labels[key];
      if (value === undefined) continue;
      for (const [owner, pods] of n.podsByOwner) bump(byValue, value, owner, pods);
    }
    this.indexed.set(key, byValue);
    return byValue;
  }
}

function bump(byValue: Map<string, Map<string, number>>, value: string, owner: string, delta: number): void {
  let byOwner = byValue.get(value);
  if (byOwner === undefined) {
    byOwner = new Map();
    byValue.set(value, byOwner);
  }
  const n = (byOwner.get(owner) ?? 0) + delta;
  if (n !== 0) byOwner.set(owner, n);
  else {
    byOwner.delete(owner);
    if (byOwner.size === 0) byValue.delete(value);
  }
}
