import { describe, expect, it } from 'vitest';
import type { DeploymentStatus, RolloutStatus } from '../../protocol/objects.js';
import { availableCondition, progressingCondition, throttleWait } from './rollout-status.js';

describe('progressingCondition', () => {
  it.each<{ rollout: RolloutStatus; want: Record<string, string> }>([
    { rollout: { phase: 'Failed', message: 'deadline' }, want: { status: 'False', reason: 'ProgressDeadlineExceeded', message: 'deadline' } },
    { rollout: { phase: 'Paused', message: 'ignored' }, want: { status: 'Unknown', reason: 'DeploymentPaused', message: 'deployment is paused' } },
    { rollout: { phase: 'CanaryPaused', message: '1 canary' }, want: { status: 'Unknown', reason: 'CanaryPaused', message: '1 canary' } },
    { rollout: { phase: 'RolledBack', message: 'rolled back' }, want: { status: 'True', reason: 'RolledBack', message: 'rolled back' } },
    {
      rollout: { phase: 'Complete', revision: 3, message: 'ignored' },
      want: { status: 'True', reason: 'NewReplicaSetAvailable', message: 'revision 3 is available' },
    },
    { rollout: { phase: 'Complete' }, want: { status: 'True', reason: 'NewReplicaSetAvailable', message: 'revision  is available' } },
    { rollout: { phase: 'Progressing', message: '2 of 3 updated' }, want: { status: 'True', reason: 'ReplicaSetUpdated', message: '2 of 3 updated' } },
    { rollout: { phase: 'Progressing' }, want: { status: 'True', reason: 'ReplicaSetUpdated', message: '' } },
    { rollout: { phase: 'Failed' }, want: { status: 'False', reason: 'ProgressDeadlineExceeded', message: '' } },
  ])('$rollout.phase ($rollout.message)', ({ rollout, want }) => {
    expect(progressingCondition(rollout)).toEqual({ type: 'Progressing', ...want });
  });
});

describe('availableCondition', () => {
  it.each([
    { available: 3, desired: 3, unavailable: 0, status: 'True', message: 'Deployment has minimum availability.' },
    { available: 2, desired: 3, unavailable: 1, status: 'True', message: 'Deployment has minimum availability.' },
    { available: 1, desired: 3, unavailable: 1, status: 'False', message: '1 of 3 pods available (needs 2)' },
    { available: 0, desired: 0, unavailable: 0, status: 'True', message: 'Deployment has minimum availability.' },
  ])('$available of $desired, maxUnavailable $unavailable → $status', ({ available, desired, unavailable, status, message }) => {
    const c = availableCondition(available, desired, unavailable);
    expect(c).toMatchObject({ type: 'Available', status, message, reason: status === 'True' ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable' });
  });
});

describe('throttleWait', () => {
  const base: DeploymentStatus = {
    observedGeneration: 1,
    replicas: 3,
    readyReplicas: 1,
    availableReplicas: 1,
    unscheduledReplicas: 0,
    updatedReplicas: 1,
    updateRevision: 'h',
    conditions: [],
    rollout: { phase: 'Progressing', revision: 2, message: '1 of 3' },
  };
  const countsOnly: DeploymentStatus = { ...base, readyReplicas: 2, availableReplicas: 2, rollout: { phase: 'Progressing', revision: 2, message: '2 of 3' } };
  const newPhase: DeploymentStatus = { ...countsOnly, rollout: { phase: 'Complete', revision: 2 } };
  const t = new Date(10_000);
  it.each([
    { name: 'first write', last: undefined, next: countsOnly, wait: 0 },
    { name: 'counts only, within the interval', last: 9_000, next: countsOnly, wait: 1_000 },
    { name: 'counts only, interval over', last: 8_000, next: countsOnly, wait: 0 },
    { name: 'phase change, within the interval', last: 9_000, next: newPhase, wait: 0 },
  ])('$name', ({ last, next, wait }) => {
    const throttle = { minIntervalMs: 2_000, lastWrite: new Map(last === undefined ? [] : [['web', last]]) };
    expect(throttleWait(throttle, 'web', base, next, t)).toBe(wait);
    // A write goes ahead (and is recorded) exactly when there is no wait.
    expect(throttle.lastWrite.get('web')).toBe(wait === 0 ? 10_000 : last);
  });
});
