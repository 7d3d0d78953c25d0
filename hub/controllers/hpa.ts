/**
 * Kubernetes' Horizontal Pod Autoscaler arithmetic, ported case by case from
 * pkg/controller/podautoscaler (replica_calculator.go: groupPods, GetResourceReplicas,
 * GetResourceUtilizationRatio; horizontal.go: computeReplicasForMetrics, reconcileAutoscaler,
 * stabilizeRecommendationWithBehaviors, convertDesiredReplicasWithBehaviorRate and the default
 * `behavior`). Pure: no clock, no store; times are milliseconds passed in. The controller
 * (autoscaler.ts) gathers the facts and keeps the per-deployment memory (recommendations, scale
 * events) this file reads and returns.
 *
 * The one Orchard addition: a pod whose node is lost or partitioned (NotReady, or its usage
 * reports stopped) counts as *missing* whatever its phase — its last sample is not evidence that
 * it is idle — so it gets HPA's conservative missing-pod treatment.
 */

/** HPA's default tolerance (`--horizontal-pod-autoscaler-tolerance`). */
export const TOLERANCE = 0.1;
/** `--horizontal-pod-autoscaler-cpu-initialization-period` default. */
export const CPU_INITIALIZATION_PERIOD_MS = 5 * 60_000;
/** `--horizontal-pod-autoscaler-initial-readiness-delay` default. */
export const DELAY_OF_INITIAL_READINESS_STATUS_MS = 30_000;
/** `--horizontal-pod-autoscaler-downscale-stabilization` default. */
export const DEFAULT_DOWNSCALE_WINDOW_MS = 300_000;

export type Resource = 'cpu' | 'memory';

/** One pod as the calculator needs it. */
export interface PodFacts {
  name: string;
  /** Marked for deletion, or Failed: left out altogether (HPA's ignoredPods). */
  deleted: boolean;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';
  /** The Ready condition, if the pod has one. */
  ready: { status: boolean; lastTransitionMs: number } | undefined;
  startTimeMs: number | undefined;
  /** Orchard: its node is NotReady or has stopped reporting usage — the pod counts as missing. */
  nodeLost: boolean;
  /** Pod request (sum over containers) in the metric's unit: millicores, bytes. */
  request: number;
  /** Usage in the same unit (undefined: no sample); `windowStartMs` is where the sample's rate window begins. */
  usage: { value: number; windowStartMs: number } | undefined;
}

export interface Grouped {
  readyPodCount: number;
  unready: Set<string>;
  missing: Set<string>;
  ignored: Set<string>;
}

/** replica_calculator.go groupPods, with Orchard's lost-node rule first. */
export function groupPods(pods: readonly PodFacts[], resource: Resource, nowMs: number): Grouped {
  const g: Grouped = { readyPodCount: 0, unready: new Set(), missing: new Set(), ignored: new Set() };
  for (const p of pods) {
    if (p.deleted || p.phase === 'Failed' || p.phase === 'Succeeded') {
      g.ignored.add(p.name);
      continue;
    }
    if (p.nodeLost) {
      g.missing.add(p.name);
      continue;
    }
    if (p.phase === 'Pending') {
      g.unready.add(p.name);
      continue;
    }
    if (p.usage === undefined) {
      g.missing.add(p.name);
      continue;
    }
    if (resource === 'cpu') {
      let unready: boolean;
      if (p.ready === undefined || p.startTimeMs === undefined) unready = true;
      else if (p.startTimeMs + CPU_INITIALIZATION_PERIOD_MS > nowMs) {
        // Still initialising: ignore the sample if unready, or if its window began before the pod turned Ready.
        unready = !p.ready.status || p.usage.windowStartMs < p.ready.lastTransitionMs;
      } else {
        // Ignore it if the pod is unready and has never been ready.
        unready = !p.ready.status && p.startTimeMs + DELAY_OF_INITIAL_READINESS_STATUS_MS > p.ready.lastTransitionMs;
      }
      if (unready) {
        g.unready.add(p.name);
        continue;
      }
    }
    g.readyPodCount++;
  }
  return g;
}

