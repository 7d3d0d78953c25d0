import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE, OrchardError, parseOrThrow } from './errors.js';

describe('error catalogue', () => {
  it('agrees with docs/errors.md (every code, its HTTP status)', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `(ERR_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.entries(ERROR_CATALOGUE).map(([k, v]) => [k, v.status])));
  });

  it('parseOrThrow names every failing path in the message and details', () => {
    const S = z.object({ a: z.number(), b: z.object({ c: z.string() }) });
    try {
      parseOrThrow(S, { a: 'x', b: { c: 1 } }, 'thing');
      expect.unreachable();
    } catch (e) {
      expect(OrchardError.is(e, 'ERR_VALIDATION')).toBe(true);
      const err = e as OrchardError;
      expect(err.message).toMatch(/^invalid thing: a: .+; b\.c: /);
      expect(err.details?.issues?.map((i) => i.path)).toEqual(['a', 'b.c']);
      expect(err.status).toBe(400);
      expect(err.toJSON().code).toBe('ERR_VALIDATION');
    }
  });

  it('wraps foreign errors without losing the cause', () => {
    const cause = new Error('disk on fire');
    const e = OrchardError.from(cause, 'ERR_STORE');
    expect(e.code).toBe('ERR_STORE');
    expect(e.cause).toBe(cause);
    expect(OrchardError.from(e)).toBe(e);
  });
});
