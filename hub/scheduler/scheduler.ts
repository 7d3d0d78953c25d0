import { allocateDevices } from './devices.js';
import { defaultFilters } from './filters.js';
import { accountPod, podContext } from './pod-context.js';
import { hashString, mulberry32 } from './random.js';
import { defaultScores } from './scores.js';
import type { Decision, Explanation, FilterPlugin, PodContext, SchedNode, SchedPod, ScorePlugin } from './types.js';
import { reasonCategory } from './types.js';

/**
 * The scheduler: feasibility then ranking (Nomad), kube-scheduler's Filter → Score(0..100) →
 * Normalize → weighted sum → pick. Pure: no I/O, no clock; ties are broken by a PRNG seeded
 * from `opts.seed` and the pod name, so one input always gives one output.
 *
 * Large clusters: like kube-scheduler's percentageOfNodesToScore, we stop filtering once we
 * have found `max(minFeasibleNodesToScore, min(percentageOfNodesToScore% of nodes,
 * maxFeasibleNodesToScore))` feasible nodes (default max(100, min(5%, 200)): the cap only
 * matters above 4,000 nodes, where scoring 500 instead of 200 cost 2.4× per pod on the hub's one
 * thread and placed no better — README "sampling"), scanning from a start index that rotates by the number of
 * nodes examined. Each pod then looks at a different slice, so over a batch every node gets
 * its turn and replicas still spread, while one pod costs O(sample), not O(cluster). A
 * 100-node cluster (or `percentageOfNodesToScore: 100`) is always scored in full. Proving a
 * pod unschedulable still visits every node, and explaining it runs every filter on every node.
 */

export interface ScheduleOptions {
  /** Mixed with a hash of the pod name; default 0. */
  seed?: number;
  filters?: readonly FilterPlugin[];
  scores?: readonly ScorePlugin[];
  /** 1..100; default 5. 100 scores every feasible node. */
  percentageOfNodesToScore?: number;
  /** Lower bound on feasible nodes to find before scoring stops looking; default 100. */
  minFeasibleNodesToScore?: number;
  /** Upper bound on what percentageOfNodesToScore asks for (not below minFeasibleNodesToScore); default 200. Ignored at 100 %. */
  maxFeasibleNodesToScore?: number;
  /** How many of the best candidates appear in `explanation.scores`; default 3. */
  explainTop?: number;
}

const TIE_EPSILON = 1e-9;

/** Reusable buffers and the rotating start index, kept for one schedule/scheduleBatch call. */
interface Run {
  filters: readonly FilterPlugin[];
  scores: readonly ScorePlugin[];
  opts: ScheduleOptions;
  startIndex: number;
  /** Index in `nodes` of the node the last bound pod went to. */
  boundIndex: number;
  /** Per filter: nodes it rejected for the current pod. */
  rejected: Int32Array;
  candidates: Int32Array;
  raw: Float64Array;
  totals: Float64Array;
}

function newRun(opts: ScheduleOptions): Run {
  const filters = opts.filters ?? defaultFilters;
  return {
    filters,
    rejected: new Int32Array(filters.length),
    scores: opts.scores ?? defaultScores,
    opts,
    startIndex: 0,
    boundIndex: -1,
    candidates: new Int32Array(0),
    raw: new Float64Array(0),
    totals: new Float64Array(0),
  };
}

export function feasibleNodesToFind(total: number, opts: ScheduleOptions = {}): number {
  const min = opts.minFeasibleNodesToScore ?? 100;
  const pct = opts.percentageOfNodesToScore ?? 5;
  if (total <= min || pct >= 100) return total;
  const max = opts.maxFeasibleNodesToScore ?? 200;
  return Math.min(total, Math.max(min, Math.min(max, Math.floor((total * pct) / 100))));
}

export function schedule(pod: SchedPod, nodes: readonly SchedNode[], opts: ScheduleOptions = {}): Decision {
  return scheduleOne(pod, podContext(pod), nodes, newRun(opts));
}

/**
 * Schedules `pods` in order. After each bind it adds the pod to that node in place
 * (requested, usedHostPorts, podsByOwner), so later pods see earlier ones: replicas spread and
 * capacity holds within the batch. The caller owns `nodes` and sees the updated bookkeeping.
 * Unschedulable decisions may share one read-only Explanation between identical pods.
 */
