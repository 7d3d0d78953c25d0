import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { finished } from 'node:stream/promises';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceProxyMetricsListSchema } from '../../protocol/metrics.js';
import { HubMetrics } from '../metrics/prometheus.js';
import { UsageStore } from '../metrics/usage-store.js';
import { mockNodeObject, mockPodObject } from '../scheduler/testing.js';
import { MemoryStore } from '../store/memory-store.js';
import type { NewObject } from '../store/store.js';
import { batchBytes, registerMetricsRoutes } from './routes-metrics.js';

/**
 * `GET /metrics` content coding (issue 16): gzip when the request accepts it (Prometheus always
 * sends `Accept-Encoding: gzip`), identity otherwise, streamed either way with backpressure, and a
 * client that goes away mid-scrape releases the writer. Real HTTP on port 0 (TLS is the
 * integration test's business), the real HubMetrics writer over a MemoryStore.
 */
interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  raw: Buffer;
}

function get(port: number, acceptEncoding?: string): Promise<Got> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding };
    http
      .get({ host: '127.0.0.1', port, path: '/metrics', headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/**
 * Wraps a writer's chunks() to count what was rendered and whether the generator was released
 * (its `finally` ran): what a client that goes away must leave behind is nothing running.
 */
function instrument(chunks: () => AsyncGenerator<Buffer>): { chunks: () => AsyncGenerator<Buffer>; rendered: number; live: number } {
  const s = {
    rendered: 0,
    live: 0,
    async *chunks(): AsyncGenerator<Buffer> {
      s.live++;
      try {
        for await (const c of chunks()) {
          s.rendered += c.length;
          yield c;
        }
      } finally {
        s.live--;
      }
    },
  };
  return s;
}

async function serve(prometheus: Pick<HubMetrics, 'chunks' | 'contentType'>): Promise<{ app: FastifyInstance; port: number }> {
  const app = Fastify({ logger: false });
  // The route reads only chunks() and contentType from the writer.
  registerMetricsRoutes(app, {
    need: () => async () => undefined,
    store: new MemoryStore(),
    usage: new UsageStore({ now: () => 0 }),
    prometheus: prometheus as HubMetrics,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, port: (app.server.address() as AddressInfo).port };
}

const until = async (what: string, ok: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

/** A scrape whose reader goes away at its first byte. */
function leaveAfterFirstByte(port: number, ae: string | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false, headers: ae === undefined ? {} : { 'accept-encoding': ae } }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
  });
}

describe('GET /metrics content coding (a real writer, 300 nodes / 3,000 pods)', () => {
  let app: FastifyInstance;
  let port = 0;
  let w: ReturnType<typeof instrument>;
  let metrics: HubMetrics;

  beforeAll(async () => {
    const store = new MemoryStore();
    const usage = new UsageStore({ now: () => 1_000_000 });
    for (let n = 0; n < 300; n++) {
      store.create(mockNodeObject(`node-${n}`, { arch: 'arm64' }) as unknown as NewObject<'Node'>);
      const pods: Record<string, Record<string, [number, number]>> = {};
      for (let p = 0; p < 10; p++) {
        store.create(mockPodObject(`pod-${n}-${p}`, { nodeName: `node-${n}`, phase: 'Running' }) as unknown as NewObject<'Pod'>);
        pods[`pod-${n}-${p}`] = { app: [n + p / 10, 1_000_000 + p] };
      }
      usage.ingest({ node: `node-${n}`, usage: { cpuPercent: 25, memoryUsedBytes: 2 ** 30, at: 'x' }, pods, full: true });
    }
    // No process metrics: two scrapes of this writer are byte-for-byte the same.
    metrics = new HubMetrics({
      store,
      usage,
      queueDepths: () => ({ scheduling: 0 }),
      intakeBacklog: () => 0,
      mqttConnections: () => 300,
      processMetrics: false,
    });
    w = instrument(() => metrics.chunks());
    ({ app, port } = await serve({ chunks: () => w.chunks(), contentType: metrics.contentType }));
  });
  afterAll(async () => {
    await app?.close();
  });

  it('answers Accept-Encoding: gzip with a gzip body that decompresses byte for byte to the identity body', async () => {
    const identity = await get(port);
    const gzip = await get(port, 'gzip');
    expect(identity.status).toBe(200);
    expect(gzip.status).toBe(200);
    expect(identity.raw.length).toBeGreaterThan(500_000); // several of the writer's chunks
    expect(identity.raw.toString('utf8')).toBe(await metrics.text());
    expect(gzip.raw.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b])); // the gzip magic
    expect(gunzipSync(gzip.raw).equals(identity.raw)).toBe(true);
    // Label text compresses well even at level 1.
    expect(gzip.raw.length).toBeLessThan(identity.raw.length / 5);
  });

  it('sets Content-Encoding: gzip and Vary: Accept-Encoding on a gzip answer, and no Content-Encoding on identity', async () => {
    const gzip = await get(port, 'gzip, deflate, br');
    expect(gzip.headers['content-encoding']).toBe('gzip');
    expect(gzip.headers['vary']).toBe('Accept-Encoding');
    expect(gzip.headers['content-type']).toBe(metrics.contentType);
    expect(gzip.headers['content-length']).toBeUndefined(); // streamed (chunked)
    for (const ae of [undefined, 'identity', 'gzip;q=0', 'br', 'gzip;q=0, *']) {
      const r = await get(port, ae);
      expect(r.status, String(ae)).toBe(200);
      expect(r.headers['content-encoding'], String(ae)).toBeUndefined();
      expect(r.headers['vary'], String(ae)).toBe('Accept-Encoding');
      expect(r.headers['content-type'], String(ae)).toBe(metrics.contentType);
      expect(r.raw.toString('utf8').startsWith('# HELP'), String(ae)).toBe(true);
    }
    expect(w.live).toBe(0);
  });

  it.each([['gzip'], [undefined]])('releases the writer when the reader goes away mid-scrape (%s), and serves the next scrape whole', async (ae) => {
    await leaveAfterFirstByte(port, ae);
    await until('the writer to be released', () => w.live === 0);
    const next = await get(port, 'gzip');
    expect(next.status).toBe(200);
    expect(gunzipSync(next.raw).toString('utf8')).toBe(await metrics.text());
    expect(w.live).toBe(0);
  });
});

