import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import { createGzip } from 'node:zlib';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { NodeMetricsList, PodMetricsList, ServiceProxyMetricsList } from '../../protocol/metrics.js';
import type { HubMetrics } from '../metrics/prometheus.js';
import { allNodeMetrics, allPodMetrics } from '../metrics/top.js';
import type { UsageStore } from '../metrics/usage-store.js';
import type { Operation } from '../security/authz.js';
import type { Store } from '../store/store.js';
import { acceptsGzip } from './accept-encoding.js';
import { parseQuery } from './request-parse.js';

/**
 * Metrics (issue 16): `GET /metrics` for Prometheus (role `scrape` and above: a scrape token reads
 * nothing else), `GET /api/v1/metrics/{nodes,pods}` for `orchard top` and the dashboard, and
 * `GET /api/v1/metrics/services` (each node's service proxy counters, issue 15) for
 * `orchard describe service` (viewer). All computed at request time; nothing is cached per request.
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

/** Fastest zlib level: the body is repetitive label text, so level 1 already gets most of the ratio. */
const GZIP_LEVEL = 1;
/**
 * zlib's output buffer: 256 KiB (its default is 16 KiB). A 1 MiB chunk of the body deflates to
 * ≈ 80-100 KiB at level 1: with 64 KiB buffers that can take two thread-pool round trips (two
 * turns of a busy event loop) per chunk, with 256 KiB one.
 */
const GZIP_CHUNK = 256 * 1024;

/**
 * Joins zlib's output into ≥ 64 KiB pieces before the socket: at level 1 zlib can hand on a few
 * KiB at a time (a flush, a small chunk), and each piece would be its own TLS write. Holds < 64 KiB; a
 * Transform, so backpressure passes through it.
 */
export function batchBytes(min = 64 * 1024): Transform {
  let parts: Buffer[] = [];
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
      parts.push(chunk);
      size += chunk.length;
      if (size >= min) {
        const out = Buffer.concat(parts, size);
        parts = [];
        size = 0;
        done(null, out);
      } else done();
    },
    flush(done: TransformCallback): void {
      done(null, size > 0 ? Buffer.concat(parts, size) : undefined);
    },
  });
}

export function registerMetricsRoutes(app: FastifyInstance, d: MetricsRoutesDeps): void {
  app.get('/metrics', { preHandler: d.need('metrics.scrape') }, async (req, reply) => {
    // Streamed: at 100,000 pods the body is ≈ 35 MiB. Fastify pipes the stream into the response,
    // so a slow reader pauses the writer ('drain'); Readable.from (highWaterMark 1) renders a chunk
    // or two (of 1 MiB, BODY_CHUNK_BYTES) ahead while the socket drains, and zlib holds about as much.
    // chunks() returns to the event loop between chunks.
    const body = Readable.from(d.prometheus.chunks());
    reply.type(d.prometheus.contentType).header('vary', 'Accept-Encoding');
    if (!acceptsGzip(req.headers['accept-encoding'])) return reply.send(body);
    // Prometheus always asks for gzip. zlib compresses on the libuv threadpool, off this event loop,
    // and the body shrinks 10–16× before TLS (benchmarks.md). Backpressure holds end to end: the
    // socket pauses the batcher, then gzip, whose full buffers pause the Readable, which stops
    // pulling chunks(). When the client goes away Fastify destroys the last stream, and pipeline destroys
    // the rest, which returns the generator: nothing keeps rendering or holds the zlib handle.
    // Errors reach Fastify through the last stream (it ends the response); nothing to do here.
    const gz = pipeline(body, createGzip({ level: GZIP_LEVEL, chunkSize: GZIP_CHUNK }), batchBytes(), () => undefined);
    return reply.header('content-encoding', 'gzip').send(gz);
  });
  app.get('/api/v1/metrics/nodes', { preHandler: d.need('metrics.read') }, async (req): Promise<NodeMetricsList> => {
    const q = parseQuery(z.object({ history: flag }), req);
    return { items: allNodeMetrics(d.store, d.usage, q.history) };
  });
  app.get('/api/v1/metrics/pods', { preHandler: d.need('metrics.read') }, async (req): Promise<PodMetricsList> => {
    const q = parseQuery(z.object({ node: z.string().max(253).optional(), history: flag }), req);
    return { items: allPodMetrics(d.store, d.usage, { history: q.history, ...(q.node !== undefined ? { node: q.node } : {}) }) };
  });
  app.get('/api/v1/metrics/services', { preHandler: d.need('metrics.read') }, async (req): Promise<ServiceProxyMetricsList> => {
    const q = parseQuery(z.object({ service: z.string().max(253).optional() }), req);
    const items: ServiceProxyMetricsList['items'] = [];
    for (const c of d.usage.serviceCounters(q.service)) items.push({ service: c.service, node: c.node, replays: c.replays, at: new Date(c.at).toISOString() });
    items.sort((a, b) => (a.service === b.service ? (a.node < b.node ? -1 : 1) : a.service < b.service ? -1 : 1));
    return { items };
  });
}
