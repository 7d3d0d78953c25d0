import { describe, expect, it } from 'vitest';
import { feasibleNodesToFind, schedule, scheduleBatch } from './scheduler.js';
import { Gi, Mi, mockNode, mockPod } from './testing.js';
import type { Decision, SchedNode, SchedPod, ScorePlugin } from './types.js';

function nodesNamed(count: number, over: (i: number) => Partial<SchedNode> = () => ({})): SchedNode[] {
  return Array.from({ length: count }, (_, i) => mockNode({ name: `node-${i + 1}`, ...over(i) }));
}

function replicas(owner: string, count: number, input: Parameters<typeof mockPod>[0] = {}): SchedPod[] {
  // Replicas share one spec object, as pods stamped from a Deployment template do.
  const template = mockPod({ ...input, owner });
  return Array.from({ length: count }, (_, i) => ({ ...template, name: `${owner}-${i}` }));
}

function placements(ds: Decision[]): string[] {
  return ds.map((d) => (d.kind === 'bound' ? d.nodeName : 'unschedulable'));
}

function tally(names: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
}

describe('schedule', () => {
  it('binds to the only feasible node and explains the score', () => {
    const nodes = [mockNode({ name: 'a', arch: 'arm' }), mockNode({ name: 'b', arch: 'arm64' })];
    const d = schedule(mockPod({ arch: ['arm64'], cpu: '1' }), nodes);
    expect(d.kind).toBe('bound');
    if (d.kind !== 'bound') return;
    expect(d.nodeName).toBe('b');
    expect(d.explanation).toMatchObject({ feasible: 1, total: 2, examined: 2, counts: { 'node-arch': 1 } });
    expect(d.explanation.scores?.b).toEqual({ 'node-resources': 75, 'prefer-no-schedule': 100, total: 375 });
  });

  it('summarises an unschedulable pod per reason category, most common first', () => {
    const nodes: SchedNode[] = [
      ...nodesNamed(7, () => ({ arch: 'arm' })),
      ...Array.from({ length: 4 }, (_, i) => mockNode({ name: `full-${i}`, requested: { cpuMillis: 0, memoryBytes: 4 * Gi - (100 + i) * Mi, pods: 3 } })),
      mockNode({ name: 'cordoned', unschedulable: true }),
    ];
    const d = schedule(mockPod({ arch: ['arm64'], memory: '256Mi' }), nodes);
    expect(d.kind).toBe('unschedulable');
    if (d.kind !== 'unschedulable') return;
    expect(d.summary).toBe('0/12 nodes fit: 7 arch arm (needs arm64), 4 insufficient memory, 1 cordoned');
    expect(d.explanation.filtered['full-0']).toEqual(['insufficient memory: 100Mi free (needs 256Mi)']);
    expect(d.explanation.filtered['full-3']).toEqual(['insufficient memory: 103Mi free (needs 256Mi)']);
    expect(d.explanation.counts).toEqual({ 'arch arm (needs arm64)': 7, 'insufficient memory': 4, cordoned: 1 });
    expect(d.explanation).toMatchObject({ feasible: 0, total: 12, examined: 12 });
  });

  it('lists every reason a node fails, not just the first', () => {
    const nodes = [mockNode({ name: 'dead', ready: false, unschedulable: true, arch: 'amd64' })];
    const d = schedule(mockPod({ arch: ['arm'] }), nodes);
    expect(d.kind === 'unschedulable' && d.explanation.filtered).toEqual({ dead: ['not ready', 'cordoned', 'arch amd64 (needs arm)'] });
    expect(d.kind === 'unschedulable' && d.summary).toBe('0/1 nodes fit: 1 arch amd64 (needs arm), 1 cordoned, 1 not ready');
  });

  it('says so when no nodes are registered', () => {
    const d = schedule(mockPod(), []);
    expect(d).toMatchObject({ kind: 'unschedulable', summary: '0/0 nodes fit: no nodes registered', explanation: { feasible: 0, total: 0 } });
  });

  it('is deterministic: the same input gives the same node, and ties vary by pod name', () => {
    const nodes = nodesNamed(10);
    const names = Array.from({ length: 50 }, (_, i) => `pod-${i}`);
    const first = names.map((name) => (schedule(mockPod({ name }), nodes) as { nodeName: string }).nodeName);
    const again = names.map((name) => (schedule(mockPod({ name }), nodes) as { nodeName: string }).nodeName);
    expect(again).toEqual(first);
    // Ten identical nodes tie; a seeded shuffle must not always pick the same one.
    expect(new Set(first).size).toBeGreaterThan(5);
    const seeded = names.map((name) => (schedule(mockPod({ name }), nodes, { seed: 42 }) as { nodeName: string }).nodeName);
    expect(seeded).not.toEqual(first);
  });

  it('prefers a node without a PreferNoSchedule taint but still uses it when it is the only one', () => {
    const tainted = mockNode({ name: 'tainted', taints: [{ key: 'sd-card', effect: 'PreferNoSchedule' }] });
    const busy = mockNode({ name: 'busy', requested: { cpuMillis: 3000, memoryBytes: 3 * Gi, pods: 5 } });
    expect(schedule(mockPod({ cpu: '100m' }), [tainted, busy])).toMatchObject({ kind: 'bound', nodeName: 'busy' });
    expect(schedule(mockPod({ cpu: '100m' }), [tainted])).toMatchObject({ kind: 'bound', nodeName: 'tainted' });
  });

  it('runs caller-supplied plugins instead of the defaults', () => {
    const byName: ScorePlugin = { name: 'alphabetical', weight: 1, score: (_p, n) => (n.name === 'z' ? 100 : 0) };
    const nodes = [mockNode({ name: 'a' }), mockNode({ name: 'z' })];
    expect(schedule(mockPod(), nodes, { scores: [byName] })).toMatchObject({ nodeName: 'z' });
    const onlyA = { name: 'only-a', filter: (_p: SchedPod, n: SchedNode) => (n.name === 'a' ? undefined : 'not a') };
    expect(schedule(mockPod(), nodes, { filters: [onlyA], scores: [byName] })).toMatchObject({ nodeName: 'a' });
  });
});

