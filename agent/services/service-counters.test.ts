import { describe, expect, it } from 'vitest';
import type { ServiceCountersReport } from '../../protocol/messages.js';
import { sameCounters, ServiceCounterTracker } from './service-counters.js';

describe('ServiceCounterTracker: when the proxy counters ride on the usage heartbeat', () => {
  it('sends the whole set on the first heartbeat, when it changed, and every fullEvery-th; nothing otherwise', () => {
    const t = new ServiceCounterTracker(4);
    const web: ServiceCountersReport = { web: { replays: 1 } };
    const sent = [{}, {}, web, web, web, web, {}, {}].map((c) => t.next(c));
    expect(sent).toEqual([
      {}, // first heartbeat: the hub learns there is nothing
      undefined,
      { web: { replays: 1 } }, // changed
      undefined,
      { web: { replays: 1 } }, // the 4th after the first: whole, unchanged or not (a lost QoS 0 message is repaired)
      undefined,
      {}, // the service went: the empty set tells the hub
      undefined,
    ]);
  });

  it('sends again after a reconnect (the hub may have restarted)', () => {
    const t = new ServiceCounterTracker();
    expect(t.next({ web: { replays: 2 } })).toEqual({ web: { replays: 2 } });
    expect(t.next({ web: { replays: 2 } })).toBeUndefined();
    t.reset();
    expect(t.next({ web: { replays: 2 } })).toEqual({ web: { replays: 2 } });
  });

  it.each([
    [{}, {}, true],
    [{ a: { replays: 1 } }, { a: { replays: 1 } }, true],
    [{ a: { replays: 1 } }, { a: { replays: 2 } }, false],
    [{ a: { replays: 1 } }, { b: { replays: 1 } }, false],
    [{ a: { replays: 1 } }, { a: { replays: 1 }, b: { replays: 1 } }, false],
  ])('sameCounters(%j, %j) = %s', (a, b, same) => {
    expect(sameCounters(a, b)).toBe(same);
    expect(sameCounters(b, a)).toBe(same);
  });
});
