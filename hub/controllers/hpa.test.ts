import { describe, expect, it } from 'vitest';
import {
  combineProposals,
  CPU_INITIALIZATION_PERIOD_MS,
  decide,
  groupPods,
  limitRate,
  newMemory,
  resourceReplicas,
  stabilize,
  type MetricProposal,
  type PodFacts,
} from './hpa.js';

/**
 * The HPA arithmetic against Kubernetes' own cases (pkg/controller/podautoscaler
 * replica_calculator_test.go and the algorithm-details page of the HPA docs), plus Orchard's
 * lost-node rule. Values are millicores; requests 1000m unless a case says otherwise.
 */
const NOW = 1_000_000_000;
const LONG_AGO = NOW - 10 * 60_000; // past the 5-minute CPU initialisation period

interface P {
  use?: number | undefined;
  req?: number;
  ready?: boolean;
  phase?: PodFacts['phase'];
  lost?: boolean;
  deleted?: boolean;
  start?: number;
  readySince?: number;
  windowStart?: number;
}

function pods(list: P[]): PodFacts[] {
  return list.map((p, i) => ({
    name: `p${i}`,
    deleted: p.deleted ?? false,
    phase: p.phase ?? 'Running',
    ready: { status: p.ready ?? true, lastTransitionMs: p.readySince ?? LONG_AGO + 5_000 },
    startTimeMs: p.start ?? LONG_AGO,
    nodeLost: p.lost ?? false,
    request: p.req ?? 1000,
    usage: p.use === undefined ? undefined : { value: p.use, windowStartMs: p.windowStart ?? NOW - 15_000 },
  }));
}

const ok = (r: MetricProposal): { replicas: number; utilization: number } => {
  if (!r.ok) throw new Error(r.error);
  return { replicas: r.replicas, utilization: r.utilization };
};

describe('resourceReplicas: Kubernetes GetResourceReplicas cases', () => {
  const cases: Array<{ name: string; current: number; target: number; pods: P[]; want: number; util: number }> = [
    { name: 'scale up (TestReplicaCalcScaleUp)', current: 3, target: 30, pods: [{ use: 300 }, { use: 500 }, { use: 700 }], want: 5, util: 50 },
    {
      name: 'scale up with an unready pod counted as 0 % (TestReplicaCalcScaleUpUnreadyLessScale)',
      current: 3,
      target: 30,
      pods: [{ use: 300, ready: false }, { use: 500 }, { use: 700 }],
      want: 4,
      util: 60,
    },
    {
      name: 'scale down (TestReplicaCalcScaleDown)',
      current: 5,
      target: 50,
      pods: [{ use: 100 }, { use: 300 }, { use: 500 }, { use: 250 }, { use: 250 }],
      want: 3,
      util: 28,
    },
    {
      name: 'scale down ignores unready pods (TestReplicaCalcScaleDownIgnoresUnreadyPods)',
      current: 5,
      target: 50,
      // Upstream's readiness: the last two unready (util 30 % over the three ready ones).
      pods: [{ use: 100 }, { use: 300 }, { use: 500 }, { use: 250, ready: false }, { use: 250, ready: false }],
      want: 2,
      util: 30,
    },
    {
      name: 'missing metrics on a scale-down count as 100 % (TestReplicaCalcMissingMetrics)',
      current: 4,
      target: 100,
      pods: [{ use: 400 }, { use: 95 }, {}, {}],
      want: 3,
      util: 24,
    },
    {
      name: 'within tolerance: 102 % of a 100 % target holds (TestReplicaCalcTolerance)',
      current: 3,
      target: 100,
      pods: [{ use: 1010 }, { use: 1030 }, { use: 1020 }],
      want: 3,
      util: 102,
    },
    { name: 'just outside tolerance scales', current: 3, target: 100, pods: [{ use: 1120 }, { use: 1120 }, { use: 1120 }], want: 4, util: 112 },
    {
      name: 'missing metrics on a scale-up count as 0 %: 100 % over 2 of 4 pods → 50 % → held at target',
      current: 4,
      target: 50,
      pods: [{ use: 1000 }, { use: 1000 }, {}, {}],
      want: 4,
      util: 100,
    },
    { name: 'missing metrics on a scale-up still allow a large one', current: 4, target: 40, pods: [{ use: 1000 }, { use: 1000 }, {}, {}], want: 5, util: 100 },
    {
      name: 'a missing pod turning a scale-down into a scale-up holds (direction flip)',
      current: 4,
      target: 50,
      pods: [{ use: 40, req: 100 }, { use: 40, req: 100 }, { use: 40, req: 100 }, { req: 100 }],
      want: 4,
      util: 40,
    },
    {
      name: 'unready pods with uneven requests damp a scale-up (0 % of their request)',
      current: 2,
      target: 50,
      pods: [
        { use: 260, req: 100 },
        { use: 0, req: 300, ready: false },
      ],
      want: 3,
      util: 260,
    },
    {
      name: 'utilisation is an integer percent (truncated), as Kubernetes computes it',
      current: 3,
      target: 30,
      pods: [
        { use: 100, req: 300 },
        { use: 0, req: 300 },
        { use: 0, req: 300 },
      ],
      want: 2,
      util: 11,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(ok(resourceReplicas(c.current, c.target, pods(c.pods), 'cpu', NOW))).toEqual({ replicas: c.want, utilization: c.util });
    });
  }

  it('pods of a lost or partitioned node count as missing, not idle: no scale-down on their old numbers', () => {
    // Two pods on a healthy node at 10 %, two on a lost node whose last samples said 0 %.
    const facts = pods([{ use: 100 }, { use: 100 }, { use: 0, lost: true }, { use: 0, lost: true }]);
    const g = groupPods(facts, 'cpu', NOW);
    expect([g.readyPodCount, g.missing.size]).toEqual([2, 2]);
    // Treated as idle they would give ceil(0.05/0.5 × 4) = 1; as missing (100 % on a scale-down): (100+100+1000+1000)/4000 = 55 % → 1.1 → hold.
    expect(ok(resourceReplicas(4, 50, facts, 'cpu', NOW)).replicas).toBe(4);
  });

  it('no metrics for any counted pod is an error (no decision), as is an empty deployment', () => {
    const r = resourceReplicas(2, 50, pods([{}, { use: 500, ready: false }]), 'cpu', NOW);
    expect(r.ok).toBe(false);
    expect(resourceReplicas(2, 50, [], 'cpu', NOW).ok).toBe(false);
  });
});

