import type { ObjectKind } from '../../protocol/objects.js';
import type { WatchEvent, WatchListener } from './store.js';

interface Subscription {
  listener: WatchListener;
  kinds: ReadonlySet<string> | undefined;
  /** Only events with a resourceVersion above this are delivered (writes committed before subscribing are not). */
  after: number;
  active: boolean;
}

/**
 * Delivers committed writes to watchers, synchronously and in one global order. Events
 * published while a delivery is running (a listener that writes) are queued behind the current
 * batch rather than delivered re-entrantly, so no listener sees event N+1 before every
 * listener has seen event N. A listener that throws is reported and skipped for that event.
 */
export class WatchDispatcher {
  private readonly subs = new Set<Subscription>();
  private queue: WatchEvent[] = [];
  private delivering = false;

  constructor(private readonly onError: (err: unknown, ev: WatchEvent) => void) {}

  subscribe(listener: WatchListener, kinds: readonly ObjectKind[] | undefined, after: number): () => void {
    const sub: Subscription = { listener, kinds: kinds === undefined ? undefined : new Set(kinds), after, active: true };
    this.subs.add(sub);
    return () => {
      sub.active = false;
      this.subs.delete(sub);
    };
  }

  publish(events: readonly WatchEvent[]): void {
    if (events.length === 0) return;
    for (const ev of events) this.queue.push(ev);
    if (this.delivering) return;
    this.delivering = true;
    try {
      // The queue may grow while we walk it (listeners that write); index, don't iterate a copy.
      for (let i = 0; i < this.queue.length; i++) this.deliver(this.queue[i] as WatchEvent);
    } finally {
      this.queue = [];
      this.delivering = false;
    }
  }

  clear(): void {
    for (const sub of this.subs) sub.active = false;
    this.subs.clear();
  }

  private deliver(ev: WatchEvent): void {
    const rv = ev.object.metadata.resourceVersion;
    for (const sub of [...this.subs]) {
      if (!sub.active || rv <= sub.after || (sub.kinds !== undefined && !sub.kinds.has(ev.object.kind))) continue;
      try {
        sub.listener(ev);
      } catch (err) {
        try {
          this.onError(err, ev);
        } catch {
          // An onError that throws must not break delivery either; nothing sensible is left to do.
        }
      }
    }
  }
}