export function scheduleBatch(pods: readonly SchedPod[], nodes: SchedNode[], opts: ScheduleOptions = {}): Decision[] {
  const run = newRun(opts);
  const out: Decision[] = [];
  // Replicas of one Deployment share a spec object. If one is unschedulable and nothing has been
  // bound since, the next identical one is too, with the same explanation: skip the full
  // explain pass (which is O(nodes × filters)) for it. Assumes filters see the pod only through
  // spec, owner, tolerations and imagePlatforms, as every filter here does.
  let lastFail: { pod: SchedPod; decision: Extract<Decision, { kind: 'unschedulable' }> } | undefined;
  for (const pod of pods) {
    if (lastFail !== undefined && sameShape(lastFail.pod, pod)) {
      out.push({ kind: 'unschedulable', summary: lastFail.decision.summary, explanation: lastFail.decision.explanation });
      continue;
    }
    const ctx = podContext(pod);
    const d = scheduleOne(pod, ctx, nodes, run);
    out.push(d);
    if (d.kind === 'bound') {
      accountPod(nodes[run.boundIndex]!, ctx, d.devices);
      lastFail = undefined;
    } else {
      lastFail = { pod, decision: d };
    }
  }
  return out;
}

function sameShape(a: SchedPod, b: SchedPod): boolean {
  return (
    a.spec === b.spec &&
    a.owner === b.owner &&
    a.strategy === b.strategy &&
    a.tolerations === b.tolerations &&
    a.spreadBy === b.spreadBy &&
    a.imagePlatforms === b.imagePlatforms
  );
}

function scheduleOne(pod: SchedPod, ctx: PodContext, nodes: readonly SchedNode[], run: Run): Decision {
  const n = nodes.length;
  if (n === 0) {
    return {
      kind: 'unschedulable',
      summary: '0/0 nodes fit: no nodes registered',
      explanation: { feasible: 0, total: 0, examined: 0, filtered: {}, counts: {} },
    };
  }
  const want = feasibleNodesToFind(n, run.opts);
  if (run.candidates.length < want) run.candidates = new Int32Array(want);
  const candidates = run.candidates;
  const filters = run.filters;

  const rejected = run.rejected;
  rejected.fill(0);
  let found = 0;
  let examined = 0;
  let idx = run.startIndex % n;
  const nf = filters.length;
  // Hot loop: yes/no only, no strings and no allocation per node.
  while (examined < n && found < want) {
    const node = nodes[idx]!;
    let f = 0;
    for (; f < nf; f++) {
      const plugin = filters[f]!;
      const ok = plugin.fits !== undefined ? plugin.fits(pod, node, ctx) : plugin.filter(pod, node, ctx) === undefined;
      if (!ok) break;
    }
    if (f === nf) candidates[found++] = idx;
    else rejected[f]!++;
    examined++;
    if (++idx === n) idx = 0;
  }
  run.startIndex = idx;

  if (found === 0) return explainUnschedulable(pod, ctx, nodes, filters);

  const seed = ((run.opts.seed ?? 0) ^ hashString(pod.name)) >>> 0;
  const { best, top, perPlugin } = rank(pod, ctx, nodes, run, found, seed);
  run.boundIndex = candidates[best]!;
  const scores: Record<string, Record<string, number>> = {};
  for (const c of top) {
    const entry: Record<string, number> = {};
    for (const [name, values] of perPlugin) entry[name] = round2(values[c]!);
    entry.total = round2(run.totals[c]!);
    scores[nodes[candidates[c]!]!.name] = entry;
  }
  const chosen = nodes[candidates[best]!]!;
  const decision: Decision = {
    kind: 'bound',
    nodeName: chosen.name,
    explanation: { feasible: found, total: n, examined, filtered: {}, counts: rejectionCounts(filters, rejected), scores },
  };
  // The devices the filter found free there, recorded with the binding (a custom filter list
  // without `devices` still gets grants, or fails the pod here rather than on the device).
  if (ctx.devices.length > 0) {
    const a = allocateDevices(ctx.devices, chosen.devices, chosen.deviceUse);
    if (!a.ok) return explainUnschedulable(pod, ctx, nodes, filters);
    decision.devices = a.grants;
  }
  return decision;
}

