import type { DeploymentStatus, RevisionObject, RolloutStatus } from '../../protocol/objects.js';
import type { EventInput } from '../events.js';
import type { RolloutPlan } from './planner.js';

/**
 * Pure: how a rollout pass (rollout-reconciler.ts) moves the `status.rollout` block and which
 * Deployment events it records. No store, no clock: the pass hands in `t`.
 */

type DeploymentEvent = Omit<EventInput, 'kind' | 'name'>;

/**
 * The rollout block a pass starts from: a fresh one when the update revision changed (a new
 * rollout), else a copy of the last. The rollback marker belongs to the rollout it ended: the
 * rollback's own rollout (from the failed revision back to the stable one) keeps it; any later
 * template change drops it.
 */
export function rolloutAtStart(prev: Pick<DeploymentStatus, 'updateRevision' | 'rollout'>, updateHash: string, revision: number, t: Date): RolloutStatus {
  if (prev.updateRevision === updateHash) return { ...(prev.rollout ?? { phase: 'Progressing' }) };
  const rollout: RolloutStatus = { phase: 'Progressing', revision, startedAt: t.toISOString() };
  const marker = prev.rollout?.rolledBackFrom;
  if (marker !== undefined && marker.hash === prev.updateRevision) rollout.rolledBackFrom = marker;
  return rollout;
}

/**
 * The rollout block after the plan: progress stamp, phase (RolledBack once a rollback's own
 * rollout completes), message and revision.
 */
export function advancedRollout(
  rollout: RolloutStatus,
  prev: RolloutStatus | undefined,
  plan: Pick<RolloutPlan, 'progressed' | 'progressKey' | 'phase' | 'message'>,
  revision: number,
  t: Date,
): RolloutStatus {
  const next: RolloutStatus = { ...rollout };
  if (plan.progressed) {
    next.progressKey = plan.progressKey;
    next.lastProgressAt = t.toISOString();
  }
  next.phase = prev?.rolledBackFrom !== undefined && next.rolledBackFrom !== undefined && plan.phase === 'Complete' ? 'RolledBack' : plan.phase;
  next.message = next.phase === 'RolledBack' ? `rolled back to revision ${revision}: ${next.rolledBackFrom?.reason ?? ''}` : plan.message;
  next.revision = revision;
  return next;
}

/** The event for entering the plan's phase, if that phase has one. */
export function phaseEvent(
  plan: Pick<RolloutPlan, 'phase' | 'inRollout' | 'message' | 'counts'>,
  revision: number,
  autoRollback: boolean,
): DeploymentEvent | undefined {
  switch (plan.phase) {
    case 'Complete':
      if (!plan.inRollout) return undefined;
      return {
        type: 'Normal',
        reason: 'RolloutComplete',
        message: `revision ${revision} is fully available (${plan.counts.updatedAvailable}/${plan.counts.desired})`,
      };
    case 'Failed':
      return {
        type: 'Warning',
        reason: 'ProgressDeadlineExceeded',
        message: `revision ${revision}: ${plan.message}${autoRollback ? ' (no fully available revision to roll back to)' : ' (autoRollback is off)'}`,
      };
    case 'CanaryPaused':
      return { type: 'Normal', reason: 'CanaryPaused', message: plan.message };
    default:
      return undefined;
  }
}

/** `images a → b` for the RolloutStarted event. */
export function imageChange(from: Pick<RevisionObject, 'images'> | undefined, to: Pick<RevisionObject, 'images'>): string {
  const before = from?.images.join(',') ?? '';
  const after = to.images.join(',');
  return before === '' || before === after ? `images ${after}` : `${before} → ${after}`;
}

/**
 * The ScalingPods message for what a pass did: pods created per revision (`created`: template
 * hash → count, the update revision shown by its number) and pods deleted with their reasons;
 * undefined when it did nothing.
 */
export function scalingMessage(
  created: ReadonlyMap<string, number>,
  deleted: ReadonlyArray<{ reason: string }>,
  updateHash: string,
  revision: number,
): string | undefined {
  if (deleted.length === 0 && created.size === 0) return undefined;
  const parts = [...created].map(([h, n]) => `created ${n} pod(s) of revision ${h === updateHash ? revision : h}`);
  if (deleted.length > 0) parts.push(`deleted ${deleted.length} (${[...new Set(deleted.map((x) => x.reason))].join('; ')})`);
  return parts.join(', ');
}
