import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { parseOrThrow } from '../../protocol/errors.js';
import { NameSchema } from '../../protocol/manifest.js';
import type { RolloutOperations } from '../rollout/rollout-ops.js';
import type { Operation } from '../security/authz.js';
import { jsonBody } from './body.js';
import { parseParams } from './request-parse.js';

/**
 * `orchard rollout …` over HTTP:
 *   GET  /api/v1/deployments/:name/rollout/status    progress, per-pod state and image pulls (viewer)
 *   GET  /api/v1/deployments/:name/rollout/history   revisions with change causes (viewer)
 *   POST /api/v1/deployments/:name/rollout/undo      {toRevision?}   (operator)
 *   POST /api/v1/deployments/:name/rollout/{pause,resume,restart,promote}   (operator)
 */

export interface RolloutRouteDeps {
  rollout: RolloutOperations;
  need: (op: Operation) => (req: FastifyRequest) => Promise<void>;
}

const ParamsSchema = z.object({ name: NameSchema });
const UndoBodySchema = z.strictObject({ toRevision: z.number().int('must be an integer').min(1).optional() });

export function registerRolloutRoutes(app: FastifyInstance, deps: RolloutRouteDeps): void {
  const name = (req: FastifyRequest): string => parseParams(ParamsSchema, req).name;
  app.get('/api/v1/deployments/:name/rollout/status', { preHandler: deps.need('rollout.status') }, async (req) => deps.rollout.status(name(req)));
  app.get('/api/v1/deployments/:name/rollout/history', { preHandler: deps.need('rollout.history') }, async (req) => deps.rollout.history(name(req)));
  app.post('/api/v1/deployments/:name/rollout/undo', { preHandler: deps.need('rollout.undo') }, async (req) => {
    const body = parseOrThrow(UndoBodySchema, jsonBody(req), 'undo request');
    return deps.rollout.undo(name(req), body.toRevision);
  });
  app.post('/api/v1/deployments/:name/rollout/pause', { preHandler: deps.need('rollout.pause') }, async (req) => deps.rollout.setPaused(name(req), true));
  app.post('/api/v1/deployments/:name/rollout/resume', { preHandler: deps.need('rollout.resume') }, async (req) => deps.rollout.setPaused(name(req), false));
  app.post('/api/v1/deployments/:name/rollout/restart', { preHandler: deps.need('rollout.restart') }, async (req) => deps.rollout.restart(name(req)));
  app.post('/api/v1/deployments/:name/rollout/promote', { preHandler: deps.need('rollout.promote') }, async (req) => deps.rollout.promote(name(req)));
}
