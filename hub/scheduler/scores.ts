import { isTolerated } from './filters.js';
import { nodeAffinityPreferred } from './node-affinity.js';
import { topologySpread } from './topology.js';
import type { PodContext, SchedNode, ScorePlugin } from './types.js';

/**
 * Ranking plugins (0..100, higher is better). The scheduler min-max normalises the ones that
 * ask for it and sums `weight × score`. Weights follow kube-scheduler's defaults in spirit:
 * avoiding a PreferNoSchedule taint (3) and balancing topology domains (3) beat spreading
 * replicas over nodes (2) and preferred node affinity (2), which beat resource balance (1).
 */

/**
 * Used fraction (0..1) of each dimension the pod asks for, after placing it. A pod that
 * requests neither CPU nor memory (common on small fleets) is ranked by pod count instead so
 * it still spreads or packs.
 */
function usedFractionAfter(node: SchedNode, ctx: PodContext): number {
  const { cpuMillis, memoryBytes } = ctx.requests;
  if (cpuMillis === 0 && memoryBytes === 0) {
    return fraction(node.requested.pods + 1, node.allocatable.pods);
  }
  let sum = 0;
  let dims = 0;
  if (cpuMillis > 0) {
    sum += fraction(node.requested.cpuMillis + cpuMillis, node.allocatable.cpuMillis);
    dims++;
  }
  if (memoryBytes > 0) {
    sum += fraction(node.requested.memoryBytes + memoryBytes, node.allocatable.memoryBytes);
    dims++;
  }
  return sum / dims;
}

function fraction(used: number, total: number): number {
  if (total <= 0) return 1;
  return used >= total ? 1 : used / total;
}

/** More free capacity after placement → higher. Spreads load. */
export function leastAllocatedScore(node: SchedNode, ctx: PodContext): number {
  return (1 - usedFractionAfter(node, ctx)) * 100;
}

/** Less free capacity after placement → higher. Packs pods so whole nodes stay free. */
export function mostAllocatedScore(node: SchedNode, ctx: PodContext): number {
  return usedFractionAfter(node, ctx) * 100;
}

/**
 * Least- or most-allocated by `pod.strategy`. Not normalised: the absolute fraction means
 * something, and min-max would turn a 0.1% difference into 100 points and drown replica spread.
 */
export const nodeResources: ScorePlugin = {
  name: 'node-resources',
  weight: 1,
  normalize: false,
  score: (_pod, node, ctx) => (ctx.strategy === 'binpack' ? mostAllocatedScore(node, ctx) : leastAllocatedScore(node, ctx)),
};

/**
 * Fewer replicas of the same Deployment on the node → higher, so one node failing takes out
 * as few replicas as possible. Off for binpack pods (packing is what they asked for) and pods
 * with no owner.
 */
export const ownerSpread: ScorePlugin = {
  name: 'owner-spread',
  weight: 2,
  normalize: true,
  enabled: (_pod, ctx) => ctx.owner !== undefined && ctx.strategy === 'spread',
  score: (_pod, node, ctx) => 100 / (1 + (ctx.owner === undefined ? 0 : (node.podsByOwner.get(ctx.owner) ?? 0))),
};

/** Each untolerated PreferNoSchedule taint lowers the node's rank; the filter ignores them. */
export const preferNoScheduleTaints: ScorePlugin = {
  name: 'prefer-no-schedule',
  weight: 3,
  normalize: true,
  score: (_pod, node, ctx) => {
    let n = 0;
    for (const t of node.taints) {
      if (t.effect === 'PreferNoSchedule' && !isTolerated(ctx.tolerations, t)) n++;
    }
    return 100 / (1 + n);
  },
};

export { nodeAffinityPreferred, topologySpread };

/** nodeAffinityPreferred and topologySpread step aside (enabled) for pods that ask for neither. */
export const defaultScores: readonly ScorePlugin[] = [nodeResources, ownerSpread, preferNoScheduleTaints, nodeAffinityPreferred, topologySpread];
