import type { Deployment, DeploymentCondition, DeploymentStatus, Pod, RolloutPhase, RolloutStatus } from '../../protocol/objects.js';
import { deepEqual } from '../hash.js';
import { setCondition } from '../objects/conditions.js';
import { isPodReady, isTerminal, TEMPLATE_HASH_ANNOTATION } from '../objects/pod.js';
import type { Store } from '../store/store.js';
import { budgets, type PlannerStrategy, type RolloutCounts } from './planner.js';

/**
 * A Deployment's status after a rollout pass (rollout-reconciler.ts), written apart from its
 * spec: counts, revisions, the Progressing and Available conditions and the rollout block.
 * Counts-only changes may be deferred by the status throttle.
 */

/** Per deployment, the last status write; counts-only changes are spaced `minIntervalMs` apart. */
export interface StatusThrottle {
  minIntervalMs: number;
  lastWrite: Map<string, number>;
}

type ConditionFields = Omit<DeploymentCondition, 'type' | 'lastUpdateTime' | 'lastTransitionTime'>;

/** The Progressing condition per rollout phase (Kubernetes reasons); a phase not listed is ReplicaSetUpdated. */
const PROGRESSING: Partial<Record<RolloutPhase, (r: RolloutStatus) => ConditionFields>> = {
  Failed: (r) => ({ status: 'False', reason: 'ProgressDeadlineExceeded', message: r.message ?? '' }),
  Paused: () => ({ status: 'Unknown', reason: 'DeploymentPaused', message: 'deployment is paused' }),
  CanaryPaused: (r) => ({ status: 'Unknown', reason: 'CanaryPaused', message: r.message ?? '' }),
  RolledBack: (r) => ({ status: 'True', reason: 'RolledBack', message: r.message ?? '' }),
  Complete: (r) => ({ status: 'True', reason: 'NewReplicaSetAvailable', message: `revision ${r.revision ?? ''} is available` }),
};

export function progressingCondition(rollout: RolloutStatus): DeploymentCondition {
  const fields = PROGRESSING[rollout.phase]?.(rollout) ?? { status: 'True', reason: 'ReplicaSetUpdated', message: rollout.message ?? '' };
  return { type: 'Progressing', ...fields };
}

/** Available while at most the strategy's maxUnavailable of `desired` pods are not available. */
export function availableCondition(available: number, desired: number, unavailable: number): DeploymentCondition {
  if (available >= desired - unavailable)
    return { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' };
  return {
    type: 'Available',
    status: 'False',
    reason: 'MinimumReplicasUnavailable',
    message: `${available} of ${desired} pods available (needs ${desired - unavailable})`,
  };
}

export interface StatusInput {
  counts: RolloutCounts;
  rollout: RolloutStatus;
  updateHash: string;
  stableHash: string | undefined;
  t: Date;
  strategy: PlannerStrategy;
  /** Global mode: nodes without room; replicated mode counts pods not yet bound. */
  unscheduled?: number;
}

/** The status this pass computes, from the deployment as stored and its non-terminal pods. */
export function deploymentStatus(fresh: Deployment, pods: readonly Pod[], o: StatusInput): DeploymentStatus {
  const c = o.counts;
  // Replicas, or (global mode) the online nodes that should run a pod.
  const desired = c.desired;
  const { unavailable } = budgets(o.strategy, desired);
  const ts = o.t.toISOString();
  const status: DeploymentStatus = {
    observedGeneration: fresh.metadata.generation,
    replicas: pods.length,
    readyReplicas: pods.filter(isPodReady).length,
    availableReplicas: c.available,
    unscheduledReplicas: o.unscheduled ?? pods.filter((p) => !p.spec.nodeName).length,
    updatedReplicas: pods.filter((p) => p.metadata.annotations[TEMPLATE_HASH_ANNOTATION] === o.updateHash).length,
    updateRevision: o.updateHash,
    conditions: setCondition(
      setCondition(fresh.status.conditions, availableCondition(c.available, desired, unavailable), ts, { updateTime: true }),
      progressingCondition(o.rollout),
      ts,
      { updateTime: true },
    ),
    rollout: o.rollout,
  };
  if (o.stableHash !== undefined) status.currentRevision = o.stableHash;
  // The autoscaler's own part of the status (hub/controllers/autoscaler.ts): carried over, never computed here.
  if (fresh.status.autoscale !== undefined) status.autoscale = fresh.status.autoscale;
  return status;
}

/** What a status says apart from its counts and messages: a change here is never deferred. */
export function statusShape(s: DeploymentStatus): unknown {
  return {
    observedGeneration: s.observedGeneration,
    updateRevision: s.updateRevision,
    currentRevision: s.currentRevision,
    phase: s.rollout?.phase,
    revision: s.rollout?.revision,
    rolledBackFrom: s.rollout?.rolledBackFrom,
    conditions: (s.conditions ?? []).map((c) => [c.type, c.status, c.reason]),
  };
}

/**
 * Ms to wait before writing `next` for deployment `name`: > 0 only for a counts-only change
 * within the throttle interval. Otherwise 0, and the write is recorded as done at `t`.
 */
export function throttleWait(throttle: StatusThrottle, name: string, stored: DeploymentStatus, next: DeploymentStatus, t: Date): number {
  const last = throttle.lastWrite.get(name);
  const wait = last === undefined ? 0 : last + throttle.minIntervalMs - t.getTime();
  if (wait > 0 && deepEqual(statusShape(stored), statusShape(next))) return wait;
  throttle.lastWrite.set(name, t.getTime());
  return 0;
}

/**
 * Writes the deployment's status when it changed. Returns the ms after which to pass again when
 * the throttle deferred a counts-only change.
 */
export function writeStatus(store: Store, d: Deployment, o: StatusInput & { throttle?: StatusThrottle }): number | undefined {
  const fresh = store.get('Deployment', d.metadata.name);
  if (!fresh) return undefined;
  const pods = store.list('Pod', { ownerName: d.metadata.name }).filter((p) => !isTerminal(p));
  const status = deploymentStatus(fresh, pods, o);
  if (deepEqual(fresh.status, status)) return undefined;
  if (o.throttle !== undefined) {
    const wait = throttleWait(o.throttle, d.metadata.name, fresh.status, status, o.t);
    if (wait > 0) return wait;
  }
  const next = structuredClone(fresh) as Deployment;
  next.status = status;
  store.update(next);
  return undefined;
}
