import type { DesiredPod, ObservedPod } from '../../protocol/messages.js';
import { containerKey } from '../container-spec.js';
import type { Action, Plan } from '../plan.js';
import { LABELS, type RuntimeContainer } from '../runtime/runtime.js';
import type { LocalPod } from './service-table.js';

/**
 * Pure: this agent's own view of its pods for the service table, from one reconcile round —
 * the desired pods, the round's plan, the engine's containers and the observed set (readiness
 * from the agent's probes). Only desired pods appear: one that left the desired set is out of
 * every service at once, whatever the hub still lists.
 */

/** Plan actions that stop a running container (SIGTERM): its pod must leave the table first. */
export function stopsContainer(a: Action): boolean {
  return a.type === 'remove' || a.type === 'kill' || a.type === 'restart';
}

/** Pod uids with a container about to be stopped by the plan's actions. */
export function stoppingPods(p: Pick<Plan, 'actions'>, containers: readonly RuntimeContainer[]): Set<string> {
  const uidOf = new Map(containers.map((c) => [c.id, c.labels[LABELS.podUid]]));
  const out = new Set<string>();
  for (const a of p.actions) {
    if (!stopsContainer(a)) continue;
    const uid = a.type === 'remove' ? uidOf.get(a.id) : a.pod.uid;
    if (uid !== undefined) out.add(uid);
  }
  return out;
}

export function localPods(
  desired: readonly DesiredPod[],
  p: Pick<Plan, 'actions' | 'current'>,
  containers: readonly RuntimeContainer[],
  observed: readonly ObservedPod[],
): Map<string, LocalPod> {
  const stopping = stoppingPods(p, containers);
  const readyOf = new Map(observed.map((o) => [o.uid, o.ready]));
  const out = new Map<string, LocalPod>();
  for (const pod of desired) {
    if (out.has(pod.uid)) continue;
    const first = pod.spec.containers[0];
    // The first container owns the pod's network namespace: its address is the pod's.
    const owner = first === undefined ? undefined : p.current.get(containerKey(pod.uid, first.name));
    let host = '';
    if (owner?.state === 'running') {
      if (pod.spec.network === 'host') host = '127.0.0.1';
      else if (pod.spec.network === 'bridge') host = owner.ipAddress ?? '';
    }
    out.set(pod.uid, { host, ready: host !== '' && readyOf.get(pod.uid) === true, terminating: stopping.has(pod.uid) });
  }
  return out;
}
