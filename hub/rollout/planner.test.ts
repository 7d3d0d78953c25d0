import { describe, expect, it } from 'vitest';
import { budgets, planRollout, resolveIntOrPercent, type PlannerPod, type RolloutInput } from './planner.js';

const NOW = 1_000_000;

/** `n` pods of revision `hash`: ready (r), not ready (u), unscheduled (s). */
function pods(hash: string, spec: string): PlannerPod[] {
  return [...spec].map((k, i) => {
    const p: PlannerPod = { name: `${hash}-${i}`, hash, ready: k === 'r', createdAt: NOW - 1000 + i, readySince: k === 'r' ? NOW - 60_000 : undefined };
    if (k !== 's') p.node = `n${i % 2}`;
    if (k === 'u') p.problem = 'ErrImagePull: manifest unknown';
    return p;
  });
}

function input(over: Partial<RolloutInput>): RolloutInput {
  return {
    mode: 'replicated',
    replicas: 4,
    updateHash: 'new',
    stableHash: 'old',
    strategy: { type: 'RollingUpdate', maxSurge: 1, maxUnavailable: 0 },
    minReadySeconds: 0,
    progressDeadlineSeconds: 600,
    paused: false,
    promoted: false,
    now: NOW,
    pods: [],
    ...over,
  };
}

describe('resolveIntOrPercent / budgets', () => {
  it.each([
    [1, 10, true, 1],
    ['25%', 10, true, 3],
    ['25%', 10, false, 2],
    ['100%', 3, false, 3],
    ['0%', 7, true, 0],
    ['33%', 4, true, 2],
    ['33%', 4, false, 1],
  ] as const)('%s of %i (round up %s) = %i', (v, total, up, want) => {
    expect(resolveIntOrPercent(v, total, up)).toBe(want);
  });

  it('never lets surge and unavailability both be 0 (would deadlock)', () => {
    expect(budgets({ type: 'RollingUpdate', maxSurge: 0, maxUnavailable: 0 }, 5)).toEqual({ surge: 0, unavailable: 1 });
    expect(budgets({ type: 'RollingUpdate', maxSurge: '10%', maxUnavailable: '10%' }, 5)).toEqual({ surge: 1, unavailable: 0 });
  });
});

describe('planRollout — replicated RollingUpdate arithmetic', () => {
  const cases: Array<{ name: string; over: Partial<RolloutInput>; creates: number; deletes: string[] }> = [
    { name: 'surge 1 / unavailable 0: one new pod first, nothing deleted', over: { pods: pods('old', 'rrrr') }, creates: 1, deletes: [] },
    { name: 'new pod not ready: no more surge, no deletes', over: { pods: [...pods('old', 'rrrr'), ...pods('new', 'u')] }, creates: 0, deletes: [] },
    { name: 'new pod ready: one old pod goes (newest first)', over: { pods: [...pods('old', 'rrrr'), ...pods('new', 'r')] }, creates: 0, deletes: ['old-3'] },
    { name: 'after a replacement: the next surge pod', over: { pods: [...pods('old', 'rrr'), ...pods('new', 'r')] }, creates: 1, deletes: [] },
    {
      name: 'surge 0 / unavailable 1: delete one old, create none yet',
      over: { strategy: { type: 'RollingUpdate', maxSurge: 0, maxUnavailable: 1 }, pods: pods('old', 'rrrr') },
      creates: 0,
      deletes: ['old-3'],
    },
    {
      name: 'surge 0 / unavailable 1: room for one new pod',
      over: { strategy: { type: 'RollingUpdate', maxSurge: 0, maxUnavailable: 1 }, pods: pods('old', 'rrr') },
      creates: 1,
      deletes: [],
    },
    {
      name: 'surge 0 / unavailable 1: new pod pending blocks further deletes',
      over: { strategy: { type: 'RollingUpdate', maxSurge: 0, maxUnavailable: 1 }, pods: [...pods('old', 'rrr'), ...pods('new', 'u')] },
      creates: 0,
      deletes: [],
    },
    {
      name: 'percentages: 50% surge / 50% unavailable of 4',
      over: { strategy: { type: 'RollingUpdate', maxSurge: '50%', maxUnavailable: '50%' }, pods: pods('old', 'rrrr') },
      creates: 2,
      deletes: ['old-3', 'old-2'],
    },
    {
      name: 'unhealthy old pods go first and cost no availability',
      over: { pods: [...pods('old', 'rrur'), ...pods('new', 'r')] },
      creates: 0,
      deletes: ['old-2'],
    },
    {
      name: 'unscheduled old pod goes before a not-ready one',
      over: { strategy: { type: 'RollingUpdate', maxSurge: 0, maxUnavailable: 1 }, pods: [...pods('old', 'rrus')] },
      creates: 0,
      deletes: ['old-3'],
    },
    { name: 'steady state scale up', over: { stableHash: 'new', pods: pods('new', 'rr') }, creates: 2, deletes: [] },
    {
      name: 'steady state scale down: unready first',
      over: { stableHash: 'new', replicas: 2, pods: pods('new', 'rrur') },
      creates: 0,
      deletes: ['new-2', 'new-3'],
    },
  ];
  it.each(cases)('$name', ({ over, creates, deletes }) => {
    const p = planRollout(input(over));
    expect(p.create.length).toBe(creates);
    expect(p.create.every((c) => c.hash === 'new')).toBe(true);
    expect(p.delete.map((d) => d.name)).toEqual(deletes);
  });

  it('never plans more than maxUnavailable pods not available (simulated rollout, all budgets)', () => {
    for (const [surge, unavail] of [
      [1, 0],
      [0, 1],
      [2, 1],
      ['25%', '25%'],
      [0, 2],
      [3, 0],
    ] as const) {
      const R = 5;
      let world: PlannerPod[] = pods('old', 'rrrrr');
      let seq = 0;
      const { unavailable } = budgets({ type: 'RollingUpdate', maxSurge: surge, maxUnavailable: unavail }, R);
      for (let step = 0; step < 50; step++) {
        const p = planRollout(input({ replicas: R, strategy: { type: 'RollingUpdate', maxSurge: surge, maxUnavailable: unavail }, pods: world }));
        const gone = new Set(p.delete.map((d) => d.name));
        world = world.filter((x) => !gone.has(x.name));
        // Deletes happen at once; new pods start unready.
        const availableAfterDeletes = world.filter((x) => x.ready).length;
        expect(R - availableAfterDeletes).toBeLessThanOrEqual(unavailable);
        expect(world.length + p.create.length).toBeLessThanOrEqual(R + budgets({ type: 'RollingUpdate', maxSurge: surge, maxUnavailable: unavail }, R).surge);
        for (const c of p.create) world.push({ name: `new-${seq++}`, hash: c.hash, node: 'n0', ready: false, createdAt: NOW + seq });
        if (p.complete) break;
        // Then every pending pod becomes ready.
        world = world.map((x) => ({ ...x, ready: true }));
      }
      expect(world.every((x) => x.hash === 'new')).toBe(true);
      expect(world).toHaveLength(R);
    }
  });
});