/** metrics.GetResourceUtilizationRatio: utilisation is an integer percent (truncated), as Kubernetes computes it. */
export function utilizationRatio(
  metrics: ReadonlyMap<string, number>,
  requests: ReadonlyMap<string, number>,
  targetPercent: number,
): { ratio: number; utilization: number } | undefined {
  let metricsTotal = 0;
  let requestsTotal = 0;
  for (const [pod, value] of metrics) {
    const r = requests.get(pod);
    if (r === undefined) continue;
    metricsTotal += value;
    requestsTotal += r;
  }
  if (requestsTotal <= 0) return undefined;
  const utilization = Math.trunc((metricsTotal * 100) / requestsTotal);
  return { ratio: utilization / targetPercent, utilization };
}

export type MetricProposal =
  { ok: true; replicas: number; utilization: number; grouped: Grouped } | { ok: false; error: string; grouped: Grouped | undefined; utilization?: number };

/** replica_calculator.go GetResourceReplicas, case for case. */
export function resourceReplicas(currentReplicas: number, targetPercent: number, pods: readonly PodFacts[], resource: Resource, nowMs: number): MetricProposal {
  if (pods.length === 0) return { ok: false, error: 'no pods while calculating the replica count', grouped: undefined };
  const grouped = groupPods(pods, resource, nowMs);
  const metrics = new Map<string, number>();
  const requests = new Map<string, number>();
  for (const p of pods) {
    requests.set(p.name, p.request);
    if (p.usage !== undefined && !grouped.ignored.has(p.name) && !grouped.unready.has(p.name) && !grouped.missing.has(p.name))
      metrics.set(p.name, p.usage.value);
  }
  if (metrics.size === 0)
    return { ok: false, error: 'no metrics for the targeted pods (pods may be unready, missing, or new: a CPU rate needs two usage reports)', grouped };
  const first = utilizationRatio(metrics, requests, targetPercent);
  if (first === undefined) return { ok: false, error: 'the pods with metrics request nothing', grouped };
  const { ratio: usageRatio, utilization } = first;
  const withinTolerance = (r: number): boolean => Math.abs(1 - r) <= TOLERANCE;

  const scaleUpWithUnready = grouped.unready.size > 0 && usageRatio > 1;
  if (!scaleUpWithUnready && grouped.missing.size === 0) {
    if (withinTolerance(usageRatio)) return { ok: true, replicas: currentReplicas, utilization, grouped };
    return { ok: true, replicas: Math.ceil(usageRatio * grouped.readyPodCount), utilization, grouped };
  }
  if (grouped.missing.size > 0) {
    if (usageRatio < 1) {
      // Scaling down: a missing pod counts as using all of its request (or the target, when that is above 100 %).
      const fallback = Math.max(100, targetPercent);
      for (const pod of grouped.missing) metrics.set(pod, ((requests.get(pod) ?? 0) * fallback) / 100);
    } else if (usageRatio > 1) {
      // Scaling up: a missing pod counts as using nothing.
      for (const pod of grouped.missing) metrics.set(pod, 0);
    }
  }
  // Scaling up: unready pods count as using nothing.
  if (scaleUpWithUnready) for (const pod of grouped.unready) metrics.set(pod, 0);

  const second = utilizationRatio(metrics, requests, targetPercent);
  if (second === undefined) return { ok: false, error: 'the pods with metrics request nothing', grouped, utilization };
  const newUsageRatio = second.ratio;
  if (withinTolerance(newUsageRatio) || (usageRatio < 1 && newUsageRatio > 1) || (usageRatio > 1 && newUsageRatio < 1)) {
    // Too small a change, or the conservative numbers turned the direction around: hold.
    return { ok: true, replicas: currentReplicas, utilization, grouped };
  }
  const newReplicas = Math.ceil(newUsageRatio * metrics.size);
  if ((newUsageRatio < 1 && newReplicas > currentReplicas) || (newUsageRatio > 1 && newReplicas < currentReplicas)) {
    return { ok: true, replicas: currentReplicas, utilization, grouped };
  }
  return { ok: true, replicas: newReplicas, utilization, grouped };
}

/**
 * horizontal.go computeReplicasForMetrics: the largest proposal wins; with any metric failing,
 * no decision when all failed or when the rest would scale down (a broken metric never shrinks).
 */
