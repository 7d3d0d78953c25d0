import { describe, expect, it } from 'vitest';
import { deepEqual } from '../hash.js';
import { deepFreeze } from './json-value.js';

describe('deepEqual on stored values (the store compares drafts with it)', () => {
  it.each([
    [{ a: 1, b: [1, { c: 'x' }] }, { b: [1, { c: 'x' }], a: 1 }, true],
    [{ a: 1, gone: undefined }, { a: 1 }, true],
    [{ a: 1 }, { a: 1, gone: undefined }, true],
    [{ a: 1 }, { a: 2 }, false],
    [{ a: 1 }, { a: 1, b: 2 }, false],
    [[1, 2], [2, 1], false],
    [[], {}, false],
    [null, {}, false],
    [undefined, undefined, true],
    ['1', 1, false],
  ])('deepEqual(%j, %j) is %s', (a, b, want) => {
    expect(deepEqual(a, b)).toBe(want);
  });
});

describe('deepFreeze', () => {
  it('freezes nested objects and arrays and returns the same value', () => {
    const v = { a: { b: [{ c: 1 }] } };
    expect(deepFreeze(v)).toBe(v);
    expect(Object.isFrozen(v.a.b[0])).toBe(true);
    expect(Object.isFrozen(v.a.b)).toBe(true);
  });
});
