import { systemClock, type Clock, type TimerHandle } from '../../protocol/clock.js';
import type { Logger } from '../log.js';

/**
 * A keyed work queue in the manner of client-go's: events only enqueue a key; duplicate keys
 * waiting in the queue merge; one key is never processed twice at once; a failing key is
 * retried with exponential backoff, up to `maxRetries` times in a row, then parked: retried every
 * `parkMs` with an error log until it succeeds (add() runs it at once); a handler may ask to be
 * called again after a delay. Time (backoff timers, the yield slice) comes from the injected Clock.
 *
 * Processing is serial (one worker) — the store is synchronous and in-process, so parallel
 * workers would only interleave writes.
 */
export type Reconcile = (key: string) => Promise<{ requeueAfterMs?: number } | void> | { requeueAfterMs?: number } | void;

/** Longest stretch of reconciles before the queue yields to the event loop. */
const SLICE_MS = 20;

export interface WorkQueueOptions {
  /** First retry delay; doubles per consecutive failure (default 50 ms). */
  baseBackoffMs?: number;
  /** Longest retry delay (default 30 s). */
  maxBackoffMs?: number;
  /**
   * Consecutive failures after which a key stops backing off and is parked: retried only every
   * `parkMs`, with an error log each time (default 30: with the defaults about 12 minutes of
   * retrying first). client-go controllers drop such a key (`maxRetries`, then Forget) and rely
   * on an informer resync to bring it back; the hub has no resync, and a dropped key of a dead
   * node or a quiet deployment would never run again (a node lost while the disk was full would
   * keep its pods forever), so a parked key keeps being retried, slowly. add() runs it at once.
   */
  maxRetries?: number;
  /** Retry period of a parked key (default 5 minutes). */
  parkMs?: number;
  clock?: Clock;
}

export class WorkQueue {
  private readonly pending = new Set<string>();
  private readonly timers = new Map<string, TimerHandle>();
  private readonly failures = new Map<string, number>();
  private running = false;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly name: string,
    private readonly reconcile: Reconcile,
    private readonly log: Logger,
    private readonly opts: WorkQueueOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
  }

  private readonly clock: Clock;

  add(key: string): void {
    if (this.stopped) return;
    this.pending.add(key);
    this.kick();
  }

  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    const existing = this.timers.get(key);
    if (existing !== undefined) this.clock.clearTimeout(existing);
    const t = this.clock.setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    this.timers.set(key, t);
  }

  get length(): number {
    return this.pending.size;
  }

  /** Resolves when nothing is pending or running (for tests and orderly shutdown). */
  idle(): Promise<void> {
    if (!this.running && this.pending.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) this.clock.clearTimeout(t);
    this.timers.clear();
    this.pending.clear();
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    // Let a burst of events (e.g. one transaction binding 20 pods) merge before we run.
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    let sliceStart = this.clock.now();
    while (this.pending.size > 0 && !this.stopped) {
      // Synchronous reconciles only yield a microtask per key, so a long queue (10,000 nodes'
      // desired sets after a restart) would hold the event loop for seconds: sockets starve and
      // agents time out. Give I/O a turn every SLICE_MS of work.
      if (this.clock.now() - sliceStart >= SLICE_MS) {
        await new Promise<void>((r) => setImmediate(r));
        sliceStart = this.clock.now();
        if (this.pending.size === 0 || this.stopped) break;
      }
      const key = this.pending.values().next().value as string;
      this.pending.delete(key);
      try {
        const r = await this.reconcile(key);
        this.failures.delete(key);
        if (r && r.requeueAfterMs !== undefined) this.addAfter(key, r.requeueAfterMs);
      } catch (err) {
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        if (n > (this.opts.maxRetries ?? 30)) {
          const parkMs = this.opts.parkMs ?? 300_000;
          this.log.error(`${this.name}: reconcile failed ${n} times in a row; retrying every ${parkMs / 1000} s until it succeeds`, { key, err });
          this.addAfter(key, parkMs);
          continue;
        }
        const delay = Math.min((this.opts.baseBackoffMs ?? 50) * 2 ** (n - 1), this.opts.maxBackoffMs ?? 30_000);
        this.log.warn(`${this.name}: reconcile failed, retrying`, { key, attempt: n, delayMs: delay, err });
        this.addAfter(key, delay);
      }
    }
    this.running = false;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