export function combineProposals(currentReplicas: number, proposals: readonly MetricProposal[]): { ok: true; replicas: number } | { ok: false; error: string } {
  let replicas = 0;
  let invalid = 0;
  let firstError = '';
  for (const p of proposals) {
    if (!p.ok) {
      invalid++;
      if (firstError === '') firstError = p.error;
      continue;
    }
    if (p.replicas > replicas) replicas = p.replicas;
  }
  if (invalid >= proposals.length || (invalid > 0 && replicas < currentReplicas)) return { ok: false, error: firstError };
  return { ok: true, replicas };
}

// ---- behaviour: stabilisation and rate limits (the v2 API's defaults) ----

export interface ScalingPolicy {
  type: 'Pods' | 'Percent';
  value: number;
  periodSeconds: number;
}

/** autoscaling/v2 defaults: up — 0 s window, max(+100 %, +4 pods) per 15 s; down — 100 % per 15 s after the window. */
export const DEFAULT_SCALE_UP_POLICIES: readonly ScalingPolicy[] = [
  { type: 'Percent', value: 100, periodSeconds: 15 },
  { type: 'Pods', value: 4, periodSeconds: 15 },
];
export const DEFAULT_SCALE_DOWN_POLICIES: readonly ScalingPolicy[] = [{ type: 'Percent', value: 100, periodSeconds: 15 }];
export const SCALE_UP_STABILIZATION_MS = 0;

export interface TimedRecommendation {
  replicas: number;
  atMs: number;
}
export interface ScaleEvent {
  change: number;
  atMs: number;
}

/** What the controller remembers per deployment between passes (in memory, as the HPA controller does). */
export interface HpaMemory {
  recommendations: TimedRecommendation[];
  scaleUpEvents: ScaleEvent[];
  scaleDownEvents: ScaleEvent[];
}

export function newMemory(): HpaMemory {
  return { recommendations: [], scaleUpEvents: [], scaleDownEvents: [] };
}

/**
 * stabilizeRecommendationWithBehaviors: the result lies between the lowest recommendation of the
 * scale-up window and the highest of the scale-down window, as close to `current` as that allows.
 * Records `desired` (the raw recommendation). Samples older than both windows are dropped.
 */
export function stabilize(
  mem: HpaMemory,
  current: number,
  desired: number,
  nowMs: number,
  downWindowMs: number,
  upWindowMs = SCALE_UP_STABILIZATION_MS,
): { replicas: number; reason: string } {
  const upCutoff = nowMs - upWindowMs;
  const downCutoff = nowMs - downWindowMs;
  let up = desired;
  let down = desired;
  for (const r of mem.recommendations) {
    if (r.atMs > upCutoff) up = Math.min(up, r.replicas);
    if (r.atMs > downCutoff) down = Math.max(down, r.replicas);
  }
  let replicas = current;
  if (replicas < up) replicas = up;
  if (replicas > down) replicas = down;
  mem.recommendations = mem.recommendations.filter((r) => r.atMs >= upCutoff || r.atMs >= downCutoff);
  mem.recommendations.push({ replicas: desired, atMs: nowMs });
  const reason = replicas === desired ? 'ReadyForNewScale' : replicas < desired ? 'ScaleUpStabilized' : 'ScaleDownStabilized';
  return { replicas, reason };
}

function changeInPeriod(periodSeconds: number, events: readonly ScaleEvent[], nowMs: number): number {
  const cutoff = nowMs - periodSeconds * 1000;
  let n = 0;
  for (const e of events) if (e.atMs > cutoff) n += e.change;
  return n;
}

/** calculateScaleUpLimitWithScalingRules (selectPolicy Max). */
export function scaleUpLimit(current: number, mem: HpaMemory, nowMs: number, policies = DEFAULT_SCALE_UP_POLICIES): number {
  let result = -Infinity;
  for (const p of policies) {
    const start = current - changeInPeriod(p.periodSeconds, mem.scaleUpEvents, nowMs) + changeInPeriod(p.periodSeconds, mem.scaleDownEvents, nowMs);
    const proposed = p.type === 'Pods' ? start + p.value : Math.ceil(start * (1 + p.value / 100));
    result = Math.max(result, proposed);
  }
  return result;
}

/** calculateScaleDownLimitWithBehaviors (selectPolicy Max: the policy allowing the largest change). */
export function scaleDownLimit(current: number, mem: HpaMemory, nowMs: number, policies = DEFAULT_SCALE_DOWN_POLICIES): number {
  let result = Infinity;
  for (const p of policies) {
    const start = current - changeInPeriod(p.periodSeconds, mem.scaleUpEvents, nowMs) + changeInPeriod(p.periodSeconds, mem.scaleDownEvents, nowMs);
    const proposed = p.type === 'Pods' ? start - p.value : Math.trunc(start * (1 - p.value / 100));
    result = Math.min(result, proposed);
  }
  return result;
}

