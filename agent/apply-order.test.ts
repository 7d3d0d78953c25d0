import { describe, expect, it } from 'vitest';
import { departedRemovals, mustWaitForRemovals, podUsesHostResources, splitActions, type RemoveAction } from './apply-order.js';
import type { Action } from './plan.js';
import { mockContainer, mockPod } from './test-fixtures.js';

const a = mockPod({ name: 'a', containers: ['main', 'side'] });
const b = mockPod({ name: 'b' });
const host = mockPod({ name: 'h', network: 'host' });
const ported = mockPod({ name: 'p' });
ported.spec.containers[0]?.ports.push({ containerPort: 80, hostPort: 8080, protocol: 'TCP' });
const bridgePort = mockPod({ name: 'q' });
bridgePort.spec.containers[0]?.ports.push({ containerPort: 80, protocol: 'TCP' });

const create = (pod: typeof a, index = 0): Action => ({ type: 'create', pod, container: pod.spec.containers[index]?.name ?? '', index });
const remove = (id: string): RemoveAction => ({ type: 'remove', id, reason: 'stray', graceSeconds: 1 });

describe('splitActions', () => {
  it.each([
    { name: 'nothing', actions: [], removals: [], groups: [] },
    { name: 'removals apart', actions: [remove('x'), create(a), remove('y')], removals: [remove('x'), remove('y')], groups: [[create(a)]] },
    { name: 'per pod, in plan order', actions: [create(a), create(b), create(a, 1)], removals: [], groups: [[create(a), create(a, 1)], [create(b)]] },
  ])('$name', ({ actions, removals, groups }) => {
    expect(splitActions(actions)).toEqual({ removals, groups });
  });
});

describe('host resources', () => {
  it.each([
    { name: 'bridge, no ports', pod: b, want: false },
    { name: 'bridge, container port only', pod: bridgePort, want: false },
    { name: 'host network', pod: host, want: true },
    { name: 'host port', pod: ported, want: true },
  ])('podUsesHostResources: $name', ({ pod, want }) => {
    expect(podUsesHostResources(pod)).toBe(want);
    expect(mustWaitForRemovals([[create(b)], [create(pod)]])).toBe(want);
  });
});

describe('departedRemovals', () => {
  const observed = [mockContainer(a, 0), mockContainer(b, 0), { ...mockContainer(b, 0), id: 'unlabelled', labels: {} }];
  it.each([
    { name: 'pods still desired: replaced in order', desired: [a, b], removing: ['a-0', 'b-0'], want: [] },
    { name: 'pod no longer desired: background', desired: [a], removing: ['a-0', 'b-0'], want: ['b-0'] },
    { name: 'no pod label, or not observed: background', desired: [a, b], removing: ['unlabelled', 'unknown'], want: ['unlabelled', 'unknown'] },
  ])('$name', ({ desired, removing, want }) => {
    expect(departedRemovals(removing.map(remove), observed, desired).map((r) => r.id)).toEqual(want);
  });
});
