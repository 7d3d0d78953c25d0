import { describe, expect, it } from 'vitest';
import { podContext } from './pod-context.js';
import { scheduleBatch } from './scheduler.js';
import { mockNode, mockPod } from './testing.js';
import { TopologyCounts, topologySpread } from './topology.js';
import type { Decision, SchedNode, SchedPod } from './types.js';

function zoned(spec: Array<[string, string | undefined]>): SchedNode[] {
  const nodes: SchedNode[] = [];
  const topology = new TopologyCounts(nodes);
  for (const [name, zone] of spec) nodes.push(mockNode({ name, labels: zone === undefined ? {} : { zone }, topology }));
  return nodes;
}

function replicas(owner: string, n: number, extra: Partial<SchedPod> = {}, input: Parameters<typeof mockPod>[0] = {}): SchedPod[] {
  const t = { ...mockPod({ ...input, owner }), ...extra };
  return Array.from({ length: n }, (_, i) => ({ ...t, name: `${owner}-${i}` }));
}

function where(ds: Decision[]): string[] {
  return ds.map((d) => (d.kind === 'bound' ? d.nodeName : 'none'));
}

function tally(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

describe('TopologyCounts', () => {
  it('indexes a key lazily from the nodes and follows later binds', () => {
    const nodes = zoned([
      ['a1', 'a'],
      ['a2', 'a'],
      ['b1', 'b'],
    ]);
    nodes[0]!.podsByOwner.set('web', 2);
    nodes[2]!.podsByOwner.set('web', 1);
    nodes[2]!.podsByOwner.set('db', 5);
    const t = nodes[0]!.topology!;
    expect(t.count('zone', 'a', 'web')).toBe(2);
    expect(t.count('zone', 'b', 'web')).toBe(1);
    expect(t.count('zone', 'b', 'db')).toBe(5);
    t.add(nodes[1]!, 'web');
    expect(t.count('zone', 'a', 'web')).toBe(3);
    expect(t.count('rack', 'x', 'web')).toBe(0);
  });
});

describe('topology-spread score', () => {
  const cases: Array<{ name: string; zone: string | undefined; here: number; want: number }> = [
    { name: 'empty domain', zone: 'b', here: 0, want: 100 },
    { name: 'one replica in the domain', zone: 'a', here: 1, want: 50 },
    { name: 'node outside every domain', zone: undefined, here: 0, want: 0 },
  ];
  it.each(cases)('$name', ({ zone, here, want }) => {
    const nodes = zoned([
      ['x', zone],
      ['a-other', 'a'],
    ]);
    nodes[1]!.podsByOwner.set('web', here);
    const pod = { ...mockPod({ owner: 'web' }), spreadBy: 'zone' };
    expect(topologySpread.score(pod, nodes[0]!, podContext(pod))).toBe(want);
  });

  it('is off without spreadBy or without an owner', () => {
    const a = mockPod({ owner: 'web' });
    const b = { ...mockPod(), spreadBy: 'zone' };
    expect(topologySpread.enabled?.(a, podContext(a))).toBe(false);
    expect(topologySpread.enabled?.(b, podContext(b))).toBe(false);
  });
});

describe('spreading replicas across a topology label', () => {
  it('balances zones first, nodes second (zone a has three nodes, zone b one)', () => {
    const nodes = zoned([
      ['a1', 'a'],
      ['a2', 'a'],
      ['a3', 'a'],
      ['b1', 'b'],
    ]);
    const ds = scheduleBatch(replicas('web', 4, { spreadBy: 'zone' }), nodes);
    const byNode = tally(where(ds));
    const byZone = tally(where(ds).map((n) => n[0]!));
    expect(byZone).toEqual({ a: 2, b: 2 });
    expect(byNode['b1']).toBe(2);
    // Within zone a the two replicas still go to different nodes.
    expect(Object.keys(byNode).filter((n) => n.startsWith('a'))).toHaveLength(2);
  });

  it('without spreadBy, replicas spread over nodes only (zone a gets three of four)', () => {
    const nodes = zoned([
      ['a1', 'a'],
      ['a2', 'a'],
      ['a3', 'a'],
      ['b1', 'b'],
    ]);
    const ds = scheduleBatch(replicas('web', 4), nodes);
    expect(tally(where(ds).map((n) => n[0]!))).toEqual({ a: 3, b: 1 });
  });

  it('counts replicas already bound before the batch', () => {
    const nodes = zoned([
      ['a1', 'a'],
      ['b1', 'b'],
    ]);
    nodes[0]!.podsByOwner.set('web', 3);
    const ds = scheduleBatch(replicas('web', 2, { spreadBy: 'zone' }), nodes);
    expect(where(ds)).toEqual(['b1', 'b1']);
  });
});

describe('placement strategy', () => {
  const nodes = (): SchedNode[] =>
    zoned([
      ['n1', undefined],
      ['n2', undefined],
      ['n3', undefined],
    ]);

  it('spread puts each replica on its own node', () => {
    const ds = scheduleBatch(replicas('web', 3, {}, { cpu: '500m', memory: '256Mi' }), nodes());
    expect(Object.values(tally(where(ds)))).toEqual([1, 1, 1]);
  });

  it('binpack fills one node before the next', () => {
    const ds = scheduleBatch(replicas('web', 3, { strategy: 'binpack' }, { cpu: '500m', memory: '256Mi' }), nodes());
    expect(Object.values(tally(where(ds)))).toEqual([3]);
  });

  it('binpack overflows to another node when the first is full', () => {
    // 4 cores allocatable per mock node: 3 × 1.5 cores cannot share one.
    const ds = scheduleBatch(replicas('web', 3, { strategy: 'binpack' }, { cpu: '1500m' }), nodes());
    expect(Object.values(tally(where(ds))).sort()).toEqual([1, 2]);
  });
});
