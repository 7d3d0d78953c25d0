import { describe, expect, it } from 'vitest';
import { OrchardError } from '../protocol/errors.js';
import { networkOwnerId, percentDefaults, staticDefaults, volumeFailure } from './apply-action.js';
import { containerKey } from './container-spec.js';
import type { Plan } from './plan.js';
import { mockContainer, mockPod } from './test-fixtures.js';

// The engine-facing steps of ActionApplier are covered through the Reconciler
// (reconciler.test.ts, storage/*.test.ts, images/*.test.ts, security tests); these are its pure parts.

describe('container defaults', () => {
  it.each([
    { name: 'no default', memory: undefined, want: {} },
    { name: 'bytes', memory: { bytes: 64 << 20 }, want: { memoryBytes: 64 << 20 } },
    { name: 'percent: needs the engine', memory: { percent: 75 }, want: undefined },
  ])('staticDefaults: $name', ({ memory, want }) => {
    expect(staticDefaults(memory)).toEqual(want);
  });

  it.each([
    { memTotal: 1000, percent: 75, want: { memoryBytes: 750 } },
    { memTotal: 1001, percent: 50, want: { memoryBytes: 500 } },
    { memTotal: 0, percent: 75, want: {} },
  ])('percentDefaults($memTotal, $percent)', ({ memTotal, percent, want }) => {
    expect(percentDefaults(memTotal, percent)).toEqual(want);
  });
});

describe('volumeFailure', () => {
  it.each([
    { name: 'path escape', err: new OrchardError('ERR_VOLUME_PATH_ESCAPE', 'x'), want: 'VolumePathEscape' },
    { name: 'missing config', err: new OrchardError('ERR_VALIDATION', 'x'), want: 'CreateContainerConfigError' },
    { name: 'anything else', err: new Error('x'), want: 'CreateContainerConfigError' },
  ])('$name', ({ err, want }) => {
    expect(volumeFailure(err)).toBe(want);
  });
});

describe('networkOwnerId', () => {
  const pod = mockPod({ containers: ['main', 'side'] });
  const side = { type: 'create' as const, pod, container: 'side', index: 1 };
  const running: Pick<Plan, 'current'> = { current: new Map([[containerKey(pod.uid, 'main'), mockContainer(pod, 0, { id: 'running-owner' })]]) };
  it.each([
    { name: 'created in this group', current: { current: new Map() }, created: [['main', 'new-owner']], want: 'new-owner' },
    { name: 'created wins over running', current: running, created: [['main', 'new-owner']], want: 'new-owner' },
    { name: 'running already', current: running, created: [], want: 'running-owner' },
    { name: 'not there yet', current: { current: new Map() }, created: [], want: undefined },
  ])('$name', ({ current, created, want }) => {
    expect(networkOwnerId(side, current as Pick<Plan, 'current'>, new Map(created as Array<[string, string]>))).toBe(want);
  });
});
