import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { OrchardError } from '../../protocol/errors.js';
import { parseParams, parseQuery } from './request-parse.js';

const Query = z.object({ node: z.string().max(5).optional(), kinds: z.string().optional() });
const Params = z.object({ name: z.string().min(1).max(5) });

function failure(fn: () => unknown): { code: string; status: number; message: string; paths: string[] } {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof OrchardError)) throw err;
    return { code: err.code, status: err.status, message: err.message, paths: (err.details?.issues ?? []).map((i) => i.path) };
  }
  throw new Error('expected a validation error');
}

describe('parseQuery', () => {
  it.each<[string, unknown, Record<string, unknown>]>([
    ['no parameters', {}, {}],
    ['one parameter', { node: 'a' }, { node: 'a' }],
    ['unknown parameters, dropped', { node: 'a', limit: 'abc' }, { node: 'a' }],
  ])('accepts %s', (_what, query, want) => {
    expect(parseQuery(Query, { query })).toEqual(want);
  });

  it.each<[string, unknown, string[], RegExp]>([
    ['a repeated parameter', { node: ['a', 'b'] }, ['query.node'], /^invalid query: query\.node: .*expected string, received array/],
    ['an over-long parameter', { node: 'abcdefgh' }, ['query.node'], /query\.node: .*<=5/],
    ['two bad parameters', { node: ['a'], kinds: ['b'] }, ['query.node', 'query.kinds'], /query\.node: .*; query\.kinds: /],
    ['no query object at all', 'nope', ['query'], /query: /],
  ])('refuses %s with ERR_VALIDATION (400) naming the field', (_what, query, paths, message) => {
    const f = failure(() => parseQuery(Query, { query }));
    expect(f).toMatchObject({ code: 'ERR_VALIDATION', status: 400, paths });
    expect(f.message).toMatch(message);
  });
});

describe('parseParams', () => {
  it('accepts good parameters', () => {
    expect(parseParams(Params, { params: { name: 'web' } })).toEqual({ name: 'web' });
  });

  it.each<[string, unknown, string[]]>([
    ['an empty name', { name: '' }, ['name']],
    ['an over-long name', { name: 'abcdefgh' }, ['name']],
    ['a missing name', {}, ['name']],
  ])('refuses %s with ERR_VALIDATION naming the bare parameter, as before', (_what, params, paths) => {
    const f = failure(() => parseParams(Params, { params }));
    expect(f).toMatchObject({ code: 'ERR_VALIDATION', status: 400, paths });
    expect(f.message).toMatch(/^invalid path: name: /);
  });
});
