import { describe, expect, it } from 'vitest';
import { HealthSchema } from '../../protocol/hubs.js';
import { REFUSE_WRITES_AFTER_MS, degradedHealth, writeRefusal } from './degraded.js';

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

describe('writeRefusal (writes while etcd takes none)', () => {
  const since = Date.UTC(2026, 11, 6, 7, 0, 0);
  const failing = { since, error: 'etcd: connect ECONNREFUSED 10.0.0.12:2379', unflushed: 4 };
  it('lets writes through while etcd takes them, and for the first REFUSE_WRITES_AFTER_MS of failures (a passing failure: the next flush goes to another member)', () => {
    expect(writeRefusal(undefined, since)).toBeUndefined();
    expect(writeRefusal(failing, since)).toBeUndefined();
    expect(writeRefusal(failing, since + REFUSE_WRITES_AFTER_MS - 1)).toBeUndefined();
  });
  it("then refuses with ERR_STORE_UNAVAILABLE (503) naming how long and the likely causes, never etcd's error text", () => {
    const e = writeRefusal(failing, since + 7_400);
    expect(e?.code).toBe('ERR_STORE_UNAVAILABLE');
    expect(e?.status).toBe(503);
    expect(e?.message).toMatch(/none of this hub's writes for 7 s .*quorum.*refused and nothing changed; 4 earlier writes wait/);
    expect(e?.message).not.toMatch(/10\.0\.0\.12/);
    expect(e?.details).toEqual({ failingSince: '2026-12-06T07:00:00.000Z', unflushed: 4 });
  });
});