/** convertDesiredReplicasWithBehaviorRate: the rate limits, and min/max. */
export function limitRate(mem: HpaMemory, current: number, desired: number, min: number, max: number, nowMs: number): { replicas: number; reason: string } {
  if (desired > current) {
    let limit = scaleUpLimit(current, mem, nowMs);
    if (limit < current) limit = current; // no further scale-up until the period's events age out
    let maximum = max;
    let reason = 'TooManyReplicas';
    if (maximum > limit) {
      maximum = limit;
      reason = 'ScaleUpLimit';
    }
    if (desired > maximum) return { replicas: maximum, reason };
  } else if (desired < current) {
    let limit = scaleDownLimit(current, mem, nowMs);
    if (limit > current) limit = current;
    let minimum = min;
    let reason = 'TooFewReplicas';
    if (minimum < limit) {
      minimum = limit;
      reason = 'ScaleDownLimit';
    }
    if (desired < minimum) return { replicas: minimum, reason };
  }
  return { replicas: desired, reason: 'DesiredWithinRange' };
}

/** storeScaleEvent: events older than the longest policy period are dropped. */
export function recordScale(mem: HpaMemory, from: number, to: number, nowMs: number): void {
  const keep = (events: ScaleEvent[], policies: readonly ScalingPolicy[]): ScaleEvent[] => {
    const longest = Math.max(...policies.map((p) => p.periodSeconds)) * 1000;
    return events.filter((e) => e.atMs > nowMs - longest);
  };
  if (to > from) {
    mem.scaleUpEvents = keep(mem.scaleUpEvents, DEFAULT_SCALE_UP_POLICIES);
    mem.scaleUpEvents.push({ change: to - from, atMs: nowMs });
  } else if (to < from) {
    mem.scaleDownEvents = keep(mem.scaleDownEvents, DEFAULT_SCALE_DOWN_POLICIES);
    mem.scaleDownEvents.push({ change: from - to, atMs: nowMs });
  }
}

export interface DecideInput {
  current: number;
  min: number;
  max: number;
  /** combineProposals' answer; not consulted when `current` is 0 or outside [min, max]. */
  proposal: { ok: true; replicas: number } | { ok: false; error: string };
  downWindowMs: number;
  nowMs: number;
}

export interface Decision {
  /** What spec.replicas should be. */
  replicas: number;
  recommendation?: number;
  /** The stabilised recommendation, before rate limits. */
  stabilized?: number;
  reason: string;
  message: string;
}

/** horizontal.go reconcileAutoscaler's decision: zero disables, out-of-range clamps, else metrics → stabilise → rate. Updates `mem`. */
export function decide(mem: HpaMemory, i: DecideInput): Decision {
  const { current, min, max } = i;
  let d: Decision;
  if (current === 0 && min !== 0) {
    d = { replicas: 0, reason: 'ScaledToZero', message: 'scaled to 0 by hand: autoscaling is off until replicas is set above 0' };
  } else if (current > max) {
    d = { replicas: max, reason: 'AboveMax', message: `current replicas ${current} above maxReplicas ${max}` };
  } else if (current < min) {
    d = { replicas: min, reason: 'BelowMin', message: `current replicas ${current} below minReplicas ${min}` };
  } else if (!i.proposal.ok) {
    d = { replicas: current, reason: 'MetricsMissing', message: i.proposal.error };
  } else {
    const recommendation = i.proposal.replicas;
    const st = stabilize(mem, current, recommendation, i.nowMs, i.downWindowMs);
    const rate = limitRate(mem, current, st.replicas, min, max, i.nowMs);
    const reason =
      rate.replicas !== st.replicas
        ? rate.reason
        : st.replicas !== recommendation
          ? st.reason
          : recommendation === current
            ? 'WithinTolerance'
            : 'DesiredWithinRange';
    d = { replicas: rate.replicas, recommendation, stabilized: st.replicas, reason, message: '' };
  }
  if (d.replicas !== current) recordScale(mem, current, d.replicas, i.nowMs);
  return d;
}
