import { describe, expect, it } from 'vitest';
import { EpochGate } from './epoch.js';

describe('EpochGate', () => {
  it.each([
    // [initial, sequence of epochs, expected takes, expected highest, expected stale]
    ['no epochs at all (a single hub) are always taken', 0, [undefined, undefined], [true, true], 0, 0],
    ['the first epoch is taken and raises', 0, [5], [true], 5, 0],
    ['the same epoch again is taken', 0, [5, 5, 5], [true, true, true], 5, 0],
    ['a newer epoch is taken', 0, [5, 9], [true, true], 9, 0],
    ['an older epoch after a newer one is dropped', 0, [5, 9, 5], [true, true, false], 9, 1],
    ['a persisted highest drops an older epoch at once', 9, [5, 9, 12], [false, true, true], 12, 1],
    ['a message without an epoch is taken even after epochs', 9, [undefined], [true], 9, 0],
  ] as const)('%s', (_name, initial, seq, takes, highest, stale) => {
    const g = new EpochGate(initial);
    expect(seq.map((e) => g.check(e).take)).toEqual(takes);
    expect(g.highest).toBe(highest);
    expect(g.stale).toBe(stale);
  });

  it('says when the highest epoch grew (the agent persists it only then)', () => {
    const g = new EpochGate();
    expect(g.check(3)).toEqual({ take: true, raised: true });
    expect(g.check(3)).toEqual({ take: true, raised: false });
    expect(g.check(2)).toEqual({ take: false, highest: 3 });
    expect(g.check(4)).toEqual({ take: true, raised: true });
  });

  it('ignores a nonsense initial value (a damaged cache file)', () => {
    expect(new EpochGate(-4).highest).toBe(0);
    expect(new EpochGate(Number.NaN).highest).toBe(0);
    expect(new EpochGate(1.5).highest).toBe(0);
  });
});
