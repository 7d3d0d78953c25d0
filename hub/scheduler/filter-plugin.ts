import type { FilterPlugin, PodContext, SchedNode, SchedPod } from './types.js';

type Check = (pod: SchedPod, node: SchedNode, ctx: PodContext) => boolean;
type Reason = (pod: SchedPod, node: SchedNode, ctx: PodContext) => string;

/**
 * Builds a plugin whose `filter` is `fits` plus a reason, so the two can never disagree.
 * In its own module so plugin files can use it without importing the default list (a cycle).
 */
export function filterPlugin(name: string, fits: Check, reason: Reason): FilterPlugin {
  return { name, fits, filter: (pod, node, ctx) => (fits(pod, node, ctx) ? undefined : reason(pod, node, ctx)) };
}
