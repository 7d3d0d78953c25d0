import type { NodeObject } from '../../protocol/objects.js';

/** Condition Ready True: the agent is connected and reporting (NodeController keeps it). */
export function isNodeReady(n: NodeObject): boolean {
  return n.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True');
}

/** Whether this node's agent reads leader epochs (NodeInfo.features lists `epoch`; docs/design/ha.md "Epochs"). */
export function readsEpoch(node: NodeObject | undefined): boolean {
  return node?.status.info?.features?.includes('epoch') === true;
}
