import type { Pod, PodCondition } from '../../protocol/objects.js';
import { setCondition } from '../objects/conditions.js';
import { isTerminal } from '../objects/pod.js';
import type { Store } from '../store/store.js';

/** Reason on pods of a lost node, and on the events the NodeLostController records. */
export const NODE_LOST_REASON = 'NodeLost';

/**
 * Marks every live pod bound to `node` phase Unknown / Ready False (as Kubernetes does for pods
 * of a lost node): the hub cannot know their state. The agent's next observed set restores the
 * real status (ingestObservedSet, node-observed.ts). Call inside the transaction that marks the node
 * NotReady. Idempotent.
 */
export function markPodsNodeLost(store: Store, node: string, now: Date, why: string): number {
  const ts = now.toISOString();
  let marked = 0;
  for (const pod of store.list('Pod', { nodeName: node })) {
    if (isTerminal(pod) || pod.metadata.deletionTimestamp !== undefined) continue;
    const next = structuredClone(pod) as Pod;
    next.status.phase = 'Unknown';
    next.status.reason = NODE_LOST_REASON;
    next.status.message = `node ${node} is not ready: ${why}`;
    const notReady = (type: PodCondition['type']): PodCondition => ({ type, status: 'False', reason: NODE_LOST_REASON, message: `node ${node} is not ready` });
    next.status.conditions = setCondition(setCondition(pod.status.conditions, notReady('ContainersReady'), ts), notReady('Ready'), ts);
    next.status.containerStatuses = pod.status.containerStatuses.map((c) => ({ ...c, ready: false }));
    const written = store.update(next);
    if (written.metadata.resourceVersion !== pod.metadata.resourceVersion) marked++;
  }
  return marked;
}
