import { describe, expect, it } from 'vitest';
import { HealthSchema } from '../../protocol/hubs.js';
import { degradedHealth } from './degraded.js';

describe('degradedHealth (/healthz of a leader on etcd)', () => {
  it('adds nothing while etcd takes writes', () => {
    expect(degradedHealth(undefined, 5_000)).toEqual({});
  });
  it("says degraded, since when and how many writes wait, while they fail, without etcd's error; the answer still parses as Health with ok", () => {
    const since = Date.UTC(2026, 11, 3, 6, 0, 0);
    const h = degradedHealth({ since, error: 'etcd: connect ECONNREFUSED 10.0.0.12:2379', unflushed: 3 }, since + 12_400);
    expect(h).toEqual({
      degraded: true,
      degradedReason: expect.stringMatching(/no write for 12 s .*quorum.*3 writes wait/),
      degradedSince: '2026-12-03T06:00:00.000Z',
    });
    // Anyone may ask /healthz: etcd's addresses stay in the log.
    expect(h.degradedReason).not.toMatch(/10\.0\.0\.12/);
    expect(HealthSchema.safeParse({ ok: true, role: 'leader', ...h }).success).toBe(true);
  });
});
