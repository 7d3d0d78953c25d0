import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { parseOrThrow } from '../../protocol/errors.js';

/**
 * Query strings and path parameters are parsed the way bodies are (protocol/errors.ts
 * parseOrThrow): a failure is ERR_VALIDATION (400) naming each field and its rule, never a bare
 * ZodError. Query fields are named `query.<field>` (`?node=a&node=b` → `query.node: Invalid
 * input: expected string, received array`); path parameters keep their bare names (`name`, `id`),
 * as they always had.
 */

export function parseQuery<S extends z.ZodType>(schema: S, req: Pick<FastifyRequest, 'query'>): z.infer<S> {
  return parseOrThrow(schema, req.query, 'query', 'query');
}

export function parseParams<S extends z.ZodType>(schema: S, req: Pick<FastifyRequest, 'params'>): z.infer<S> {
  return parseOrThrow(schema, req.params, 'path');
}
