import type { NodeUsage } from '../protocol/objects.js';

/**
 * The node's own usage in the short heartbeat (`usage-delta`, protocol/messages.ts), sent by
 * change only like per-container usage (pod-usage.ts): issue 16's uplink budget. The usage
 * heartbeat every 10 s is the node's proof of life and must go; what it carries need not. The
 * node's usage goes when it is news — CPU moved by ≥ `cpuPercent` points (100 = one core) and by
 * ≥ `cpuRatio` of the last sent, memory in use by ≥ `memoryRatio`, free disk by ≥ `diskRatio` —
 * on every `fullEvery`th heartbeat, and after every reconnect (`reset()`); otherwise the heartbeat
 * carries only its time and the hub repeats the last usage it got (so `top`, /metrics and the
 * history stay within these bounds of the truth, and fully right every 5 min).
 */
export interface NodeUsageRule {
  /** Absolute CPU change that is news, in percent of one core (default 5: 0.05 cores, as for containers). */
  cpuPercent: number;
  /** Relative CPU change that is news (default 0.1). */
  cpuRatio: number;
  /** Relative change of memory in use (default 0.05). */
  memoryRatio: number;
  /** Relative change of free disk (default 0.02: ephemeral-storage scheduling reads it). */
  diskRatio: number;
  /** The whole usage every N heartbeats (default 30: every 5 min at 10 s, as the per-container full refresh). */
  fullEvery: number;
}

export const DEFAULT_NODE_USAGE_RULE: NodeUsageRule = { cpuPercent: 5, cpuRatio: 0.1, memoryRatio: 0.05, diskRatio: 0.02, fullEvery: 30 };

const moved = (last: number, next: number, ratio: number): boolean => Math.abs(next - last) >= ratio * Math.max(Math.abs(last), 1);

/** Whether `next` differs enough from what the hub last got to be sent (pure). */
export function nodeUsageChanged(last: NodeUsage | undefined, next: NodeUsage, rule: NodeUsageRule): boolean {
  if (last === undefined) return true;
  const cpu = Math.abs(next.cpuPercent - last.cpuPercent);
  if (cpu >= rule.cpuPercent && cpu >= rule.cpuRatio * last.cpuPercent) return true;
  if (moved(last.memoryUsedBytes, next.memoryUsedBytes, rule.memoryRatio)) return true;
  if ((last.diskFreeBytes === undefined) !== (next.diskFreeBytes === undefined)) return true;
  return last.diskFreeBytes !== undefined && next.diskFreeBytes !== undefined && moved(last.diskFreeBytes, next.diskFreeBytes, rule.diskRatio);
}

/** Remembers the node usage the hub was last sent. Per agent instance. */
export class NodeUsageTracker {
  private last: NodeUsage | undefined;
  private count = 0;

  constructor(private readonly rule: NodeUsageRule = DEFAULT_NODE_USAGE_RULE) {}

  /** A new connection (the hub may have restarted): the next heartbeat carries the usage. */
  reset(): void {
    this.last = undefined;
    this.count = 0;
  }

  /** The usage to send with this heartbeat, or undefined when the hub's copy is close enough; `force` sends it. */
  next(usage: NodeUsage, force = false): NodeUsage | undefined {
    const full = this.count % this.rule.fullEvery === 0;
    this.count++;
    if (!force && !full && !nodeUsageChanged(this.last, usage, this.rule)) return undefined;
    this.last = usage;
    return usage;
  }
}
