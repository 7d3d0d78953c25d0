import type { DesiredPod } from '../protocol/messages.js';
import type { Action } from './plan.js';
import { LABELS, type RuntimeContainer } from './runtime/runtime.js';

/**
 * Pure: how one round's actions are ordered and grouped before the Reconciler applies them.
 * Removals run one per group; the other actions of a pod form one group, run in plan order
 * (a sidecar after its network owner) and stop at the first failure.
 */

export type RemoveAction = Extract<Action, { type: 'remove' }>;

/** Removals apart; every other action grouped by pod, groups and actions in plan order. */
export function splitActions(actions: readonly Action[]): { removals: RemoveAction[]; groups: Action[][] } {
  const removals: RemoveAction[] = [];
  const byPod = new Map<string, Action[]>();
  for (const a of actions) {
    if (a.type === 'remove') {
      removals.push(a);
      continue;
    }
    const list = byPod.get(a.pod.uid);
    if (list === undefined) byPod.set(a.pod.uid, [a]);
    else list.push(a);
  }
  return { removals, groups: [...byPod.values()] };
}

/** True when a pod binds host ports or shares the host network, so it may collide with a container being removed. */
export function podUsesHostResources(pod: DesiredPod): boolean {
  return pod.spec.network === 'host' || pod.spec.containers.some((c) => c.ports.some((port) => port.hostPort !== undefined));
}

/**
 * A graceful stop can take terminationGracePeriodSeconds; new pods wait for removals only when
 * they may need what an old container holds (a host port, or the host network).
 */
export function mustWaitForRemovals(groups: readonly Action[][]): boolean {
  return groups.some((group) => group.some((a) => a.type !== 'remove' && podUsesHostResources(a.pod)));
}

/**
 * Removals of containers whose pod is no longer desired at all: these may stop in the
 * background. A container being replaced within a desired pod is not among them (the new one
 * reuses its name, so it must be gone first).
 */
export function departedRemovals(removals: readonly RemoveAction[], observed: readonly RuntimeContainer[], desired: readonly DesiredPod[]): RemoveAction[] {
  const desiredUids = new Set(desired.map((d) => d.uid));
  const podOf = new Map(observed.map((c) => [c.id, c.labels[LABELS.podUid]]));
  return removals.filter((a) => !desiredUids.has(podOf.get(a.id) ?? ''));
}
