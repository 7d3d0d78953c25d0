import type { FastifyRequest } from 'fastify';
import { OrchardError } from '../../protocol/errors.js';

/**
 * Request-body helpers shared by server.ts and the routes-*.ts files. A module of its own so
 * the route files do not import server.ts, which imports them (an import cycle).
 */

/** Parses a JSON request body (sent as text); an empty body is `{}`. */
export function jsonBody(req: FastifyRequest): unknown {
  const text = typeof req.body === 'string' ? req.body.trim() : '';
  if (text === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new OrchardError('ERR_VALIDATION', `request body is not valid JSON: ${(e as Error).message}`, {
      details: { issues: [{ path: '(root)', message: 'must be valid JSON' }] },
    });
  }
}