describe('GET /metrics backpressure (an incompressible 24 MiB body)', () => {
  // Random base64: gzip cannot shrink it below the socket buffers, so a reader that stops reading
  // must stop the writer; label text would fit in the kernel's buffers once compressed.
  const CHUNKS = 384;
  const CHUNK = 64 * 1024;
  let app: FastifyInstance;
  let port = 0;
  let w: ReturnType<typeof instrument>;

  beforeAll(async () => {
    w = instrument(async function* () {
      for (let i = 0; i < CHUNKS; i++) {
        yield Buffer.from(`${randomBytes((CHUNK * 3) / 4).toString('base64')}\n`.slice(0, CHUNK));
        await new Promise((r) => setImmediate(r));
      }
    });
    ({ app, port } = await serve({ chunks: () => w.chunks(), contentType: 'text/plain; version=0.0.4; charset=utf-8' }));
  });
  afterAll(async () => {
    await app?.close();
  });

  it.each([['gzip'], [undefined]])('a reader that goes away mid-scrape stops the rendering and releases the writer (%s)', async (ae) => {
    const before = w.rendered;
    await leaveAfterFirstByte(port, ae);
    await until('the writer to be released', () => w.live === 0);
    expect(w.rendered - before).toBeLessThan((CHUNKS * CHUNK) / 2);
  });

  it.each([['gzip'], [undefined]])(
    'a reader that stops reading pauses rendering; resumed, it gets the whole body (%s)',
    async (ae) => {
      const before = w.rendered;
      const got = await new Promise<Buffer>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/metrics', agent: false, headers: ae === undefined ? {} : { 'accept-encoding': ae } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve(Buffer.concat(chunks)));
            res.pause();
            // Wait until rendering stands still, then check it stopped well short of the body.
            let last = -1;
            const settle = async (): Promise<void> => {
              while (w.rendered !== last) {
                last = w.rendered;
                await new Promise((r) => setTimeout(r, 300));
              }
              expect(w.rendered - before).toBeLessThan((CHUNKS * CHUNK) / 2);
              expect(w.live).toBe(1);
              res.resume();
            };
            settle().catch(reject);
          })
          .on('error', reject);
      });
      const body = ae === 'gzip' ? gunzipSync(got) : got;
      expect(body.length).toBe(CHUNKS * CHUNK);
      expect(w.rendered - before).toBe(CHUNKS * CHUNK);
      await until('the writer to be released', () => w.live === 0);
    },
    30_000,
  );
});

describe('batchBytes', () => {
  it('joins small pieces into ≥ min-byte pieces, in order, and hands on the remainder at the end', async () => {
    const input = Array.from({ length: 25 }, (_, i) => Buffer.alloc(10_000, i));
    // Read in flowing mode ('data'), which hands on each piece as pushed: an async iterator reads in
    // paused mode, and on Node 24 its read() joins whatever pieces are buffered (70,000 + 40,000).
    const out: Buffer[] = [];
    const batched = Readable.from(input).pipe(batchBytes(64 * 1024));
    batched.on('data', (c: Buffer) => out.push(c));
    await finished(batched);
    expect(out.map((b) => b.length)).toEqual([70_000, 70_000, 70_000, 40_000]);
    expect(Buffer.concat(out).equals(Buffer.concat(input))).toBe(true);
  });
});

describe('GET /api/v1/metrics/services', () => {
  it("lists each node proxy's counters as last reported, sorted by service then node, or one service's", async () => {
    const usage = new UsageStore({ now: () => Date.UTC(2026, 11, 3, 12) });
    const u = { cpuPercent: 1, memoryUsedBytes: 1, at: 'x' };
    usage.ingest({ node: 'pi-2', usage: u, services: { web: { replays: 1 }, db: { replays: 5 } } });
    usage.ingest({ node: 'pi-1', usage: u, services: { web: { replays: 2 } } });
    const app = Fastify({ logger: false });
    registerMetricsRoutes(app, { need: () => async () => undefined, store: new MemoryStore(), usage, prometheus: {} as HubMetrics });
    const all = await app.inject({ method: 'GET', url: '/api/v1/metrics/services' });
    expect(all.statusCode).toBe(200);
    const at = '2026-12-03T12:00:00.000Z';
    expect(ServiceProxyMetricsListSchema.parse(all.json())).toEqual({
      items: [
        { service: 'db', node: 'pi-2', replays: 5, at },
        { service: 'web', node: 'pi-1', replays: 2, at },
        { service: 'web', node: 'pi-2', replays: 1, at },
      ],
    });
    const web = await app.inject({ method: 'GET', url: '/api/v1/metrics/services?service=web' });
    expect((web.json() as { items: Array<{ node: string }> }).items.map((i) => i.node)).toEqual(['pi-1', 'pi-2']);
    const none = await app.inject({ method: 'GET', url: '/api/v1/metrics/services?service=nope' });
    expect(none.json()).toEqual({ items: [] });
    await app.close();
  });
});
