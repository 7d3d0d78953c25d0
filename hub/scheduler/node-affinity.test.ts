import { describe, expect, it } from 'vitest';
import type { NodeSelectorRequirement } from '../../protocol/manifest.js';
import { formatRequirement, matchesRequirement, nodeAffinity, nodeAffinityPreferred } from './node-affinity.js';
import { podContext } from './pod-context.js';
import { schedule, scheduleBatch } from './scheduler.js';
import { mockNode, mockPod } from './testing.js';
import type { SchedPod } from './types.js';

function withAffinity(nodeAffinity: unknown, extra: { owner?: string; name?: string } = {}): SchedPod {
  return mockPod({ ...extra, spec: { containers: [{ name: 'app', image: 'img' }], affinity: { nodeAffinity } } });
}

const req = (key: string, operator: NodeSelectorRequirement['operator'], values: string[] = []): NodeSelectorRequirement => ({ key, operator, values });

describe('matchesRequirement', () => {
  const cases: Array<[string, Record<string, string>, NodeSelectorRequirement, boolean]> = [
    ['In matches a listed value', { zone: 'north' }, req('zone', 'In', ['north', 'south']), true],
    ['In rejects another value', { zone: 'east' }, req('zone', 'In', ['north', 'south']), false],
    ['In rejects a missing label', {}, req('zone', 'In', ['north']), false],
    ['NotIn rejects a listed value', { zone: 'north' }, req('zone', 'NotIn', ['north']), false],
    ['NotIn matches another value', { zone: 'east' }, req('zone', 'NotIn', ['north']), true],
    ['NotIn matches a missing label', {}, req('zone', 'NotIn', ['north']), true],
    ['Exists matches any value', { gpu: '' }, req('gpu', 'Exists'), true],
    ['Exists rejects a missing label', {}, req('gpu', 'Exists'), false],
    ['DoesNotExist matches a missing label', {}, req('gpu', 'DoesNotExist'), true],
    ['DoesNotExist rejects a present label', { gpu: 'yes' }, req('gpu', 'DoesNotExist'), false],
  ];
  it.each(cases)('%s', (_name, labels, r, want) => {
    expect(matchesRequirement(labels, r)).toBe(want);
  });

  it('formats requirements as users wrote them', () => {
    expect(formatRequirement(req('zone', 'In', ['a', 'b']))).toBe('zone In (a, b)');
    expect(formatRequirement(req('gpu', 'Exists'))).toBe('gpu Exists');
  });
});

describe('node-affinity filter (required terms are ANDed)', () => {
  const cases: Array<{ name: string; labels: Record<string, string>; required: NodeSelectorRequirement[]; want: string | undefined }> = [
    { name: 'no affinity fits', labels: {}, required: [], want: undefined },
    { name: 'all terms met', labels: { zone: 'north', disk: 'ssd' }, required: [req('zone', 'In', ['north']), req('disk', 'Exists')], want: undefined },
    {
      name: 'one term unmet',
      labels: { zone: 'north' },
      required: [req('zone', 'In', ['north']), req('disk', 'Exists')],
      want: 'node affinity disk Exists not matched',
    },
    {
      name: 'every unmet term listed',
      labels: { gpu: 'x' },
      required: [req('zone', 'In', ['north']), req('gpu', 'DoesNotExist')],
      want: 'node affinity zone In (north), gpu DoesNotExist not matched',
    },
  ];
  it.each(cases)('$name', ({ labels, required, want }) => {
    const pod = withAffinity({ required });
    const node = mockNode({ labels });
    const ctx = podContext(pod);
    expect(nodeAffinity.filter(pod, node, ctx)).toBe(want);
    expect(nodeAffinity.fits?.(pod, node, ctx)).toBe(want === undefined);
  });

  it('explains an unschedulable pod by the unmet requirement', () => {
    const d = schedule(withAffinity({ required: [req('zone', 'In', ['north'])] }), [
      mockNode({ name: 'a', labels: { zone: 'south' } }),
      mockNode({ name: 'b' }),
    ]);
    expect(d.kind === 'unschedulable' && d.summary).toBe('0/2 nodes fit: 2 node affinity zone In (north) not matched');
  });
});

describe('node-affinity score (preferred)', () => {
  const pod = withAffinity({
    preferred: [
      { weight: 80, requirement: req('disk', 'In', ['ssd']) },
      { weight: 20, requirement: req('zone', 'Exists') },
    ],
  });
  const cases: Array<[string, Record<string, string>, number]> = [
    ['meets both', { disk: 'ssd', zone: 'a' }, 100],
    ['meets the heavy one', { disk: 'ssd' }, 80],
    ['meets the light one', { zone: 'a' }, 20],
    ['meets none', {}, 0],
  ];
  it.each(cases)('%s', (_n, labels, want) => {
    expect(nodeAffinityPreferred.score(pod, mockNode({ labels }), podContext(pod))).toBe(want);
  });

  it('is off for pods without preferences', () => {
    const plain = mockPod();
    expect(nodeAffinityPreferred.enabled?.(plain, podContext(plain))).toBe(false);
  });

  it('places single pods on the preferred node although it is busier', () => {
    const nodes = [mockNode({ name: 'plain-1' }), mockNode({ name: 'ssd', labels: { disk: 'ssd' } }), mockNode({ name: 'plain-2' })];
    const pods = ['a', 'b', 'c'].map((o) =>
      withAffinity({ preferred: [{ weight: 50, requirement: req('disk', 'In', ['ssd']) }] }, { owner: o, name: `${o}-0` }),
    );
    const ds = scheduleBatch(pods, nodes);
    expect(ds.map((d) => (d.kind === 'bound' ? d.nodeName : 'none'))).toEqual(['ssd', 'ssd', 'ssd']);
  });
});
