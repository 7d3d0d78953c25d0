import type { NodeSelectorRequirement } from '../../protocol/manifest.js';
import { filterPlugin } from './filter-plugin.js';
import type { PodContext, SchedNode, ScorePlugin } from './types.js';

/**
 * Node affinity (`spec.affinity.nodeAffinity`): `required` requirements are ANDed and filter;
 * `preferred` ones add their weight to a node's score. Operators as Kubernetes': In, NotIn,
 * Exists, DoesNotExist (NotIn and DoesNotExist match a node that lacks the label).
 */

export function matchesRequirement(labels: Readonly<Record<string, string>>, r: NodeSelectorRequirement): boolean {
  const v = labels[r.key];
  switch (r.operator) {
    case 'In':
      return v !== undefined && r.values.includes(v);
    case 'NotIn':
      return v === undefined || !r.values.includes(v);
    case 'Exists':
      return v !== undefined;
    case 'DoesNotExist':
      return v === undefined;
  }
}

/** `zone In (north, south)`, `gpu Exists` — as users wrote it, for explanations. */
export function formatRequirement(r: NodeSelectorRequirement): string {
  return r.operator === 'In' || r.operator === 'NotIn' ? `${r.key} ${r.operator} (${r.values.join(', ')})` : `${r.key} ${r.operator}`;
}

function firstUnmet(node: SchedNode, ctx: PodContext): NodeSelectorRequirement | undefined {
  for (const r of ctx.affinityRequired) if (!matchesRequirement(node.labels, r)) return r;
  return undefined;
}

export const nodeAffinity = filterPlugin(
  'node-affinity',
  (_p, node, ctx) => ctx.affinityRequired.length === 0 || firstUnmet(node, ctx) === undefined,
  (_p, node, ctx) => {
    const unmet = ctx.affinityRequired.filter((r) => !matchesRequirement(node.labels, r)).map(formatRequirement);
    return `node affinity ${unmet.join(', ')} not matched`;
  },
);

/**
 * Sum of the weights of the preferred requirements a node meets, as a share of all preferred
 * weight (0..100), normalised. Weight 2, as kube-scheduler's NodeAffinity score: a preference
 * wins against resource balance; against replica spread of several replicas it is a tie-break
 * partner, which is what "preferred" means.
 */
export const nodeAffinityPreferred: ScorePlugin = {
  name: 'node-affinity',
  weight: 2,
  normalize: true,
  enabled: (_pod, ctx) => ctx.affinityPreferred.length > 0,
  score: (_pod, node, ctx) => {
    let total = 0;
    let met = 0;
    for (const p of ctx.affinityPreferred) {
      total += p.weight;
      if (matchesRequirement(node.labels, p.requirement)) met += p.weight;
    }
    return total === 0 ? 0 : (met * 100) / total;
  },
};
