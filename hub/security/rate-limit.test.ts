import { describe, it, expect } from 'vitest';
import { LoginLimiter, RateLimiter, apiTokenIdentity, joinTokenIdentity, nodeIdentity, sourceKey } from './rate-limit.js';

function clock(start = 0): { now: () => Date; advance: (ms: number) => void } {
  let t = start;
  return { now: () => new Date(t), advance: (ms) => void (t += ms) };
}

describe('RateLimiter', () => {
  it('locks a source after 10 failures in a minute, for 60 s', () => {
    const c = clock();
    const rl = new RateLimiter({ now: c.now });
    for (let i = 0; i < 9; i++) {
      expect(rl.recordFailure('10.0.0.1').allowed).toBe(true);
      c.advance(1000);
    }
    expect(rl.recordFailure('10.0.0.1')).toEqual({ allowed: false, retryAfterMs: 60_000 });
    c.advance(59_999);
    expect(rl.check('10.0.0.1')).toEqual({ allowed: false, retryAfterMs: 1 });
    c.advance(1);
    expect(rl.check('10.0.0.1')).toEqual({ allowed: true });
    // the count starts afresh after a lock
    expect(rl.recordFailure('10.0.0.1').allowed).toBe(true);
  });

  it('forgets failures older than the window', () => {
    const c = clock();
    const rl = new RateLimiter({ now: c.now });
    for (let i = 0; i < 9; i++) rl.recordFailure('a');
    c.advance(60_001);
    expect(rl.recordFailure('a').allowed).toBe(true);
    for (let i = 0; i < 8; i++) rl.recordFailure('a');
    expect(rl.recordFailure('a').allowed).toBe(false);
  });

  it('keeps sources apart, and a success resets nothing', () => {
    const c = clock();
    const rl = new RateLimiter({ now: c.now, maxFailures: 3 });
    rl.recordFailure('a');
    rl.recordFailure('a');
    rl.recordSuccess('a');
    rl.recordSuccess('b');
    expect(rl.check('b').allowed).toBe(true);
    expect(rl.recordFailure('a').allowed).toBe(false);
    expect(rl.check('b').allowed).toBe(true);
  });

  it('tracks a bounded number of sources, keeping locked ones over stale ones', () => {
    const c = clock();
    const rl = new RateLimiter({ now: c.now, maxFailures: 2, maxSources: 3 });
    rl.recordFailure('locked');
    rl.recordFailure('locked');
    c.advance(1_000); // still locked
    for (let i = 0; i < 50; i++) rl.recordFailure(`s${i}`);
    expect(rl.size).toBeLessThanOrEqual(3);
    expect(rl.check('locked').allowed).toBe(false);
  });

  it.each([
    ['192.0.2.7', '192.0.2.7'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['2001:db8:1:2:aaaa::1', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:bbbb:cccc:dddd:eeee', '2001:db8:1:2::/64'],
    ['2001:0db8::5', '2001:db8:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    [undefined, 'unknown'],
  ])('keys %s as %s', (addr, key) => {
    expect(sourceKey(addr)).toBe(key);
  });
});

describe('LoginLimiter', () => {
  it("locks one identity from one source after 10 failures, leaving that source's other identities and other sources alone", () => {
    const c = clock();
    const rl = new LoginLimiter({ now: c.now });
    for (let i = 0; i < 9; i++) expect(rl.recordFailure('10.0.0.1', 'node:pi-1').allowed).toBe(true);
    expect(rl.recordFailure('10.0.0.1', 'node:pi-1')).toEqual({ allowed: false, retryAfterMs: 60_000 });
    expect(rl.check('10.0.0.1', 'node:pi-1').allowed).toBe(false);
    expect(rl.check('10.0.0.1', 'node:pi-2').allowed).toBe(true);
    expect(rl.check('10.0.0.1', 'api:0123456789ab').allowed).toBe(true);
    expect(rl.check('10.0.0.2', 'node:pi-1').allowed).toBe(true);
    c.advance(60_000);
    expect(rl.check('10.0.0.1', 'node:pi-1').allowed).toBe(true);
  });

  it('locks the whole source at the per-source ceiling (100 a minute by default), whatever identities it claims', () => {
    const c = clock();
    const rl = new LoginLimiter({ now: c.now });
    expect(rl.maxSourceFailures).toBe(100);
    for (let i = 0; i < 99; i++) expect(rl.recordFailure('10.0.0.1', `node:guess-${i}`).allowed).toBe(true);
    expect(rl.recordFailure('10.0.0.1', 'node:guess-99').allowed).toBe(false);
    expect(rl.check('10.0.0.1', 'api:0123456789ab')).toEqual({ allowed: false, retryAfterMs: 60_000 });
    expect(rl.check('10.0.0.2', 'api:0123456789ab').allowed).toBe(true);
  });

  it('fail() counts the failure and answers it as locked only when the pair or the source was locked before it', () => {
    const c = clock();
    const rl = new LoginLimiter({ now: c.now, maxFailures: 3, maxSourceFailures: 5 });
    // The failure that reaches the limit is answered as a plain failure; the next ones as locked.
    expect(rl.fail('10.0.0.1', 'node:pi-7').allowed).toBe(true);
    expect(rl.fail('10.0.0.1', 'node:pi-7').allowed).toBe(true);
    expect(rl.fail('10.0.0.1', 'node:pi-7').allowed).toBe(true);
    expect(rl.fail('10.0.0.1', 'node:pi-7')).toEqual({ allowed: false, retryAfterMs: 60_000 });
    expect(rl.fail('10.0.0.1', 'node:pi-8').allowed).toBe(true);
    // 5 failures from the source: locked as a whole, so a fresh identity's failure is locked too.
    expect(rl.fail('10.0.0.1', 'node:pi-9')).toEqual({ allowed: false, retryAfterMs: 60_000 });
    // Failures while locked still count: the one at 0 s and two at 30 s lock pi-7 again until 90 s.
    c.advance(30_000);
    rl.fail('10.0.0.1', 'node:pi-7');
    rl.fail('10.0.0.1', 'node:pi-7');
    c.advance(31_000);
    expect(rl.check('10.0.0.1', 'node:pi-7')).toEqual({ allowed: false, retryAfterMs: 29_000 });
    expect(rl.check('10.0.0.1', 'node:pi-8').allowed).toBe(true); // the source lock (until 60 s) is over
  });

  it('names identities by the public part of a credential only', () => {
    expect(apiTokenIdentity(`orc_0123456789ab.${'s'.repeat(32)}`)).toBe('api:0123456789ab');
    expect(apiTokenIdentity('garbage')).toBe('api:?');
    expect(nodeIdentity('pi-1')).toBe('node:pi-1');
    expect(nodeIdentity('Not A Name')).toBe('node:?');
    expect(nodeIdentity(undefined)).toBe('node:?');
    expect(joinTokenIdentity(`K10${'a'.repeat(64)}::abc123.${'s'.repeat(32)}`)).toBe('join:abc123');
    expect(joinTokenIdentity('K10x')).toBe('join:?');
  });
});
