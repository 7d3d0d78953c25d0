import { describe, expect, it } from 'vitest';
import type { DeploymentStatus, RolloutStatus } from '../../protocol/objects.js';
import type { RolloutPlan } from './planner.js';
import { advancedRollout, imageChange, phaseEvent, rolloutAtStart, scalingMessage } from './rollout-transitions.js';

const t = new Date('2026-01-01T00:00:00.000Z');
const marker = { revision: 4, hash: 'bad', reason: 'deadline' };

describe('rolloutAtStart', () => {
  it.each<{ name: string; prev: Pick<DeploymentStatus, 'updateRevision' | 'rollout'>; want: RolloutStatus }>([
    { name: 'first rollout', prev: {}, want: { phase: 'Progressing', revision: 5, startedAt: t.toISOString() } },
    {
      name: 'same revision: a copy of the last block',
      prev: { updateRevision: 'h', rollout: { phase: 'Complete', revision: 5, progressKey: 'k' } },
      want: { phase: 'Complete', revision: 5, progressKey: 'k' },
    },
    { name: 'same revision, no block yet', prev: { updateRevision: 'h' }, want: { phase: 'Progressing' } },
    {
      name: 'new revision: fresh block',
      prev: { updateRevision: 'old', rollout: { phase: 'Complete', revision: 4, progressKey: 'k' } },
      want: { phase: 'Progressing', revision: 5, startedAt: t.toISOString() },
    },
    {
      name: "the rollback's own rollout keeps the marker",
      prev: { updateRevision: 'bad', rollout: { phase: 'Failed', rolledBackFrom: marker } },
      want: { phase: 'Progressing', revision: 5, startedAt: t.toISOString(), rolledBackFrom: marker },
    },
    {
      name: 'a later change drops the marker',
      prev: { updateRevision: 'stable', rollout: { phase: 'RolledBack', rolledBackFrom: marker } },
      want: { phase: 'Progressing', revision: 5, startedAt: t.toISOString() },
    },
  ])('$name', ({ prev, want }) => {
    expect(rolloutAtStart(prev, 'h', 5, t)).toEqual(want);
  });

  it('never shares the previous block', () => {
    const prev = { updateRevision: 'h', rollout: { phase: 'Complete' as const } };
    expect(rolloutAtStart(prev, 'h', 5, t)).not.toBe(prev.rollout);
  });
});

describe('advancedRollout', () => {
  const plan = (phase: RolloutPlan['phase'], progressed = false) => ({ phase, progressed, progressKey: 'k2', message: `plan says ${phase}` });
  it.each<{ name: string; rollout: RolloutStatus; prev: RolloutStatus | undefined; p: ReturnType<typeof plan>; want: RolloutStatus }>([
    {
      name: 'no progress',
      rollout: { phase: 'Progressing', progressKey: 'k1' },
      prev: undefined,
      p: plan('Progressing'),
      want: { phase: 'Progressing', progressKey: 'k1', message: 'plan says Progressing', revision: 5 },
    },
    {
      name: 'progress stamps key and time',
      rollout: { phase: 'Progressing' },
      prev: undefined,
      p: plan('Progressing', true),
      want: { phase: 'Progressing', progressKey: 'k2', lastProgressAt: t.toISOString(), message: 'plan says Progressing', revision: 5 },
    },
    {
      name: "the rollback's rollout completes: RolledBack",
      rollout: { phase: 'Progressing', rolledBackFrom: marker },
      prev: { phase: 'Failed', rolledBackFrom: marker },
      p: plan('Complete'),
      want: { phase: 'RolledBack', rolledBackFrom: marker, message: 'rolled back to revision 5: deadline', revision: 5 },
    },
    {
      name: 'a rollback still progressing',
      rollout: { phase: 'Progressing', rolledBackFrom: marker },
      prev: { phase: 'Failed', rolledBackFrom: marker },
      p: plan('Progressing'),
      want: { phase: 'Progressing', rolledBackFrom: marker, message: 'plan says Progressing', revision: 5 },
    },
    {
      name: 'marker dropped: plain Complete',
      rollout: { phase: 'Progressing' },
      prev: { phase: 'RolledBack', rolledBackFrom: marker },
      p: plan('Complete'),
      want: { phase: 'Complete', message: 'plan says Complete', revision: 5 },
    },
  ])('$name', ({ rollout, prev, p, want }) => {
    const before = structuredClone(rollout);
    expect(advancedRollout(rollout, prev, p, 5, t)).toEqual(want);
    expect(rollout).toEqual(before);
  });
});

describe('phaseEvent', () => {
  const counts = { desired: 3, total: 3, updated: 3, ready: 3, available: 3, updatedAvailable: 3, old: 0 };
  it.each([
    {
      phase: 'Complete' as const,
      inRollout: true,
      auto: false,
      want: { type: 'Normal', reason: 'RolloutComplete', message: 'revision 5 is fully available (3/3)' },
    },
    { phase: 'Complete' as const, inRollout: false, auto: false, want: undefined },
    {
      phase: 'Failed' as const,
      inRollout: true,
      auto: true,
      want: { type: 'Warning', reason: 'ProgressDeadlineExceeded', message: 'revision 5: msg (no fully available revision to roll back to)' },
    },
    {
      phase: 'Failed' as const,
      inRollout: true,
      auto: false,
      want: { type: 'Warning', reason: 'ProgressDeadlineExceeded', message: 'revision 5: msg (autoRollback is off)' },
    },
    { phase: 'CanaryPaused' as const, inRollout: true, auto: false, want: { type: 'Normal', reason: 'CanaryPaused', message: 'msg' } },
    { phase: 'Progressing' as const, inRollout: true, auto: false, want: undefined },
    { phase: 'Paused' as const, inRollout: true, auto: false, want: undefined },
  ])('$phase (inRollout $inRollout, autoRollback $auto)', ({ phase, inRollout, auto, want }) => {
    expect(phaseEvent({ phase, inRollout, message: 'msg', counts }, 5, auto)).toEqual(want);
  });
});

describe('event texts', () => {
  it.each([
    { from: undefined, to: ['a:1'], want: 'images a:1' },
    { from: ['a:1'], to: ['a:1'], want: 'images a:1' },
    { from: ['a:1', 'b:1'], to: ['a:2', 'b:1'], want: 'a:1,b:1 → a:2,b:1' },
  ])('imageChange $from → $to', ({ from, to, want }) => {
    expect(imageChange(from === undefined ? undefined : { images: from }, { images: to })).toBe(want);
  });

  it.each([
    { name: 'nothing done', created: [], deleted: [], want: undefined },
    { name: 'update revision by number', created: [['h', 2]], deleted: [], want: 'created 2 pod(s) of revision 5' },
    { name: 'old revision by hash', created: [['old', 1]], deleted: [], want: 'created 1 pod(s) of revision old' },
    {
      name: 'deletions, reasons once',
      created: [['h', 1]],
      deleted: [{ reason: 'old revision' }, { reason: 'old revision' }, { reason: 'surplus' }],
      want: 'created 1 pod(s) of revision 5, deleted 3 (old revision; surplus)',
    },
  ])('scalingMessage: $name', ({ created, deleted, want }) => {
    expect(scalingMessage(new Map(created as Array<[string, number]>), deleted, 'h', 5)).toBe(want);
  });
});
