import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Role } from '../../protocol/api.js';
import { parseOrThrow } from '../../protocol/errors.js';
import { LabelKeySchema, LabelsSchema, LabelValueSchema } from '../../protocol/manifest.js';
import type { Logger } from '../log.js';
import { NodeAdmin } from '../node-admin.js';
import type { Store } from '../store/store.js';
import { jsonBody } from './body.js';

/**
 * Node management (role operator): cordon, uncordon, drain, labels, taints — POST routes
 * under /api/v1/nodes/NAME/…, each answering with the node (drain: what it evicted/kept).
 */

export interface NodeRoutesDeps {
  need: (role: Role) => (req: FastifyRequest) => Promise<void>;
  store: Store;
  log: Logger;
  now?: () => Date;
}

const EffectSchema = z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']);

export const LabelEditSchema = z.strictObject({
  set: LabelsSchema.default({}),
  remove: z.array(LabelKeySchema).max(64).default([]),
});

export const TaintEditSchema = z.strictObject({
  add: z.array(z.strictObject({ key: LabelKeySchema, value: LabelValueSchema.optional(), effect: EffectSchema })).max(32).default([]),
  remove: z.array(z.strictObject({ key: LabelKeySchema, effect: EffectSchema.optional() })).max(32).default([]),
});

const ParamsSchema = z.object({ name: z.string().min(1).max(253) });

export function registerNodeRoutes(app: FastifyInstance, deps: NodeRoutesDeps): void {
  const admin = new NodeAdmin({ store: deps.store, log: deps.log, now: deps.now ?? (() => new Date()) });
  const nameOf = (req: FastifyRequest): string => parseOrThrow(ParamsSchema, req.params, 'path').name;
  const op = { preHandler: deps.need('operator') };

  app.post('/api/v1/nodes/:name/cordon', op, async (req) => admin.cordon(nameOf(req)));
  app.post('/api/v1/nodes/:name/uncordon', op, async (req) => admin.uncordon(nameOf(req)));
  app.post('/api/v1/nodes/:name/drain', op, async (req) => admin.drain(nameOf(req)));
  app.post('/api/v1/nodes/:name/labels', op, async (req) => {
    const body = parseOrThrow(LabelEditSchema, jsonBody(req), 'label edit');
    return admin.labels(nameOf(req), body.set, body.remove);
  });
  app.post('/api/v1/nodes/:name/taints', op, async (req) => {
    const body = parseOrThrow(TaintEditSchema, jsonBody(req), 'taint edit');
    return admin.taints(
      nameOf(req),
      body.add.map((t) => (t.value === undefined ? { key: t.key, effect: t.effect } : { key: t.key, value: t.value, effect: t.effect })),
      body.remove.map((r) => (r.effect === undefined ? { key: r.key } : { key: r.key, effect: r.effect })),
    );
  });
}
