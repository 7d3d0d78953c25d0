import { describe, expect, it } from 'vitest';
import { silentLogger } from '../log.js';
import { WorkQueue } from './workqueue.js';

describe('WorkQueue', () => {
  it('merges duplicate keys and never runs one key concurrently', async () => {
    const runs: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const q = new WorkQueue('t', async (k) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      runs.push(k);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
    }, silentLogger);
    for (let i = 0; i < 10; i++) q.add('a');
    q.add('b');
    await q.idle();
    expect(runs.sort()).toEqual(['a', 'b']);
    expect(maxInFlight).toBe(1);
  });

  it('retries a failing key with backoff', async () => {
    let calls = 0;
    const q = new WorkQueue('t', () => {
      calls++;
      if (calls < 3) throw new Error('boom');
    }, silentLogger, { baseBackoffMs: 5 });
    q.add('k');
    await new Promise((r) => setTimeout(r, 100));
    expect(calls).toBe(3);
    q.stop();
  });

  it('honours requeueAfter', async () => {
    let calls = 0;
    const q = new WorkQueue('t', () => (++calls < 2 ? { requeueAfterMs: 10 } : undefined), silentLogger);
    q.add('k');
    await new Promise((r) => setTimeout(r, 60));
    expect(calls).toBe(2);
    q.stop();
  });
});
