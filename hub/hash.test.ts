import { describe, expect, it } from 'vitest';
import { deepEqual, stableStringify } from './hash.js';

describe('deepEqual', () => {
  // deepEqual compares structurally; it must agree with comparing stableStringify output.
  const values: unknown[] = [
    null,
    undefined,
    0,
    -0,
    1,
    NaN,
    Infinity,
    'a',
    '',
    '1',
    true,
    false,
    [],
    {},
    [[]],
    [{}],
    [1, 2],
    [2, 1],
    ['1'],
    [undefined],
    [null],
    { a: 1 },
    { a: 1, b: undefined },
    { b: undefined, a: 1 },
    { a: undefined },
    { a: null },
    { '0': 1 },
    { a: [1, { b: 2 }] },
    { a: [1, { b: 3 }] },
    { a: { x: 1, y: 2 } },
    { a: { y: 2, x: 1 } },
  ];

  it('agrees with comparing stable JSON for every pair of values', () => {
    for (const a of values) for (const b of values) expect([a, b, deepEqual(a, b)]).toEqual([a, b, stableStringify(a) === stableStringify(b)]);
  });
});
