import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';

/**
 * Issue 13 item 8: `/api/v1/watch` streams end when their token is revoked or expires, one
 * token holds a bounded number of them, and a client that stops reading is cut off instead of
 * growing the hub's memory. Real hub, real HTTPS.
 */

interface Watch {
  status: number;
  /** Resolves when the stream ends (either side). */
  ended: Promise<void>;
  bytes(): number;
  text(): string;
  pause(): void;
  resume(): void;
  close(): void;
}

describe('watch streams: revocation, expiry, per-token cap, backpressure', () => {
  let t: TestHub;
  const MAX_PER_TOKEN = 2;
  const MAX_BUFFERED = 256 * 1024;

  beforeAll(async () => {
    t = await startTestHub({ watch: { maxPerToken: MAX_PER_TOKEN, maxBufferedBytes: MAX_BUFFERED, sweepMs: 200 } });
  });
  afterAll(async () => {
    await t.cleanup();
  });

  const openWatch = (token: string, opts: { paused?: boolean } = {}): Promise<Watch> =>
    new Promise((resolve, reject) => {
      const req = https.request(
        new URL('/api/v1/watch?kinds=ConfigMap', t.hub.apiUrl),
        { headers: { authorization: `Bearer ${token}` }, ca: t.hub.pki!.caPem, agent: false },
        (res) => {
          let bytes = 0;
          const chunks: Buffer[] = [];
          const ended = new Promise<void>((r) => {
            res.once('close', () => r());
            res.once('end', () => r());
            res.once('error', () => r());
          });
          res.on('data', (c: Buffer) => {
            bytes += c.length;
            if (chunks.length < 100) chunks.push(c);
          });
          if (opts.paused) res.pause();
          resolve({
            status: res.statusCode ?? 0,
            ended,
            bytes: () => bytes,
            text: () => Buffer.concat(chunks).toString('utf8'),
            pause: () => res.pause(),
            resume: () => res.resume(),
            close: () => req.destroy(),
          });
        },
      );
      req.on('error', reject);
      req.end();
    });

  const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
    Promise.race([p, new Promise<T>((_r, reject) => setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms))]);

  const apiToken = async (name: string, ttlSeconds?: number): Promise<{ token: string; id: string }> =>
    (await t.api('POST', '/api/v1/tokens', { role: 'viewer', name, ...(ttlSeconds ? { ttlSeconds } : {}) })).body as { token: string; id: string };

  it('closes the open watch streams of a revoked token at once', async () => {
    const tok = await apiToken('watch-revoke');
    const w = await openWatch(tok.token);
    expect(w.status).toBe(200);
    const r = await t.api('DELETE', `/api/v1/tokens/${tok.id}`);
    expect(r.body).toMatchObject({ revoked: true, watchStreamsClosed: 1 });
    await within(w.ended, 2_000, 'stream end after revoke');
  });

  it('closes the open watch streams of a token when it expires', async () => {
    const tok = await apiToken('watch-expire', 1);
    const w = await openWatch(tok.token);
    expect(w.status).toBe(200);
    await within(w.ended, 3_000, 'stream end after expiry (ttl 1 s)');
  });

  it(`refuses a token's watch stream beyond ${MAX_PER_TOKEN} with 429 ERR_WATCH_LIMIT; closing one frees a slot`, async () => {
    const tok = await apiToken('watch-cap');
    const open = [await openWatch(tok.token), await openWatch(tok.token)];
    expect(open.map((w) => w.status)).toEqual([200, 200]);
    const third = await t.api('GET', '/api/v1/watch', undefined, tok.token);
    expect(third.status).toBe(429);
    expect((third.body as { code: string }).code).toBe('ERR_WATCH_LIMIT');
    // Another token is not affected by this one's streams.
    const other = await openWatch((await apiToken('watch-other')).token);
    expect(other.status).toBe(200);
    other.close();
    open[0]!.close();
    await open[0]!.ended;
    let again: Watch | undefined;
    for (let i = 0; i < 50 && again?.status !== 200; i++) {
      again?.close();
      again = await openWatch(tok.token);
      if (again.status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    expect(again!.status).toBe(200);
    again!.close();
    open[1]!.close();
  });

  it('cuts off a client that stops reading once its queued bytes pass the bound', async () => {
    const tok = await apiToken('watch-slow');
    const w = await openWatch(tok.token, { paused: true });
    expect(w.status).toBe(200);
    // ~24 MiB of events: far beyond the bound plus what the kernel's socket buffers absorb.
    const big = 'x'.repeat(800 * 1024);
    let sent = 0;
    for (let i = 0; i < 30; i++) {
      const r = await t.api(
        'POST',
        '/api/v1/apply',
        `apiVersion: orchard/v1\nkind: ConfigMap\nmetadata: { name: flood-${i % 3} }\ndata: { blob: "${big}${i}" }\n`,
      );
      expect(r.status, r.text).toBe(200);
      sent += big.length;
    }
    // The reader wakes up: it gets what was queued before the cut, then the end of the stream.
    w.resume();
    await within(w.ended, 10_000, 'stream end for the slow reader');
    expect(w.bytes()).toBeLessThan(sent);
  }, 60_000);
});
