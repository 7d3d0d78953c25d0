import { describe, expect, it } from 'vitest';
import { podContext } from './pod-context.js';
import { leastAllocatedScore, mostAllocatedScore, nodeResources, ownerSpread, preferNoScheduleTaints } from './scores.js';
import { Gi, mockNode, mockPod } from './testing.js';
import type { SchedNode, SchedPod, ScorePlugin } from './types.js';

interface Case {
  name: string;
  plugin: ScorePlugin;
  node: Partial<SchedNode>;
  pod: SchedPod;
  want: number;
}

const half = { cpuMillis: 2000, memoryBytes: 2 * Gi, pods: 10 };

const cases: Case[] = [
  // Node: 4 cores, 4Gi, 110 pods. Pod asks 1 core + 1Gi.
  { name: 'least-allocated, empty node', plugin: nodeResources, node: {}, pod: mockPod({ cpu: '1', memory: '1Gi' }), want: 75 },
  { name: 'least-allocated, half-full node', plugin: nodeResources, node: { requested: half }, pod: mockPod({ cpu: '1', memory: '1Gi' }), want: 25 },
  {
    name: 'least-allocated averages cpu and memory',
    plugin: nodeResources,
    node: { requested: { cpuMillis: 2000, memoryBytes: 0, pods: 1 } },
    pod: mockPod({ cpu: '1', memory: '1Gi' }),
    want: 50,
  },
  {
    name: 'least-allocated, cpu-only pod ignores memory',
    plugin: nodeResources,
    node: { requested: { cpuMillis: 0, memoryBytes: 4 * Gi, pods: 1 } },
    pod: mockPod({ cpu: '1' }),
    want: 75,
  },
  {
    name: 'least-allocated, zero-request pod ranks by pod count',
    plugin: nodeResources,
    node: { allocatable: { cpuMillis: 4000, memoryBytes: 4 * Gi, pods: 10 }, requested: { cpuMillis: 0, memoryBytes: 0, pods: 4 } },
    pod: mockPod(),
    want: 50,
  },
  {
    name: 'least-allocated, overfull clamps to 0',
    plugin: nodeResources,
    node: { requested: { cpuMillis: 9000, memoryBytes: 9 * Gi, pods: 1 } },
    pod: mockPod({ cpu: '1', memory: '1Gi' }),
    want: 0,
  },
  { name: 'binpack, empty node', plugin: nodeResources, node: {}, pod: mockPod({ cpu: '1', memory: '1Gi', strategy: 'binpack' }), want: 25 },
  {
    name: 'binpack, half-full node',
    plugin: nodeResources,
    node: { requested: half },
    pod: mockPod({ cpu: '1', memory: '1Gi', strategy: 'binpack' }),
    want: 75,
  },

  { name: 'spread, no replicas here', plugin: ownerSpread, node: {}, pod: mockPod({ owner: 'web' }), want: 100 },
  { name: 'spread, one replica here', plugin: ownerSpread, node: { podsByOwner: new Map([['web', 1]]) }, pod: mockPod({ owner: 'web' }), want: 50 },
  { name: 'spread, three replicas here', plugin: ownerSpread, node: { podsByOwner: new Map([['web', 3]]) }, pod: mockPod({ owner: 'web' }), want: 25 },
  { name: 'spread, other owner does not count', plugin: ownerSpread, node: { podsByOwner: new Map([['db', 3]]) }, pod: mockPod({ owner: 'web' }), want: 100 },

  { name: 'no taints', plugin: preferNoScheduleTaints, node: {}, pod: mockPod(), want: 100 },
  {
    name: 'one PreferNoSchedule taint',
    plugin: preferNoScheduleTaints,
    node: { taints: [{ key: 'slow', effect: 'PreferNoSchedule' }] },
    pod: mockPod(),
    want: 50,
  },
  {
    name: 'two PreferNoSchedule taints',
    plugin: preferNoScheduleTaints,
    node: {
      taints: [
        { key: 'slow', effect: 'PreferNoSchedule' },
        { key: 'sd-card', effect: 'PreferNoSchedule' },
      ],
    },
    pod: mockPod(),
    want: 100 / 3,
  },
  {
    name: 'tolerated PreferNoSchedule taint is free',
    plugin: preferNoScheduleTaints,
    node: { taints: [{ key: 'slow', effect: 'PreferNoSchedule' }] },
    pod: mockPod({ tolerations: [{ key: 'slow', operator: 'Exists' }] }),
    want: 100,
  },
  {
    name: "NoSchedule taints are the filter's business",
    plugin: preferNoScheduleTaints,
    node: { taints: [{ key: 'x', effect: 'NoSchedule' }] },
    pod: mockPod(),
    want: 100,
  },
];

describe('score plugins', () => {
  it.each(cases)('$plugin.name: $name', ({ plugin, node, pod, want }) => {
    const s = plugin.score(pod, mockNode(node), podContext(pod));
    expect(s).toBeCloseTo(want, 6);
    expect(s).toBeGreaterThanOrEqual(0);
    expect(s).toBeLessThanOrEqual(100);
  });

  it('least- and most-allocated are mirror images', () => {
    const pod = mockPod({ cpu: '500m', memory: '300Mi' });
    const node = mockNode({ requested: { cpuMillis: 1234, memoryBytes: Gi, pods: 3 } });
    const ctx = podContext(pod);
    expect(leastAllocatedScore(node, ctx) + mostAllocatedScore(node, ctx)).toBeCloseTo(100, 9);
  });

  it('replica spread steps aside for binpack pods and pods without an owner', () => {
    const enabled = (p: SchedPod) => ownerSpread.enabled?.(p, podContext(p));
    expect(enabled(mockPod({ owner: 'web' }))).toBe(true);
    expect(enabled(mockPod({ owner: 'web', strategy: 'binpack' }))).toBe(false);
    expect(enabled(mockPod())).toBe(false);
  });

  it('normalisation flags: counts are normalised, resource fractions are not', () => {
    expect(ownerSpread.normalize).toBe(true);
    expect(preferNoScheduleTaints.normalize).toBe(true);
    expect(nodeResources.normalize).toBe(false);
  });
});
