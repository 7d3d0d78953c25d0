import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { NodeMetricsList, PodMetricsList } from '../../protocol/metrics.js';
import type { HubMetrics } from '../metrics/prometheus.js';
import { allNodeMetrics, allPodMetrics } from '../metrics/top.js';
import type { UsageStore } from '../metrics/usage-store.js';
import type { Operation } from '../security/authz.js';
import type { Store } from '../store/store.js';
import { parseQuery } from './request-parse.js';

/**
 * Metrics (issue 16): `GET /metrics` for Prometheus (role `scrape` and above: a scrape token reads
 * nothing else), and `GET /api/v1/metrics/{nodes,pods}` for `orchard top` and the dashboard
 * (viewer). Both are computed at request time; nothing is cached per request.
 */
export interface MetricsRoutesDeps {
  need: (op: Operation) => (req: FastifyRequest) => Promise<void>;
  store: Store;
  usage: UsageStore;
  prometheus: HubMetrics;
}

const flag = z
  .enum(['1', 'true', '0', 'false'])
  .optional()
  .transform((v) => v === '1' || v === 'true');

export function registerMetricsRoutes(app: FastifyInstance, d: MetricsRoutesDeps): void {
  app.get('/metrics', { preHandler: d.need('metrics.scrape') }, async (_req, reply) => {
    // Streamed: at 100,000 pods the body is ≈ 35 MiB. Fastify pipes the stream into the response,
    // so a slow reader pauses the writer ('drain'); Readable.from renders up to 16 chunks (1 MiB)
    // ahead while the socket drains (highWaterMark 1 measured no better). chunks() returns to the
    // event loop between chunks.
    return reply.type(d.prometheus.contentType).send(Readable.from(d.prometheus.chunks()));
  });
  app.get('/api/v1/metrics/nodes', { preHandler: d.need('metrics.read') }, async (req): Promise<NodeMetricsList> => {
    const q = parseQuery(z.object({ history: flag }), req);
    return { items: allNodeMetrics(d.store, d.usage, q.history) };
  });
  app.get('/api/v1/metrics/pods', { preHandler: d.need('metrics.read') }, async (req): Promise<PodMetricsList> => {
    const q = parseQuery(z.object({ node: z.string().max(253).optional(), history: flag }), req);
    return { items: allPodMetrics(d.store, d.usage, { history: q.history, ...(q.node !== undefined ? { node: q.node } : {}) }) };
  });
}