/**
 * Scores the `found` candidates and picks the best; ties (within 1e-9) are broken uniformly by
 * reservoir sampling with the seeded PRNG — the same as shuffling then taking the first, with
 * no allocation. Returns candidate positions, plus normalised per-plugin scores for `top`.
 */
function rank(pod: SchedPod, ctx: PodContext, nodes: readonly SchedNode[], run: Run, found: number, seed: number) {
  const active = run.scores.filter((s) => s.weight !== 0 && (s.enabled === undefined || s.enabled(pod, ctx)));
  const np = active.length;
  if (run.raw.length < np * found) run.raw = new Float64Array(np * found);
  if (run.totals.length < found) run.totals = new Float64Array(found);
  const { raw, totals, candidates } = run;
  totals.fill(0, 0, found);

  for (let p = 0; p < np; p++) {
    const plugin = active[p]!;
    const base = p * found;
    let min = Infinity;
    let max = -Infinity;
    for (let c = 0; c < found; c++) {
      let v = plugin.score(pod, nodes[candidates[c]!]!, ctx);
      // Clamp so one misbehaving plugin cannot outweigh the rest.
      v = v > 100 ? 100 : v >= 0 ? v : 0;
      raw[base + c] = v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const normalize = plugin.normalize !== false;
    const span = max - min;
    for (let c = 0; c < found; c++) {
      const v = normalize ? (span === 0 ? 100 : ((raw[base + c]! - min) * 100) / span) : raw[base + c]!;
      raw[base + c] = v;
      totals[c] = totals[c]! + plugin.weight * v;
    }
  }

  let best = 0;
  let ties = 1;
  let rng: (() => number) | undefined;
  for (let c = 1; c < found; c++) {
    const d = totals[c]! - totals[best]!;
    if (d > TIE_EPSILON) {
      best = c;
      ties = 1;
    } else if (d >= -TIE_EPSILON) {
      ties++;
      rng ??= mulberry32(seed);
      if (rng() * ties < 1) best = c;
    }
  }

  const topN = Math.max(1, run.opts.explainTop ?? 3);
  const top = [best];
  while (top.length < Math.min(topN, found)) {
    let next = -1;
    for (let c = 0; c < found; c++) {
      if (top.includes(c)) continue;
      if (next < 0 || totals[c]! > totals[next]!) next = c;
    }
    top.push(next);
  }
  const perPlugin = active.map((s, p) => [s.name, raw.subarray(p * found, (p + 1) * found)] as const);
  return { best, top, perPlugin };
}

function rejectionCounts(filters: readonly FilterPlugin[], rejected: Int32Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (let f = 0; f < filters.length; f++) if (rejected[f]! > 0) out[filters[f]!.name] = rejected[f]!;
  return out;
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

function explainUnschedulable(pod: SchedPod, ctx: PodContext, nodes: readonly SchedNode[], filters: readonly FilterPlugin[]): Decision {
  const filtered: Record<string, string[]> = {};
  const counts = new Map<string, number>();
  for (const node of nodes) {
    const reasons: string[] = [];
    const cats: string[] = [];
    for (const f of filters) {
      const r = f.filter(pod, node, ctx);
      if (r === undefined) continue;
      reasons.push(r);
      const cat = reasonCategory(r);
      if (!cats.includes(cat)) cats.push(cat);
    }
    filtered[node.name] = reasons;
    for (const cat of cats) counts.set(cat, (counts.get(cat) ?? 0) + 1);
  }
  const sorted = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const explanation: Explanation = {
    feasible: 0,
    total: nodes.length,
    examined: nodes.length,
    filtered,
    counts: Object.fromEntries(sorted),
  };
  return { kind: 'unschedulable', summary: unschedulableSummary(nodes.length, sorted), explanation };
}

/** Kubernetes-style: `0/12 nodes fit: 7 arch arm (needs arm64), 4 insufficient memory, 1 cordoned`. */
export function unschedulableSummary(total: number, sortedCounts: ReadonlyArray<readonly [string, number]>): string {
  if (total === 0) return '0/0 nodes fit: no nodes registered';
  return `0/${total} nodes fit: ${sortedCounts.map(([cat, k]) => `${k} ${cat}`).join(', ')}`;
}
