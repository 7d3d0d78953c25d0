import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Deadline, withDeadline } from './runtime.js';

/** Pending timers, unref'd ones included (the deadline's is unref'd): counted by vitest's fake timers. */
const pendingTimers = (): number => vi.getTimerCount();
const fakeTimers = (): void => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
};

describe('Deadline under garbage collection', () => {
  it('still times out after garbage collections when the caller signal never fires', async () => {
    // AbortSignal.any keeps its sources weakly: a timeout signal referenced by nothing else was
    // collected with its timer, and the merged signal never fired (a stalled pull hung).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const caller = new AbortController();
    const signal = new Deadline(caller.signal, 300).signal;
    let fired = false;
    signal.addEventListener('abort', () => (fired = true), { once: true });
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 600));
    expect(fired).toBe(true);
    expect((signal.reason as Error).name).toBe('TimeoutError');
  });
});

describe('Deadline', () => {
  fakeTimers();

  it('fires with the caller as soon as the caller aborts, with the caller reason', () => {
    const caller = new AbortController();
    const d = new Deadline(caller.signal, 60_000);
    const reason = new Error('stop');
    caller.abort(reason);
    expect(d.signal.aborted).toBe(true);
    expect(d.signal.reason).toBe(reason);
  });

  it('is aborted at once when the caller already was', () => {
    const caller = new AbortController();
    caller.abort(new Error('before'));
    const before = pendingTimers();
    const d = new Deadline(caller.signal, 60_000);
    expect(d.signal.aborted).toBe(true);
    expect(pendingTimers()).toBe(before);
  });

  it('end() clears the timer: the signal is not aborted when the time has passed', () => {
    const before = pendingTimers();
    const d = new Deadline(undefined, 50);
    expect(pendingTimers()).toBe(before + 1);
    d.end();
    expect(pendingTimers()).toBe(before);
    vi.advanceTimersByTime(100);
    expect(d.signal.aborted).toBe(false);
  });

  it('adds no listener to the caller signal (many calls share one long-lived signal)', () => {
    const caller = new AbortController();
    const added = vi.spyOn(caller.signal, 'addEventListener');
    const deadlines = Array.from({ length: 20 }, () => new Deadline(caller.signal, 60_000));
    expect(added).not.toHaveBeenCalled();
    caller.abort(new Error('shutdown'));
    expect(deadlines.every((d) => d.signal.aborted && (d.signal.reason as Error).message === 'shutdown')).toBe(true);
  });
});

describe('withDeadline', () => {
  fakeTimers();

  it('leaves no timer behind once the call has settled, whether it resolved or failed', async () => {
    // The timers AbortSignal.timeout left behind fired 30 s after every engine call (a DOMException
    // each, for nobody): this fails if a deadline's timer outlives its call.
    const caller = new AbortController();
    const before = pendingTimers();
    await expect(withDeadline(caller.signal, 60_000, async (s) => (s.aborted ? 'aborted' : 'ok'))).resolves.toBe('ok');
    await expect(
      withDeadline(undefined, 60_000, async () => {
        throw new Error('engine said no');
      }),
    ).rejects.toThrow('engine said no');
    expect(pendingTimers()).toBe(before);
  });

  it('never uses AbortSignal.timeout, whose timer cannot be cleared', async () => {
    const timeout = vi.spyOn(AbortSignal, 'timeout');
    await withDeadline(undefined, 60_000, async () => 'ok');
    await withDeadline(new AbortController().signal, 60_000, async () => 'ok');
    expect(timeout).not.toHaveBeenCalled();
    timeout.mockRestore();
  });

  it('cancels the calls still running on its signal when one of them fails (Promise.all rejects at the first)', async () => {
    let sibling: AbortSignal | undefined;
    await expect(
      withDeadline(undefined, 60_000, (signal) => {
        sibling = signal;
        return Promise.all([new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true })), Promise.reject(new Error('inspect failed'))]);
      }),
    ).rejects.toThrow('inspect failed');
    expect(sibling?.aborted).toBe(true);
    expect((sibling?.reason as Error).name).toBe('AbortError');
    expect(pendingTimers()).toBe(0);
  });

  it('aborts a call that outlives its deadline with a TimeoutError', async () => {
    const seen = withDeadline(
      undefined,
      30,
      (signal) => new Promise<unknown>((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true })),
    );
    vi.advanceTimersByTime(30);
    expect(((await seen) as Error).name).toBe('TimeoutError');
    expect(pendingTimers()).toBe(0);
  });
});
