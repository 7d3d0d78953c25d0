import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { createLogger, silentLogger } from '../log.js';
import { WorkQueue } from './workqueue.js';

/** Lets the queue's setImmediate-driven drain run (no timers involved). */
async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

describe('WorkQueue', () => {
  it('merges duplicate keys and never runs one key concurrently', async () => {
    const runs: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const q = new WorkQueue(
      't',
      async (k) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        runs.push(k);
        await settle(2);
        inFlight--;
      },
      silentLogger,
      { clock: new FakeClock() },
    );
    for (let i = 0; i < 10; i++) q.add('a');
    q.add('b');
    await q.idle();
    expect(runs.sort()).toEqual(['a', 'b']);
    expect(maxInFlight).toBe(1);
  });

  it('retries a failing key with exponential backoff on the clock', async () => {
    const clock = new FakeClock();
    const at: number[] = [];
    const q = new WorkQueue(
      't',
      () => {
        at.push(clock.now());
        if (at.length < 4) throw new Error('boom');
      },
      silentLogger,
      { baseBackoffMs: 100, clock },
    );
    q.add('k');
    await settle();
    expect(at).toHaveLength(1);
    clock.advance(99);
    await settle();
    expect(at).toHaveLength(1); // not before the backoff
    for (const step of [1, 200, 400]) {
      clock.advance(step);
      await settle();
    }
    const t0 = at[0] ?? 0;
    expect(at.map((t) => t - t0)).toEqual([0, 100, 300, 700]);
    expect(clock.pending).toBe(0); // succeeded: nothing scheduled
    q.stop();
  });

  it('caps the backoff at maxBackoffMs', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const q = new WorkQueue(
      't',
      () => {
        calls++;
        throw new Error('boom');
      },
      silentLogger,
      { baseBackoffMs: 100, maxBackoffMs: 250, clock },
    );
    q.add('k');
    await settle();
    clock.advance(100); // retry 1 after 100
    await settle();
    clock.advance(200); // retry 2 after 200
    await settle();
    clock.advance(249); // retry 3 would be 400, capped at 250
    await settle();
    expect(calls).toBe(3);
    clock.advance(1);
    await settle();
    expect(calls).toBe(4);
    q.stop();
  });

  it('parks a key after maxRetries consecutive failures: an error log, then a retry every parkMs until it succeeds', async () => {
    const clock = new FakeClock();
    const lines: string[] = [];
    let calls = 0;
    let healthy = false;
    const q = new WorkQueue(
      't',
      () => {
        calls++;
        if (!healthy) throw new Error('disk full');
      },
      createLogger('t', 'error', (l) => lines.push(l)),
      { baseBackoffMs: 10, maxBackoffMs: 10, maxRetries: 3, parkMs: 1000, clock },
    );
    q.add('k');
    for (let i = 0; i < 10; i++) {
      await settle();
      clock.advance(10);
    }
    await settle();
    expect(calls).toBe(4); // the first try and 3 retries, then parked
    expect(lines.join('\n')).toMatch(/failed 4 times in a row; retrying every 1 s until it succeeds/);
    expect(clock.pending).toBe(1); // never forgotten: a dead node's key must come back
    // Parked at t = 30 (the fourth failure): the next try is due at 1030; the loop left t at 100.
    clock.advance(929);
    await settle();
    expect(calls).toBe(4);
    clock.advance(1);
    await settle();
    expect(calls).toBe(5); // the parked retry
    healthy = true;
    clock.advance(1000);
    await settle();
    expect(calls).toBe(6);
    expect(clock.pending).toBe(0); // succeeded: nothing scheduled
    q.stop();
  });

  it('honours requeueAfter on the clock', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const q = new WorkQueue('t', () => (++calls < 2 ? { requeueAfterMs: 1000 } : undefined), silentLogger, { clock });
    q.add('k');
    await settle();
    expect(calls).toBe(1);
    clock.advance(999);
    await settle();
    expect(calls).toBe(1);
    clock.advance(1);
    await settle();
    expect(calls).toBe(2);
    q.stop();
  });

  it('stop() cancels waiting retries', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const q = new WorkQueue('t', () => ({ requeueAfterMs: (++calls, 50) }), silentLogger, { clock });
    q.add('k');
    await settle();
    q.stop();
    expect(clock.pending).toBe(0);
    clock.advance(1000);
    await settle();
    expect(calls).toBe(1);
  });
});
