import type { NodeObject } from '../../protocol/objects.js';

/** Condition Ready True: the agent is connected and reporting (NodeController keeps it). */
export function isNodeReady(n: NodeObject): boolean {
  return n.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True');
}
