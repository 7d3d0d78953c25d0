import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { OrchardError } from '../../protocol/errors.js';
import { jsonBody } from './body.js';

const req = (body: unknown): FastifyRequest => ({ body }) as FastifyRequest;

describe('jsonBody', () => {
  it.each([
    ['an object', '{"a":1}', { a: 1 }],
    ['an array', '[1,2]', [1, 2]],
    ['a scalar', '42', 42],
    ['surrounding whitespace', '  \n{"a":"b"}\n ', { a: 'b' }],
    ['an empty body', '', {}],
    ['a blank body', ' \n\t', {}],
    ['no body (undefined)', undefined, {}],
    ['a body fastify did not keep as text', { a: 1 }, {}],
  ])('%s', (_name, body, want) => {
    expect(jsonBody(req(body))).toEqual(want);
  });

  it.each([
    ['truncated JSON', '{"a":'],
    ['YAML', 'a: 1'],
    ['a trailing comma', '{"a":1,}'],
  ])('%s is ERR_VALIDATION at the root', (_name, body) => {
    let err: unknown;
    try {
      jsonBody(req(body));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OrchardError);
    expect(err).toMatchObject({ code: 'ERR_VALIDATION', details: { issues: [{ path: '(root)', message: 'must be valid JSON' }] } });
    expect((err as Error).message).toMatch(/^request body is not valid JSON: /);
  });
});
