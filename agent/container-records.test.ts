import { describe, expect, it } from 'vitest';
import { afterCrashRestart, afterPlannedRestart, ContainerRecords, exitCause, failureDelayMs, FORBIDDEN_RETRY_AT, nextFailure } from './container-records.js';
import { containerKey } from './container-spec.js';
import { mockContainer, mockPod } from './test-fixtures.js';

describe('failure back-off', () => {
  it.each([
    [1, 5000],
    [2, 10_000],
    [3, 20_000],
    [6, 160_000],
    [7, 300_000],
    [50, 300_000],
  ])('failure %i waits %i ms', (failures, ms) => {
    expect(failureDelayMs(failures)).toBe(ms);
  });

  it.each([
    { name: 'first failure', prev: undefined, want: { failures: 1, retryAt: 1000 + 5000 } },
    {
      name: 'third failure',
      prev: { reason: 'ErrImagePull' as const, message: 'old', failures: 2, retryAt: 0 },
      want: { failures: 3, retryAt: 1000 + 20_000 },
    },
  ])('nextFailure: $name', ({ prev, want }) => {
    expect(nextFailure(prev, 'RunContainerError', 'boom', 1000)).toEqual({ reason: 'RunContainerError', message: 'boom', ...want });
  });
});

describe('restart entries', () => {
  const prev = { restarts: 3, backoffStep: 2, lastRestartAt: 10 };
  it.each([
    { name: 'first crash', prev: undefined, reset: false, want: { restarts: 1, backoffStep: 1, lastRestartAt: 99 } },
    { name: 'crash again', prev, reset: false, want: { restarts: 4, backoffStep: 3, lastRestartAt: 99 } },
    { name: 'crash after a long run', prev, reset: true, want: { restarts: 4, backoffStep: 1, lastRestartAt: 99 } },
  ])('afterCrashRestart: $name', ({ prev: p, reset, want }) => {
    expect(afterCrashRestart(p, reset, 99)).toEqual(want);
  });

  it.each([
    { name: 'first', prev: undefined, want: { restarts: 1, backoffStep: 0, lastRestartAt: 99 } },
    { name: 'keeps the back-off step', prev, want: { restarts: 4, backoffStep: 2, lastRestartAt: 99 } },
  ])('afterPlannedRestart: $name', ({ prev: p, want }) => {
    expect(afterPlannedRestart(p, 99)).toEqual(want);
  });

  it.each([
    { name: 'no probe verdict', note: undefined, run: 'a', want: { reason: 'exited', stale: false } },
    { name: 'verdict about this run', note: { startedAt: 'a', reason: 'Unhealthy: x' }, run: 'a', want: { reason: 'Unhealthy: x', stale: false } },
    { name: 'verdict about an earlier run', note: { startedAt: 'a', reason: 'Unhealthy: x' }, run: 'b', want: { reason: 'exited', stale: true } },
    { name: 'run unknown', note: { startedAt: 'a', reason: 'Unhealthy: x' }, run: undefined, want: { reason: 'exited', stale: true } },
  ])('exitCause: $name', ({ note, run, want }) => {
    expect(exitCause(note, run)).toEqual(want);
  });
});

describe('ContainerRecords', () => {
  const pod = mockPod();
  const key = containerKey(pod.uid, 'main');

  it('forbid records a Forbidden failure once per message; allow forgets only that', () => {
    const r = new ContainerRecords();
    expect(r.forbid(key, 'no')).toBe(true);
    expect(r.forbid(key, 'no')).toBe(false);
    expect(r.failures.get(key)).toEqual({ reason: 'Forbidden', message: 'no', failures: 1, retryAt: FORBIDDEN_RETRY_AT });
    expect(r.forbid(key, 'other')).toBe(true);
    r.allow(key);
    expect(r.failures.has(key)).toBe(false);
    r.fail(key, 'ErrImagePull', 'x', 0);
    r.allow(key);
    expect(r.failures.get(key)?.reason).toBe('ErrImagePull');
  });

  it('retryConfigErrors retries only CreateContainerConfigError at once', () => {
    const r = new ContainerRecords();
    r.fail('a', 'CreateContainerConfigError', 'missing', 1000);
    r.fail('b', 'ErrImagePull', 'x', 1000);
    r.retryConfigErrors();
    expect(r.failures.get('a')?.retryAt).toBe(0);
    expect(r.failures.get('b')?.retryAt).toBe(6000);
  });

  it('prune forgets gone containers and pods no longer desired', () => {
    const r = new ContainerRecords();
    const c = mockContainer(pod, 0);
    r.crashRestart(c.id, false, undefined, 1);
    r.crashRestart('gone', false, undefined, 1);
    r.stoppedUnhealthy('gone', { startedAt: undefined, reason: 'x' });
    r.fail(key, 'RunContainerError', 'x', 1);
    r.fail('other-uid/main', 'RunContainerError', 'x', 1);
    r.prune([pod], [c]);
    expect([...r.restarts.keys()]).toEqual([c.id]);
    expect(r.terminations.size).toBe(0);
    expect([...r.failures.keys()]).toEqual([key]);
  });

  it('crashRestart counts before the attempt and drops a verdict about an earlier run', () => {
    const r = new ContainerRecords();
    r.stoppedUnhealthy('id', { startedAt: 'run-1', reason: 'Unhealthy: liveness' });
    expect(r.crashRestart('id', false, 'run-1', 5)).toBe('Unhealthy: liveness');
    expect(r.terminations.has('id')).toBe(true);
    expect(r.crashRestart('id', false, 'run-2', 6)).toBe('exited');
    expect(r.terminations.has('id')).toBe(false);
    expect(r.restarts.get('id')).toEqual({ restarts: 2, backoffStep: 2, lastRestartAt: 6 });
  });
});
