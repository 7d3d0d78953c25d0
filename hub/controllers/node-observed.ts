import type { ObservedSetMessage } from '../../protocol/messages.js';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import { deepEqual } from '../hash.js';
import type { Store } from '../store/store.js';
import { podReportEvents, podStatusFromReport } from './pod-status-from-report.js';

/**
 * Stores one node's observed set (already validated, topic checked): the node's
 * observedGeneration, and the status of each pod this node was given, with the Events the
 * changes imply. One transaction; writes only what changed.
 */
export function ingestObservedSet(store: Store, m: ObservedSetMessage, now: () => Date): void {
  store.transaction(() => {
    const node = store.get('Node', m.node);
    if (node && node.status.observedGeneration !== m.generation) {
      const next = structuredClone(node) as NodeObject;
      next.status.observedGeneration = m.generation;
      store.update(next);
    }
    for (const op of m.pods) {
      const pod = store.get('Pod', op.name);
      // Only the pod this node was given: same uid, bound here. Anything else is stale news.
      if (!pod || pod.metadata.uid !== op.uid || pod.spec.nodeName !== m.node) continue;
      const status = podStatusFromReport(pod, op, node, now());
      if (deepEqual(pod.status, status)) continue;
      const next = structuredClone(pod) as Pod;
      next.status = status;
      store.update(next);
      for (const e of podReportEvents(pod, status, m.node)) recordEvent(store, now(), e);
    }
  });
}