describe('planRollout — Recreate, canary, pause', () => {
  it('Recreate deletes every old pod before creating any new one', () => {
    const first = planRollout(input({ strategy: { type: 'Recreate', maxSurge: 1, maxUnavailable: 0 }, pods: [...pods('old', 'rrrr')] }));
    expect(first.create).toEqual([]);
    expect(first.delete).toHaveLength(4);
    const second = planRollout(input({ strategy: { type: 'Recreate', maxSurge: 1, maxUnavailable: 0 }, pods: [] }));
    expect(second.create).toHaveLength(4);
  });

  it('canary: N new pods, then holds (CanaryPaused) with replicas − N old pods serving', () => {
    const s = { type: 'RollingUpdate' as const, maxSurge: 1, maxUnavailable: 0, canary: 1 };
    expect(planRollout(input({ strategy: s, pods: pods('old', 'rrrr') })).create).toHaveLength(1);
    const afterReady = planRollout(input({ strategy: s, pods: [...pods('old', 'rrrr'), ...pods('new', 'r')] }));
    expect(afterReady.delete.map((d) => d.name)).toEqual(['old-3']);
    const held = planRollout(input({ strategy: s, pods: [...pods('old', 'rrr'), ...pods('new', 'r')] }));
    expect(held.create).toEqual([]);
    expect(held.delete).toEqual([]);
    expect(held.phase).toBe('CanaryPaused');
    expect(held.deadlineExceeded).toBe(false);
    const promoted = planRollout(input({ strategy: s, promoted: true, pods: [...pods('old', 'rrr'), ...pods('new', 'r')] }));
    expect(promoted.create).toHaveLength(1);
    expect(promoted.phase).toBe('Progressing');
  });

  it('paused: no rollout steps, but lost pods are refilled from the stable revision', () => {
    const p = planRollout(input({ paused: true, pods: [...pods('old', 'rr'), ...pods('new', 'r')] }));
    expect(p.delete).toEqual([]);
    expect(p.create).toEqual([{ hash: 'old' }]);
    expect(p.phase).toBe('Paused');
  });
});

