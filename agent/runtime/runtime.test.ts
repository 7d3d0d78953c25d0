import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { boundedSignal } from './runtime.js';

describe('boundedSignal', () => {
  it('still times out after garbage collections when merged with a caller signal that never fires', async () => {
    // AbortSignal.any keeps its sources weakly: a timeout signal referenced by nothing else was
    // collected with its timer, and the merged signal never fired (a stalled pull hung).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const caller = new AbortController();
    const merged = boundedSignal(caller.signal, 300);
    let fired = false;
    merged.addEventListener('abort', () => (fired = true), { once: true });
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 600));
    expect(fired).toBe(true);
    expect((merged.reason as Error).name).toBe('TimeoutError');
  });

  it('fires with the caller as soon as the caller aborts', () => {
    const caller = new AbortController();
    const merged = boundedSignal(caller.signal, 60_000);
    caller.abort(new Error('stop'));
    expect(merged.aborted).toBe(true);
  });
});
