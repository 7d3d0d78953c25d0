import { systemClock, type Clock } from '../../protocol/clock.js';
import { autoscaleRequest, type Autoscale } from '../../protocol/manifest.js';
import type { AutoscaleDecision, AutoscaleMetricStatus, AutoscaleStatus, Deployment, Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import { deepEqual, stableStringify } from '../hash.js';
import type { Logger } from '../log.js';
import type { UsageStore } from '../metrics/usage-store.js';
import { isNodeReady } from '../objects/node.js';
import type { Store, WatchEvent } from '../store/store.js';
import {
  combineProposals,
  decide,
  DEFAULT_DOWNSCALE_WINDOW_MS,
  newMemory,
  resourceReplicas,
  type Decision,
  type HpaMemory,
  type MetricProposal,
  type PodFacts,
  type Resource,
} from './hpa.js';
import { WorkQueue } from './workqueue.js';

/**
 * `spec.autoscale` (docs/observability.md "Autoscaling"): every `syncPeriodMs` per autoscaled
 * deployment, Kubernetes HPA's decision (hpa.ts) from the pods' usage as agents report it
 * (hub/metrics UsageStore), written to `spec.replicas` — the same field `orchard scale` writes, so
 * the deployment controller, rollouts and the scheduler do the rest.
 *
 * Level-triggered on a timer, as the HPA controller is: pod events do not wake it. Decisions,
 * stabilisation samples and scale events live in memory (lost on restart, as in Kubernetes); on a
 * deployment's first pass the scale-down window is seeded with its current count, so a hub
 * restart never shrinks anything before a full window of new evidence. No decision while the
 * hub is inside its node-startup grace (agents are still reconnecting: their pods have no usage
 * yet and their nodes may look lost).
 *
 * Writes: spec.replicas (with an Event) when the decision changes it; status.autoscale when the
 * decision or the utilisation changed (not every pass: SD cards); an Event when the decision's
 * reason or numbers changed. Never called concurrently for one deployment (one WorkQueue).
 */

export interface AutoscalerOptions {
  store: Store;
  usage: UsageStore;
  log: Logger;
  clock?: Clock;
  /** How often each autoscaled deployment is evaluated (HPA's `--horizontal-pod-autoscaler-sync-period`; default 15 s). */
  syncPeriodMs?: number;
  /** Default scale-down stabilisation window (HPA's `--horizontal-pod-autoscaler-downscale-stabilization`; default 300 s). */
  downscaleWindowMs?: number;
  /** No decisions before start + this (the hub's `--node-startup-grace`; default 60 s). */
  startupGraceMs?: number;
  /** A node whose last usage report is older than this counts as partitioned: its pods are missing (default 45 s: 4 missed 10 s reports). */
  usageStaleMs?: number;
}

export const DEFAULT_SYNC_PERIOD_MS = 15_000;
const DEFAULT_USAGE_STALE_MS = 45_000;

interface Entry {
  mem: HpaMemory;
  /** stableStringify(spec.autoscale) at the last pass: a change runs the next pass at once. */
  spec: string;
  nextDueMs: number;
  /** The last decision recorded as an Event (reason and numbers), to record only changes. */
  lastEventKey?: string;
}

export class Autoscaler {
  readonly queue: WorkQueue;
  private readonly clock: Clock;
  private readonly entries = new Map<string, Entry>();
  private unwatch: (() => void) | undefined;
  private startedAt = 0;
  /** Decisions that changed spec.replicas (tests, metrics). */
  rescales = 0;

  constructor(private readonly o: AutoscalerOptions) {
    this.clock = o.clock ?? systemClock;
    this.queue = new WorkQueue('autoscaler', (name) => this.reconcile(name), o.log, { clock: this.clock });
  }

  get syncPeriodMs(): number {
    return this.o.syncPeriodMs ?? DEFAULT_SYNC_PERIOD_MS;
  }

  start(): void {
    this.startedAt = this.clock.now();
    this.unwatch = this.o.store.watch(
      (ev: WatchEvent) => {
        if (ev.object.kind !== 'Deployment') return;
        const d = ev.object;
        const e = this.entries.get(d.metadata.name);
        // Only a new, deleted, or autoscale-changed deployment needs a pass now; the rest wait for their timer.
        if (
          ev.type === 'DELETED' ||
          (d.spec.autoscale === undefined ? e !== undefined || d.status.autoscale !== undefined : e?.spec !== stableStringify(d.spec.autoscale))
        ) {
          this.queue.add(d.metadata.name);
        }
      },
      ['Deployment'],
    );
    for (const d of this.o.store.list('Deployment')) if (d.spec.autoscale !== undefined || d.status.autoscale !== undefined) this.queue.add(d.metadata.name);
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
  }

  async reconcile(name: string): Promise<{ requeueAfterMs?: number } | void> {
    const { store } = this.o;
    const d = store.get('Deployment', name);
    if (d === undefined || d.spec.autoscale === undefined || d.spec.mode === 'global') {
      this.entries.delete(name);
      if (d !== undefined && d.status.autoscale !== undefined) {
        store.transaction(() => {
          const fresh = store.get('Deployment', name);
          if (fresh === undefined || fresh.status.autoscale === undefined) return;
          const next = structuredClone(fresh) as Deployment;
          delete next.status.autoscale;
          store.update(next);
        });
      }
      return;
    }
    const a = d.spec.autoscale;
    const now = this.clock.now();
    const specKey = stableStringify(a);
    let e = this.entries.get(name);
    if (e !== undefined && e.spec === specKey && now < e.nextDueMs) return { requeueAfterMs: e.nextDueMs - now };
    if (e === undefined) {
      const mem = newMemory();
      // Restart rule (see the class comment): the window starts full at the current count.
      mem.recommendations.push({ replicas: d.spec.replicas, atMs: now });
      e = { mem, spec: specKey, nextDueMs: 0 };
      this.entries.set(name, e);
    }
    e.spec = specKey;
    e.nextDueMs = now + this.syncPeriodMs;

    const graceEnd = this.startedAt + (this.o.startupGraceMs ?? 60_000);
    const current = d.spec.replicas;
    const pods = store.list('Pod', { ownerName: name });
    const metrics: AutoscaleMetricStatus[] = [];
    const proposals: MetricProposal[] = [];
    for (const [resource, target] of targets(a)) {
      const facts = pods.map((p) => this.podFacts(p, resource));
      const proposal = resourceReplicas(current, target, facts, resource, now);
      proposals.push(proposal);
      metrics.push(metricStatus(resource, target, proposal));
    }
    let decision: Decision;
    if (now < graceEnd) {
      decision = {
        replicas: current,
        reason: 'NodeStartupGrace',
        message: `no decisions until the hub's node-startup grace ends at ${new Date(graceEnd).toISOString()}: agents are still reconnecting`,
      };
    } else {
      decision = decide(e.mem, {
        current,
        min: a.minReplicas,
        max: a.maxReplicas,
        proposal: combineProposals(current, proposals),
        downWindowMs:
          a.scaleDownStabilizationWindowSeconds !== undefined
            ? a.scaleDownStabilizationWindowSeconds * 1000
            : (this.o.downscaleWindowMs ?? DEFAULT_DOWNSCALE_WINDOW_MS),
        nowMs: now,
      });
    }
    this.write(d, e, decision, metrics, now);
    const wait = now < graceEnd ? Math.min(this.syncPeriodMs, graceEnd - now) : this.syncPeriodMs;
    e.nextDueMs = now + wait;
    return { requeueAfterMs: wait };
  }

  private podFacts(p: Pod, resource: Resource): PodFacts {
    const ready = p.status.conditions.find((c) => c.type === 'Ready');
    const readyAt = ready?.lastTransitionTime === undefined ? NaN : Date.parse(ready.lastTransitionTime);
    const start = p.status.startTime === undefined ? NaN : Date.parse(p.status.startTime);
    let request = 0;
    for (const c of p.spec.containers) request += autoscaleRequest(c, resource) ?? 0;
    const facts: PodFacts = {
      name: p.metadata.name,
      deleted: p.metadata.deletionTimestamp !== undefined,
      phase: p.status.phase,
      ready: ready === undefined || Number.isNaN(readyAt) ? undefined : { status: ready.status === 'True', lastTransitionMs: readyAt },
      startTimeMs: Number.isNaN(start) ? undefined : start,
      nodeLost: false,
      request,
      usage: undefined,
    };
    const nodeName = p.spec.nodeName;
    if (nodeName === undefined) return facts;
    const node = this.o.store.get('Node', nodeName);
    const reported = this.o.usage.node(nodeName);
    const now = this.clock.now();
    // Lost (NotReady) or partitioned (no usage report lately): its last numbers say nothing about now.
    if (node === undefined || !isNodeReady(node) || reported === undefined || now - reported.at > (this.o.usageStaleMs ?? DEFAULT_USAGE_STALE_MS)) {
      // A pod not yet started on a node the hub has not heard from is just Pending.
      if (p.status.phase !== 'Pending') facts.nodeLost = true;
      return facts;
    }
    const containers = this.o.usage.pod(nodeName, p.metadata.name);
    if (containers === undefined) return facts;
    let value = 0;
    let windowStartMs = Infinity;
    for (const c of p.spec.containers) {
      const u = containers.get(c.name);
      // metrics-server reports a pod only when every container has a sample.
      if (u === undefined) return facts;
      if (resource === 'cpu') {
        if (u.cpuCores === undefined) return facts;
        value += Math.round(u.cpuCores * 1000);
        windowStartMs = Math.min(windowStartMs, u.windowStart ?? u.at);
      } else {
        value += u.memoryBytes;
        windowStartMs = Math.min(windowStartMs, u.at);
      }
    }
    facts.usage = { value, windowStartMs };
    return facts;
  }

  private write(d: Deployment, e: Entry, decision: Decision, metrics: AutoscaleMetricStatus[], now: number): void {
    const { store } = this.o;
    const name = d.metadata.name;
    const current = d.spec.replicas;
    const ts = new Date(now).toISOString();
    const message = describeDecision(current, decision, metrics);
    const eventKey = stableStringify([decision.reason, decision.recommendation, decision.replicas, current]);
    store.transaction(() => {
      const fresh = store.get('Deployment', name);
      if (fresh === undefined) return;
      const next = structuredClone(fresh) as Deployment;
      const prev = fresh.status.autoscale;
      const last: AutoscaleDecision = {
        at: ts,
        currentReplicas: current,
        desiredReplicas: decision.replicas,
        reason: decision.reason,
        message,
        ...(decision.recommendation !== undefined ? { recommendation: decision.recommendation } : {}),
      };
      const rescale = decision.replicas !== fresh.spec.replicas && fresh.spec.replicas === current;
      const sameDecision = prev !== undefined && deepEqual({ ...prev.lastDecision, at: '' }, { ...last, at: '' });
      const status: AutoscaleStatus = {
        metrics,
        lastDecision: sameDecision && !rescale ? prev.lastDecision : last,
        ...(rescale ? { lastScaleTime: ts } : prev?.lastScaleTime !== undefined ? { lastScaleTime: prev.lastScaleTime } : {}),
      };
      if (rescale) next.spec.replicas = decision.replicas;
      if (!deepEqual(prev, status)) next.status.autoscale = status;
      if (rescale || !deepEqual(prev, status)) store.update(next);
      if (rescale) {
        this.rescales++;
        recordEvent(store, new Date(now), { kind: 'Deployment', name, type: 'Normal', reason: 'SuccessfulRescale', message });
        this.o.log.info('autoscaled', { deployment: name, from: current, to: decision.replicas, reason: decision.reason });
      } else if (e.lastEventKey !== eventKey && decision.reason !== 'WithinTolerance' && decision.reason !== 'ReadyForNewScale') {
        const warning = decision.reason === 'MetricsMissing';
        recordEvent(store, new Date(now), {
          kind: 'Deployment',
          name,
          type: warning ? 'Warning' : 'Normal',
          reason: warning ? 'FailedGetResourceMetric' : 'AutoscaleHeld',
          message,
        });
      }
    });
    e.lastEventKey = eventKey;
  }
}

function targets(a: Autoscale): Array<[Resource, number]> {
  const out: Array<[Resource, number]> = [];
  if (a.targetCPUUtilizationPercentage !== undefined) out.push(['cpu', a.targetCPUUtilizationPercentage]);
  if (a.targetMemoryUtilizationPercentage !== undefined) out.push(['memory', a.targetMemoryUtilizationPercentage]);
  return out;
}

function metricStatus(resource: Resource, target: number, p: MetricProposal): AutoscaleMetricStatus {
  const g = p.grouped;
  const counts = { ready: g?.readyPodCount ?? 0, unready: g?.unready.size ?? 0, missing: g?.missing.size ?? 0, ignored: g?.ignored.size ?? 0 };
  if (p.ok) return { resource, targetPercent: target, currentPercent: p.utilization, ...counts, recommendation: p.replicas };
  return { resource, targetPercent: target, ...(p.utilization !== undefined ? { currentPercent: p.utilization } : {}), ...counts, error: p.error };
}

const REASON_TEXT: Record<string, string> = {
  ScaleDownStabilized: 'held by the scale-down stabilisation window (the highest recommendation within it)',
  ScaleUpStabilized: 'held by the scale-up stabilisation window',
  ScaleUpLimit: 'limited to max(+100 %, +4 pods) per 15 s',
  ScaleDownLimit: 'limited by the scale-down rate',
  TooManyReplicas: 'capped at maxReplicas',
  TooFewReplicas: 'raised to minReplicas',
};

/** The numbers that led to a decision, one line: what `describe` and the Event show. */
export function describeDecision(current: number, d: Decision, metrics: readonly AutoscaleMetricStatus[]): string {
  const m = metrics
    .map((x) => {
      const pods = `${x.ready} ready, ${x.unready} unready, ${x.missing} missing${x.ignored > 0 ? `, ${x.ignored} ignored` : ''}`;
      const use = x.currentPercent === undefined ? 'no utilisation' : `${x.currentPercent}%`;
      return `${x.resource} ${use} of requests (target ${x.targetPercent}%) over ${pods}${x.recommendation !== undefined ? ` → ${x.recommendation}` : ''}`;
    })
    .join('; ');
  const head = d.replicas !== current ? `replicas ${current} → ${d.replicas}` : `replicas stay ${current}`;
  const steps: string[] = [];
  if (d.recommendation !== undefined) steps.push(`recommendation ${d.recommendation}`);
  if (d.stabilized !== undefined && d.stabilized !== d.recommendation) steps.push(`stabilised ${d.stabilized}`);
  const why = d.message !== '' ? d.message : (REASON_TEXT[d.reason] ?? '');
  return `${head} (${d.reason}${why !== '' ? `: ${why}` : ''}): ${m}${steps.length > 0 ? `; ${steps.join(', ')}` : ''}`;
}