describe('planRollout — progress and deadline', () => {
  it('marks progress when the counts change and fails after progressDeadlineSeconds without', () => {
    const world = [...pods('old', 'rrrr'), ...pods('new', 'u')];
    const first = planRollout(input({ progressDeadlineSeconds: 15, pods: world }));
    expect(first.progressed).toBe(true);
    expect(first.requeueAfterMs).toBeGreaterThan(14_000);
    const later = planRollout(input({ progressDeadlineSeconds: 15, pods: world, progressKey: first.progressKey, lastProgressAt: NOW, now: NOW + 10_000 }));
    expect(later.deadlineExceeded).toBe(false);
    const late = planRollout(input({ progressDeadlineSeconds: 15, pods: world, progressKey: first.progressKey, lastProgressAt: NOW, now: NOW + 16_000 }));
    expect(late.deadlineExceeded).toBe(true);
    expect(late.phase).toBe('Failed');
    expect(late.message).toContain('ErrImagePull: manifest unknown');
  });

  it('a completed revision never times out: later pod churn is self-healing', () => {
    const p = planRollout(input({ stableHash: 'new', progressDeadlineSeconds: 1, pods: pods('new', 'rruu'), progressKey: 'x', lastProgressAt: NOW - 100_000 }));
    expect(p.deadlineExceeded).toBe(false);
    expect(p.phase).toBe('Complete');
  });

  it('minReadySeconds: a just-ready pod is not available yet and the planner asks to come back', () => {
    const fresh: PlannerPod = { name: 'new-0', hash: 'new', node: 'n0', ready: true, readySince: NOW - 2000, createdAt: NOW - 5000 };
    const p = planRollout(input({ minReadySeconds: 10, pods: [...pods('old', 'rrrr'), fresh] }));
    expect(p.delete).toEqual([]);
    expect(p.counts.updatedAvailable).toBe(0);
    expect(p.requeueAfterMs).toBeLessThanOrEqual(8100);
    const ripe = planRollout(input({ minReadySeconds: 10, now: NOW + 9000, pods: [...pods('old', 'rrrr'), fresh] }));
    expect(ripe.delete).toHaveLength(1);
  });

  it('complete only when every replica is updated and available', () => {
    expect(planRollout(input({ pods: pods('new', 'rrrr') })).complete).toBe(true);
    expect(planRollout(input({ pods: pods('new', 'rrru') })).complete).toBe(false);
    expect(planRollout(input({ replicas: 0, pods: [] })).complete).toBe(true);
  });
});

describe('planRollout — global mode', () => {
  const nodes = [
    { name: 'a', online: true },
    { name: 'b', online: true },
    { name: 'c', online: false },
  ];
  const g = (over: Partial<RolloutInput>): RolloutInput =>
    input({ mode: 'global', nodes, strategy: { type: 'RollingUpdate', maxSurge: 0, maxUnavailable: 1 }, ...over });
  const pod = (node: string, hash: string, ready = true): PlannerPod => ({ name: `${hash}-${node}`, hash, node, ready, createdAt: NOW });

  it('updates one online node at a time and skips the offline one', () => {
    const p = planRollout(g({ pods: [pod('a', 'old'), pod('b', 'old'), pod('c', 'old')] }));
    expect(p.delete.map((d) => d.name)).toEqual(['old-a']);
    expect(p.create).toEqual([{ hash: 'new', node: 'a' }]);
    expect(p.counts.desired).toBe(2);
  });

  it('waits while the updated node is not available, then moves on; offline nodes do not block completion', () => {
    const waiting = planRollout(g({ pods: [pod('a', 'new', false), pod('b', 'old'), pod('c', 'old')] }));
    expect(waiting.delete).toEqual([]);
    expect(waiting.create).toEqual([]);
    const next = planRollout(g({ pods: [pod('a', 'new'), pod('b', 'old'), pod('c', 'old')] }));
    expect(next.delete.map((d) => d.name)).toEqual(['old-b']);
    const done = planRollout(g({ pods: [pod('a', 'new'), pod('b', 'new'), pod('c', 'old')] }));
    expect(done.complete).toBe(true);
    expect(done.delete).toEqual([]);
  });

  it('an offline node with no pod gets one bound at once; its old pod would be left alone', () => {
    const p = planRollout(g({ pods: [pod('a', 'new'), pod('b', 'new')] }));
    expect(p.create).toEqual([{ hash: 'new', node: 'c' }]);
    expect(p.delete).toEqual([]);
    expect(p.complete).toBe(true); // offline nodes never hold the rollout
  });

  it('surge: the new pod starts beside the old one, which goes once the new one is available', () => {
    const s = { type: 'RollingUpdate' as const, maxSurge: 1, maxUnavailable: 0 };
    const p = planRollout(g({ strategy: s, pods: [pod('a', 'old'), pod('b', 'old'), pod('c', 'old')] }));
    expect(p.create).toEqual([{ hash: 'new', node: 'a' }]);
    expect(p.delete).toEqual([]);
    const q = planRollout(g({ strategy: s, pods: [pod('a', 'old'), pod('a', 'new'), pod('b', 'old'), pod('c', 'old')] }));
    expect(q.delete.map((d) => d.name)).toEqual(['old-a']);
  });

  it('a node that returns gets updated under the budget; a node with nothing just gets a pod (and counts as unavailable)', () => {
    const back = [
      { name: 'a', online: true },
      { name: 'b', online: true },
      { name: 'c', online: true },
      { name: 'd', online: true },
    ];
    const p = planRollout(g({ nodes: back, pods: [pod('a', 'new'), pod('b', 'new'), pod('c', 'old')] }));
    expect(p.create).toEqual([{ hash: 'new', node: 'd' }]);
    expect(p.delete).toEqual([]); // d is down: the one unavailable slot is taken
    const q = planRollout(g({ nodes: back, pods: [pod('a', 'new'), pod('b', 'new'), pod('c', 'old'), pod('d', 'new')] }));
    expect(q.delete.map((d) => d.name)).toEqual(['old-c']);
    expect(q.create).toEqual([{ hash: 'new', node: 'c' }]);
  });
});