describe('scheduleBatch', () => {
  it('spreads 3 replicas over 2 nodes as 2 + 1', () => {
    const nodes = nodesNamed(2);
    const ds = scheduleBatch(replicas('web', 3, { cpu: '100m', memory: '64Mi' }), nodes);
    const t = tally(placements(ds));
    expect(Object.values(t).sort()).toEqual([1, 2]);
    expect(nodes.map((n) => n.podsByOwner.get('web')).sort()).toEqual([1, 2]);
  });

  it('spreads replicas evenly even when they request nothing', () => {
    const nodes = nodesNamed(4);
    const t = tally(placements(scheduleBatch(replicas('web', 8), nodes)));
    expect(t).toEqual({ 'node-1': 2, 'node-2': 2, 'node-3': 2, 'node-4': 2 });
  });

  it('packs binpack pods onto as few nodes as fit', () => {
    const nodes = nodesNamed(3);
    const t = tally(placements(scheduleBatch(replicas('batch', 8, { cpu: '1', memory: '512Mi', strategy: 'binpack' }), nodes)));
    expect(Object.values(t).sort()).toEqual([4, 4]);
  });

  it('respects capacity within the batch and updates node bookkeeping in place', () => {
    const nodes = [mockNode({ name: 'small', allocatable: { cpuMillis: 1000, memoryBytes: Gi, pods: 110 } })];
    const ds = scheduleBatch(replicas('web', 3, { cpu: '400m', memory: '100Mi' }), nodes);
    expect(placements(ds)).toEqual(['small', 'small', 'unschedulable']);
    expect(ds[2]).toMatchObject({ summary: '0/1 nodes fit: 1 insufficient cpu' });
    expect(ds[2]?.kind === 'unschedulable' && ds[2].explanation.filtered.small).toEqual(['insufficient cpu: 200m free (needs 400m)']);
    expect(nodes[0]?.requested).toEqual({ cpuMillis: 800, memoryBytes: 200 * Mi, pods: 2 });
  });

  it('respects pod slots within the batch', () => {
    const nodes = [mockNode({ name: 'n', allocatable: { cpuMillis: 4000, memoryBytes: Gi, pods: 2 } })];
    expect(placements(scheduleBatch(replicas('web', 3), nodes))).toEqual(['n', 'n', 'unschedulable']);
  });

  it('never puts two pods wanting the same host port on one node', () => {
    const nodes = nodesNamed(2);
    const ds = scheduleBatch(replicas('ingress', 3, { ports: [{ containerPort: 80, hostPort: 80 }] }), nodes);
    const p = placements(ds);
    expect(new Set(p.slice(0, 2))).toEqual(new Set(['node-1', 'node-2']));
    expect(ds[2]).toMatchObject({ kind: 'unschedulable', summary: '0/2 nodes fit: 2 host port in use' });
    expect(nodes.every((n) => n.usedHostPorts.has('TCP/0.0.0.0/80'))).toBe(true);
  });

  it('is deterministic for the same input', () => {
    const run = () => placements(scheduleBatch([...replicas('a', 20, { cpu: '300m' }), ...replicas('b', 20, { memory: '300Mi' })], nodesNamed(7), { seed: 7 }));
    expect(run()).toEqual(run());
  });

  it('gives every identical unschedulable replica the full explanation', () => {
    const ds = scheduleBatch(replicas('big', 3, { cpu: '64' }), nodesNamed(2));
    expect(ds.map((d) => d.kind === 'unschedulable' && d.summary)).toEqual(Array(3).fill('0/2 nodes fit: 2 insufficient cpu'));
    expect(ds[2]?.explanation.filtered['node-2']).toEqual(['insufficient cpu: 4 free (needs 64)']);
  });

  it('caps the sample of a very large cluster at 200 feasible nodes (5 % of 10,000 would be 500)', () => {
    expect(feasibleNodesToFind(4000)).toBe(200);
    expect(feasibleNodesToFind(10_000)).toBe(200);
    expect(feasibleNodesToFind(10_000, { maxFeasibleNodesToScore: 1000 })).toBe(500);
    expect(feasibleNodesToFind(10_000, { percentageOfNodesToScore: 100 })).toBe(10_000);
    expect(feasibleNodesToFind(10_000, { minFeasibleNodesToScore: 300 })).toBe(300);
    const nodes = nodesNamed(5000);
    const ds = scheduleBatch(replicas('web', 50, { cpu: '100m' }), nodes);
    expect(ds[0]?.explanation).toMatchObject({ feasible: 200, examined: 200, total: 5000 });
    // The rotating start still hands every pod a fresh slice: 50 pods, 50 different nodes.
    expect(Object.keys(tally(placements(ds)))).toHaveLength(50);
  });

  it('in a large cluster scores a rotating sample, yet every node gets used', () => {
    const nodes = nodesNamed(1000, (i) => ({ arch: i % 2 === 0 ? 'arm64' : 'arm' }));
    expect(feasibleNodesToFind(1000)).toBe(100);
    const ds = scheduleBatch(replicas('web', 500, { arch: ['arm64'], cpu: '100m' }), nodes);
    const first = ds[0];
    expect(first?.kind).toBe('bound');
    // Stops after 100 feasible arm64 nodes: about 200 examined, half rejected for arch.
    expect(first?.explanation).toMatchObject({ feasible: 100, examined: 199, total: 1000, counts: { 'node-arch': 99 } });
    const t = tally(placements(ds));
    expect(Object.keys(t)).toHaveLength(500);
    expect(Object.values(t).every((k) => k === 1)).toBe(true);
  });

  it('scores every node when asked to', () => {
    const nodes = nodesNamed(300);
    const d = schedule(mockPod(), nodes, { percentageOfNodesToScore: 100 });
    expect(d.explanation).toMatchObject({ feasible: 300, examined: 300 });
  });
});
