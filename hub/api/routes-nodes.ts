import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { parseOrThrow } from '../../protocol/errors.js';
import { LabelKeySchema, LabelsSchema, LabelValueSchema } from '../../protocol/manifest.js';
import type { Logger } from '../log.js';
import type { Operation } from '../security/authz.js';
import { NodeAdmin } from '../node-admin.js';
import type { Store } from '../store/store.js';
import { jsonBody } from './body.js';
import { parseParams } from './request-parse.js';

/**
 * Node management (role operator): cordon, uncordon, drain, labels, taints — POST routes
 * under /api/v1/nodes/NAME/…, each answering with the node (drain: what it evicted/kept).
 */

export interface NodeRoutesDeps {
  need: (op: Operation) => (req: FastifyRequest) => Promise<void>;
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
  add: z
    .array(z.strictObject({ key: LabelKeySchema, value: LabelValueSchema.optional(), effect: EffectSchema }))
    .max(32)
    .default([]),
  remove: z
    .array(z.strictObject({ key: LabelKeySchema, effect: EffectSchema.optional() }))
    .max(32)
    .default([]),
});

const ParamsSchema = z.object({ name: z.string().min(1).max(253) });

export function registerNodeRoutes(app: FastifyInstance, deps: NodeRoutesDeps): void {
  const admin = new NodeAdmin({ store: deps.store, log: deps.log, now: deps.now ?? (() => new Date()) });
  const nameOf = (req: FastifyRequest): string => parseParams(ParamsSchema, req).name;

  app.post('/api/v1/nodes/:name/cordon', { preHandler: deps.need('node.cordon') }, async (req) => admin.cordon(nameOf(req)));
  app.post('/api/v1/nodes/:name/uncordon', { preHandler: deps.need('node.uncordon') }, async (req) => admin.uncordon(nameOf(req)));
  app.post('/api/v1/nodes/:name/drain', { preHandler: deps.need('node.drain') }, async (req) => admin.drain(nameOf(req)));
  app.post('/api/v1/nodes/:name/labels', { preHandler: deps.need('node.labels') }, async (req) => {
    const body = parseOrThrow(LabelEditSchema, jsonBody(req), 'label edit');
    return admin.labels(nameOf(req), body.set, body.remove);
  });
  app.post('/api/v1/nodes/:name/taints', { preHandler: deps.need('node.taints') }, async (req) => {
    const body = parseOrThrow(TaintEditSchema, jsonBody(req), 'taint edit');
    return admin.taints(
      nameOf(req),
      body.add.map((t) => (t.value === undefined ? { key: t.key, effect: t.effect } : { key: t.key, value: t.value, effect: t.effect })),
      body.remove.map((r) => (r.effect === undefined ? { key: r.key } : { key: r.key, effect: r.effect })),
    );
  });
}
