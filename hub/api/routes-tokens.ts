import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { OrchardError } from '../../protocol/errors.js';
import type { Operation } from '../security/authz.js';
import { parseParams } from './request-parse.js';

export interface TokenRevocation {
  revoked: boolean;
  kind?: 'join' | 'api';
  /** Live MQTT sessions that were authenticated with the revoked API token and are now closed. */
  disconnected: number;
  /** Open `/api/v1/watch` streams of the revoked API token, now closed. */
  watchStreamsClosed?: number;
}

export interface TokenRoutesDeps {
  need: (op: Operation) => (req: FastifyRequest) => Promise<void>;
  /** Revokes the join or API token with this id; API token sessions on the broker are closed too. */
  revokeToken: (id: string) => TokenRevocation;
}

const TokenIdSchema = z.strictObject({ id: z.string().regex(/^[0-9a-f]{12}$/, 'must be a token id (12 hex characters, as `orchard token list` shows)') });

/**
 * `DELETE /api/v1/tokens/:id` (admin): revocation takes effect at once — the next HTTP request with
 * an API token fails, its MQTT sessions are closed, and a join token can join no more nodes (nodes
 * that already joined keep their own credentials; revoke those with `orchard node delete`).
 */
export function registerTokenRoutes(app: FastifyInstance, deps: TokenRoutesDeps): void {
  app.delete('/api/v1/tokens/:id', { preHandler: deps.need('token.revoke') }, async (req) => {
    const { id } = parseParams(TokenIdSchema, req);
    const r = deps.revokeToken(id);
    if (!r.revoked) throw new OrchardError('ERR_NOT_FOUND', `no join or API token with id ${id}`);
    return {
      id,
      kind: r.kind,
      revoked: true,
      disconnected: r.disconnected,
      ...(r.watchStreamsClosed !== undefined ? { watchStreamsClosed: r.watchStreamsClosed } : {}),
    };
  });
}
