import type { ContainerUsageSample, NodeUsageMessage, PodUsageReport } from '../protocol/messages.js';
import type { ContainerUsage, RuntimeContainer } from './runtime/runtime.js';
import { LABELS } from './runtime/runtime.js';

/**
 * Per-container usage for the node's usage message, sent by change only (issue 16's uplink budget:
 * ≤ 0.25 kbit/s per node with 10 pods at the default 10 s interval). A container is sent when it
 * is new or was sent only once (the hub needs two samples for a rate), its CPU counter went
 * backwards (a restart), its working set moved by ≥ `memoryRatio` of
 * the last sent value, or its CPU *rate* since it was last sent differs from the rate the hub last
 * saw (between its last two sends) by ≥ `cpuCores` and ≥ `cpuRatio` of it. A steady container —
 * idle or busy — is then silent: the hub's rate (computed between received samples) stays right,
 * and its cumulative counter is at most one full refresh old. Every `fullEvery` samples the whole
 * set goes out with `full: true`, and after every reconnect (`reset()`), so a restarted hub or a
 * lost message (usage is QoS 0) is right again. Pods that left are named in `gone`.
 */
export interface PodUsageRule {
  /** Absolute CPU rate change that is news (default 0.05 cores). */
  cpuCores: number;
  /** Relative CPU rate change that is news (default 0.2). */
  cpuRatio: number;
  /** Relative working-set change (default 0.1). */
  memoryRatio: number;
  /** A full refresh every N samples (default 30: every 5 min at 10 s). */
  fullEvery: number;
}

export const DEFAULT_POD_USAGE_RULE: PodUsageRule = { cpuCores: 0.05, cpuRatio: 0.2, memoryRatio: 0.1, fullEvery: 30 };

/** What the agent remembers of a container's last send: the sample, when, and the rate the hub derived then. */
export interface SentSample {
  sample: ContainerUsageSample;
  atMs: number;
  /** Cores between the previous send and this one; undefined after the first. */
  rate: number | undefined;
}

type Samples = Map<string, Map<string, ContainerUsageSample>>;

/** Rounds to what goes on the wire: CPU to the millisecond, memory to whole bytes. */
export function wireSample(u: ContainerUsage): ContainerUsageSample {
  return [Math.round(u.cpuSeconds * 1000) / 1000, Math.max(0, Math.round(u.memoryBytes))];
}

/** Whether `next` (at `atMs`) differs enough from what the hub last got to be worth sending (pure). */
export function changedEnough(last: SentSample | undefined, next: ContainerUsageSample, atMs: number, rule: PodUsageRule): boolean {
  if (last === undefined) return true;
  const [cpu, mem] = next;
  const [lastCpu, lastMem] = last.sample;
  if (cpu < lastCpu) return true; // counter reset: the container restarted
  if (Math.abs(mem - lastMem) / Math.max(lastMem, 1) >= rule.memoryRatio) return true;
  const dt = (atMs - last.atMs) / 1000;
  if (dt <= 0) return false;
  const rate = (cpu - lastCpu) / dt;
  // One sample only: the hub cannot compute a rate yet (top would say <none>): the second always goes.
  if (last.rate === undefined) return true;
  const seen = last.rate;
  const diff = Math.abs(rate - seen);
  return diff >= rule.cpuCores && diff >= rule.cpuRatio * seen;
}

/** Groups engine usage by pod and container name (labels), running containers of this agent only. */
export function samplesByPod(containers: readonly RuntimeContainer[], usage: ReadonlyMap<string, ContainerUsage>): Samples {
  const out: Samples = new Map();
  for (const c of containers) {
    const u = usage.get(c.id);
    const pod = c.labels[LABELS.pod];
    const name = c.labels[LABELS.container];
    if (u === undefined || pod === undefined || name === undefined) continue;
    let m = out.get(pod);
    if (m === undefined) out.set(pod, (m = new Map()));
    m.set(name, wireSample(u));
  }
  return out;
}

export type PodUsageFields = Pick<NodeUsageMessage, 'pods' | 'full' | 'gone'>;

/** Remembers what the hub was last sent; `next()` says what to send now. Per agent instance. */
export class PodUsageTracker {
  private sent = new Map<string, Map<string, SentSample>>();
  private count = 0;

  constructor(private readonly rule: PodUsageRule = DEFAULT_POD_USAGE_RULE) {}

  /** Forget what was sent (a new connection: the hub may have restarted), so the next sample is full. */
  reset(): void {
    this.sent = new Map();
    this.count = 0;
  }

  next(now: Samples, atMs: number): PodUsageFields {
    const full = this.count % this.rule.fullEvery === 0;
    this.count++;
    const pods: PodUsageReport = {};
    let any = false;
    for (const [pod, containers] of now) {
      let m = this.sent.get(pod);
      for (const [name, sample] of containers) {
        const last = m?.get(name);
        if (!full && !changedEnough(last, sample, atMs, this.rule)) continue;
        (pods[pod] ??= {})[name] = sample;
        any = true;
        if (m === undefined) this.sent.set(pod, (m = new Map()));
        const dt = last === undefined ? 0 : (atMs - last.atMs) / 1000;
        const rate = last !== undefined && dt > 0 && sample[0] >= last.sample[0] ? (sample[0] - last.sample[0]) / dt : undefined;
        m.set(name, { sample, atMs, rate });
      }
    }
    const gone = [...this.sent.keys()].filter((p) => !now.has(p));
    for (const p of gone) this.sent.delete(p);
    if (full) return { pods, full: true };
    const out: PodUsageFields = {};
    if (any) out.pods = pods;
    if (gone.length > 0) out.gone = gone;
    return out;
  }
}
