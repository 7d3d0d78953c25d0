/**
 * The one time seam of hub and agent: every part that reads the time or sets a timer takes a
 * Clock through its constructor, so tests drive time by hand (test/helpers/fake-clock.ts) and
 * many agents or controllers can share one process (no module-level singletons).
 */

export type TimerHandle = unknown;

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // A pending timer must never keep a finished process (or test worker) alive.
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};