describe('groupPods', () => {
  it('deleted and failed pods are ignored, pending ones unready, pods without a sample missing', () => {
    const g = groupPods(pods([{ use: 1, deleted: true }, { use: 1, phase: 'Failed' }, { phase: 'Pending' }, {}, { use: 1 }]), 'cpu', NOW);
    expect([...g.ignored]).toEqual(['p0', 'p1']);
    expect([...g.unready]).toEqual(['p2']);
    expect([...g.missing]).toEqual(['p3']);
    expect(g.readyPodCount).toBe(1);
  });

  it('CPU, inside the initialisation period: a sample whose window began before Ready is not used', () => {
    const start = NOW - 60_000;
    const before = groupPods(pods([{ use: 900, start, readySince: start + 20_000, windowStart: start + 10_000 }]), 'cpu', NOW);
    expect(before.unready.size).toBe(1);
    const after = groupPods(pods([{ use: 900, start, readySince: start + 20_000, windowStart: start + 30_000 }]), 'cpu', NOW);
    expect(after.readyPodCount).toBe(1);
    // Unready during initialisation: not used either.
    expect(groupPods(pods([{ use: 900, start, ready: false, windowStart: start + 30_000 }]), 'cpu', NOW).unready.size).toBe(1);
  });

  it('CPU, after the initialisation period: an unready pod is used only if it was ever ready', () => {
    const start = NOW - CPU_INITIALIZATION_PERIOD_MS - 60_000;
    // NotReady since 10 s after start: never ready (within the 30 s initial-readiness delay) → unready.
    expect(groupPods(pods([{ use: 900, start, ready: false, readySince: start + 10_000 }]), 'cpu', NOW).unready.size).toBe(1);
    // Turned NotReady long after it had been ready → its sample counts.
    expect(groupPods(pods([{ use: 900, start, ready: false, readySince: start + 120_000 }]), 'cpu', NOW).readyPodCount).toBe(1);
  });

  it('memory ignores readiness (only CPU has the initialisation rules)', () => {
    expect(groupPods(pods([{ use: 900, ready: false }]), 'memory', NOW).readyPodCount).toBe(1);
  });
});

describe('combineProposals (computeReplicasForMetrics)', () => {
  const good = (replicas: number): MetricProposal => ({
    ok: true,
    replicas,
    utilization: 0,
    grouped: { readyPodCount: 0, unready: new Set(), missing: new Set(), ignored: new Set() },
  });
  const bad: MetricProposal = { ok: false, error: 'no metrics', grouped: undefined };
  it('takes the largest proposal', () => expect(combineProposals(3, [good(2), good(5)])).toEqual({ ok: true, replicas: 5 }));
  it('a failing metric blocks a scale-down but not a scale-up', () => {
    expect(combineProposals(3, [bad, good(2)]).ok).toBe(false);
    expect(combineProposals(3, [bad, good(6)])).toEqual({ ok: true, replicas: 6 });
    expect(combineProposals(3, [bad]).ok).toBe(false);
  });
});

