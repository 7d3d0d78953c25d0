import type { ContainerUsageSample, NodeUsageMessage, PodUsageReport } from '../protocol/messages.js';
import type { ContainerUsage, RuntimeContainer } from './runtime/runtime.js';
import { LABELS } from './runtime/runtime.js';

/**
 * Per-container usage for the node's usage message, sent by change only (issue 16's uplink budget:
 * ≤ 0.25 kbit/s per node with 10 pods at the default 10 s interval). A container is sent when its
 * cumulative CPU moved by ≥ `cpuSeconds` since it was last sent, its working set moved by
 * ≥ `memoryRatio` of the last sent value, its CPU counter went backwards (a restart), or it is new;
 * every `fullEvery` samples the whole set goes out with `full: true`, so a lost message (usage is
 * QoS 0) or a restarted hub is right again within one refresh. Pods that left are named in `gone`.
 */
export interface PodUsageRule {
  /** CPU seconds moved since last sent (default 0.5: 5 % of a core over a 10 s interval). */
  cpuSeconds: number;
  /** Relative working-set change (default 0.1). */
  memoryRatio: number;
  /** A full refresh every N samples (default 6: once a minute at 10 s). */
  fullEvery: number;
}

export const DEFAULT_POD_USAGE_RULE: PodUsageRule = { cpuSeconds: 0.5, memoryRatio: 0.1, fullEvery: 6 };

type Samples = Map<string, Map<string, ContainerUsageSample>>;

/** Rounds to what goes on the wire: CPU to the millisecond, memory to whole bytes. */
export function wireSample(u: ContainerUsage): ContainerUsageSample {
  return [Math.round(u.cpuSeconds * 1000) / 1000, Math.max(0, Math.round(u.memoryBytes))];
}

/** Whether `next` differs enough from what the hub last got to be worth sending (pure). */
export function changedEnough(last: ContainerUsageSample | undefined, next: ContainerUsageSample, rule: PodUsageRule): boolean {
  if (last === undefined) return true;
  if (next[0] < last[0]) return true; // counter reset: the container restarted
  if (next[0] - last[0] >= rule.cpuSeconds) return true;
  const base = Math.max(last[1], 1);
  return Math.abs(next[1] - last[1]) / base >= rule.memoryRatio;
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
  private sent: Samples = new Map();
  private count = 0;

  constructor(private readonly rule: PodUsageRule = DEFAULT_POD_USAGE_RULE) {}

  /** Forget what was sent (a new connection: the hub may have restarted), so the next sample is full. */
  reset(): void {
    this.sent = new Map();
    this.count = 0;
  }

  next(now: Samples): PodUsageFields {
    const full = this.count % this.rule.fullEvery === 0;
    this.count++;
    const pods: PodUsageReport = {};
    let any = false;
    for (const [pod, containers] of now) {
      const last = this.sent.get(pod);
      for (const [name, sample] of containers) {
        if (!full && !changedEnough(last?.get(name), sample, this.rule)) continue;
        (pods[pod] ??= {})[name] = sample;
        any = true;
        let m = this.sent.get(pod);
        if (m === undefined) this.sent.set(pod, (m = new Map()));
        m.set(name, sample);
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
