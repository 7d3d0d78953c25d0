import type { Logger } from './log.js';
import type { Store } from './store/store.js';

export interface EventRetentionOptions {
  store: Store;
  log: Logger;
  /** Events kept (the newest by resourceVersion); default 10,000. */
  keep?: number;
  /** How often to prune; default 60 s. */
  everyMs?: number;
}

/**
 * Bounds the Event objects the store holds (every object lives in the store's memory cache and
 * in SQLite): a fleet of 10,000 nodes records at least one Event per node, and a crash-looping
 * or rescheduled workload adds more without end. Kubernetes expires events after an hour; a
 * count cap is simpler and bounds memory directly. Oldest first, in one transaction.
 */
export class EventRetention {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: EventRetentionOptions) {}

  start(): void {
    this.prune();
    this.timer = setInterval(() => this.prune(), this.o.everyMs ?? 60_000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Returns how many Events were deleted. Never throws (a failed prune is retried next period). */
  prune(): number {
    try {
      const n = this.o.store.pruneEvents?.(this.o.keep ?? 10_000) ?? 0;
      if (n > 0) this.o.log.info('pruned old events', { deleted: n, kept: this.o.keep ?? 10_000 });
      return n;
    } catch (err) {
      this.o.log.warn('event pruning failed', { err });
      return 0;
    }
  }
}