describe('stabilisation window (scale-down: the highest recommendation within it)', () => {
  it('holds the highest recommendation of the last 300 s, then follows it down', () => {
    const mem = newMemory();
    const W = 300_000;
    expect(stabilize(mem, 5, 5, 0, W).replicas).toBe(5);
    expect(stabilize(mem, 5, 3, 60_000, W)).toEqual({ replicas: 5, reason: 'ScaleDownStabilized' });
    expect(stabilize(mem, 5, 2, 120_000, W).replicas).toBe(5);
    // t = 301 s: the 5 fell out of the window; the highest left is 3.
    expect(stabilize(mem, 5, 2, 301_000, W).replicas).toBe(3);
    expect(stabilize(mem, 3, 2, 361_000, W).replicas).toBe(2);
    // Old samples are dropped: the memory stays bounded by the window.
    expect(mem.recommendations.every((r) => r.atMs >= 361_000 - W)).toBe(true);
  });
  it('does not delay a scale-up (scale-up window 0)', () => {
    const mem = newMemory();
    stabilize(mem, 2, 2, 0, 300_000);
    expect(stabilize(mem, 2, 6, 1_000, 300_000).replicas).toBe(6);
  });
});

describe('rate limits: scale-up max(+100 %, +4 pods) per 15 s; min/max', () => {
  const cases: Array<{ name: string; current: number; desired: number; min?: number; max?: number; want: number; reason: string }> = [
    { name: '1 → 10 limited to 1 + 4', current: 1, desired: 10, want: 5, reason: 'ScaleUpLimit' },
    { name: '10 → 50 limited to 2 × 10', current: 10, desired: 50, max: 100, want: 20, reason: 'ScaleUpLimit' },
    { name: '2 → 10 with max 6: capped at max', current: 2, desired: 10, max: 6, want: 6, reason: 'TooManyReplicas' },
    { name: '8 → 1 with min 3: raised to min', current: 8, desired: 1, min: 3, want: 3, reason: 'TooFewReplicas' },
    { name: 'within range', current: 4, desired: 6, want: 6, reason: 'DesiredWithinRange' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(limitRate(newMemory(), c.current, c.desired, c.min ?? 1, c.max ?? 50, 0)).toEqual({ replicas: c.want, reason: c.reason });
    });
  }

  it('counts what was added in the last 15 s: 1 → 5, then no more until the period passes', () => {
    const mem = newMemory();
    const input = { min: 1, max: 100, downWindowMs: 300_000 };
    expect(decide(mem, { ...input, current: 1, proposal: { ok: true, replicas: 20 }, nowMs: 0 }).replicas).toBe(5);
    const held = decide(mem, { ...input, current: 5, proposal: { ok: true, replicas: 20 }, nowMs: 5_000 });
    expect([held.replicas, held.reason]).toEqual([5, 'ScaleUpLimit']);
    expect(decide(mem, { ...input, current: 5, proposal: { ok: true, replicas: 20 }, nowMs: 16_000 }).replicas).toBe(10);
  });
});

describe('decide (reconcileAutoscaler)', () => {
  const base = { min: 2, max: 6, downWindowMs: 300_000, nowMs: 0 };
  it('replicas 0 set by hand turn autoscaling off', () => {
    expect(decide(newMemory(), { ...base, current: 0, proposal: { ok: true, replicas: 4 } })).toMatchObject({ replicas: 0, reason: 'ScaledToZero' });
  });
  it('outside [min, max] goes to the bound without metrics', () => {
    expect(decide(newMemory(), { ...base, current: 9, proposal: { ok: false, error: 'x' } })).toMatchObject({ replicas: 6, reason: 'AboveMax' });
    expect(decide(newMemory(), { ...base, current: 1, proposal: { ok: false, error: 'x' } })).toMatchObject({ replicas: 2, reason: 'BelowMin' });
  });
  it('no metrics: no change, the error is the reason', () => {
    expect(decide(newMemory(), { ...base, current: 3, proposal: { ok: false, error: 'no metrics' } })).toMatchObject({
      replicas: 3,
      reason: 'MetricsMissing',
      message: 'no metrics',
    });
  });
  it('a manual scale-up is followed down only after the window (recommendations were recorded)', () => {
    const mem = newMemory();
    expect(decide(mem, { ...base, current: 3, proposal: { ok: true, replicas: 3 }, nowMs: 0 }).reason).toBe('WithinTolerance');
    // Someone scaled to 6 by hand; the metrics still say 3: the window's highest is 3, so it goes back to 3 at once (as HPA does).
    expect(decide(mem, { ...base, current: 6, proposal: { ok: true, replicas: 3 }, nowMs: 15_000 }).replicas).toBe(3);
  });
});
