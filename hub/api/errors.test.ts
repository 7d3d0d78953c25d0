import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { OrchardError } from '../../protocol/errors.js';
import { toOrchardError } from './errors.js';

const zodError = (): unknown => {
  try {
    z.object({ node: z.string() }).parse({ node: ['a', 'b'] });
  } catch (err) {
    return err;
  }
  throw new Error('expected a ZodError');
};

describe('toOrchardError: the one error → HTTP mapping', () => {
  it.each<[string, unknown, string, number]>([
    ['an OrchardError, kept', new OrchardError('ERR_NOT_FOUND', 'gone'), 'ERR_NOT_FOUND', 404],
    ['fastify body too large', Object.assign(new Error('big'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }), 'ERR_PAYLOAD_TOO_LARGE', 413],
    ['fastify bad media type', Object.assign(new Error('media'), { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', statusCode: 415 }), 'ERR_UNSUPPORTED_MEDIA', 415],
    ['another 4xx from fastify', Object.assign(new Error('bad'), { statusCode: 400 }), 'ERR_VALIDATION', 400],
    ['a stray ZodError (input that escaped parseOrThrow)', zodError(), 'ERR_VALIDATION', 400],
    ['any other Error', new Error('boom'), 'ERR_INTERNAL', 500],
    ['a thrown string', 'boom', 'ERR_INTERNAL', 500],
  ])('%s → %s %i', (_what, err, code, status) => {
    const oe = toOrchardError(err);
    expect(oe.code).toBe(code);
    expect(oe.status).toBe(status);
  });

  it("names the field path of a stray ZodError, not zod's JSON dump", () => {
    const oe = toOrchardError(zodError());
    expect(oe.details?.issues).toEqual([{ path: 'node', message: 'Invalid input: expected string, received array' }]);
    expect(oe.message).toBe('invalid request: node: Invalid input: expected string, received array');
  });
});
