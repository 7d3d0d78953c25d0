import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { GetArgsSchema, type WhoAmI } from '../../protocol/api.js';
import { OrchardError } from '../../protocol/errors.js';
import type { Operations } from '../operations.js';
import { OPERATIONS, allowed, type Operation } from '../security/authz.js';
import { parseParams, parseQuery } from './request-parse.js';

/**
 * The object reads of the web API: `GET /api/v1/whoami`, `GET /api/v1/:plural` (list, with
 * `labelSelector`, `involvedObject` for events, `node` for pods) and `GET /api/v1/:plural/:name`.
 * Registered by the leader's API (server.ts) and by a standby's read port
 * (hub/ha/standby-server.ts) on its read-only copy of the store, so both give the same bodies:
 * Operations does the kind lookup, the event order and the Secret redaction for both.
 */
export interface ObjectReadRoutesDeps {
  need: (op: Operation) => (req: FastifyRequest) => Promise<void>;
  ops: Pick<Operations, 'list' | 'get'>;
}

export function registerObjectReadRoutes(app: FastifyInstance, deps: ObjectReadRoutesDeps): void {
  // The caller's own token (static path: wins over /api/v1/:plural).
  app.get('/api/v1/whoami', { preHandler: deps.need('whoami') }, async (req): Promise<WhoAmI> => {
    const p = req.principal!;
    return { name: p.name, ...(p.id !== undefined ? { id: p.id } : {}), role: p.role, operations: OPERATIONS.filter((op) => allowed(p.role, op)) };
  });
  app.get('/api/v1/:plural', { preHandler: deps.need('list') }, async (req) => {
    const { plural } = req.params as { plural: string };
    const q = parseQuery(
      z.object({ labelSelector: z.string().max(1024).optional(), involvedObject: z.string().max(300).optional(), node: z.string().max(253).optional() }),
      req,
    );
    return deps.ops.list(plural, {
      ...(q.labelSelector ? { labelSelector: parseSelector(q.labelSelector) } : {}),
      ...(q.involvedObject ? { involvedObject: q.involvedObject } : {}),
      ...(q.node ? { nodeName: q.node } : {}),
    });
  });
  app.get('/api/v1/:plural/:name', { preHandler: deps.need('get') }, async (req) => {
    const { plural, name } = parseParams(GetArgsSchema.extend({ plural: z.string() }).omit({ kind: true }), req) as { plural: string; name: string };
    return deps.ops.get(plural, name);
  });
}

/** `a=b,c=d` → {a:'b', c:'d'}. */
export function parseSelector(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(',')) {
    const [k, v] = part.split('=');
    if (!k || v === undefined)
      throw new OrchardError('ERR_VALIDATION', `labelSelector "${s}" must look like key=value,key2=value2`, {
        details: { issues: [{ path: 'labelSelector', message: 'must be key=value pairs separated by commas' }] },
      });
    out[k.trim()] = v.trim();
  }
  return out;
}
