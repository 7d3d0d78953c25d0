import type { ServiceCountersReport } from '../../protocol/messages.js';

/**
 * When the node's service proxy counters ride on the usage heartbeat (protocol/messages.ts
 * SERVICE_COUNTERS): the whole set, when it differs from what the hub was last sent, on the first
 * heartbeat after a reconnect (`reset()`: the hub may have restarted and forgotten), and on every
 * `fullEvery`th heartbeat whatever it holds (the usage message is QoS 0: a lost one is repaired
 * within 5 min at the default 10 s). Otherwise nothing, so a node whose proxy replays nothing
 * adds a few bytes every 5 min. Per agent instance; pure apart from its memory.
 */
export class ServiceCounterTracker {
  private last: ServiceCountersReport | undefined;
  private count = 0;

  constructor(private readonly fullEvery = 30) {}

  /** A new connection: the next heartbeat carries the counters. */
  reset(): void {
    this.last = undefined;
    this.count = 0;
  }

  /** The counters to send with this heartbeat, or undefined when the hub has them. */
  next(counters: ServiceCountersReport): ServiceCountersReport | undefined {
    const full = this.count % this.fullEvery === 0;
    this.count++;
    if (!full && this.last !== undefined && sameCounters(this.last, counters)) return undefined;
    this.last = counters;
    return counters;
  }
}

export function sameCounters(a: ServiceCountersReport, b: ServiceCountersReport): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) if (a[k]?.replays !== b[k]?.replays) return false;
  return true;
}
