import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../test/helpers/fake-clock.js';
import { DEFAULT_LEADER_TTL_S, Election, keepAlivePeriodMs } from './election.js';
import type { EtcdClient, TxnResult } from './etcd-client.js';

/**
 * The leader's lease timing without etcd (the protocol against real members is in
 * test/integration/etcd-client.test.ts and hub-etcd-fencing.test.ts). FakeClock.advance(ms) fires
 * every due timer in order without letting a promise settle in between: exactly what a blocked
 * event loop does to the keep-alive (sent late, its answer read after the stall) and the deadline.
 */

/** An etcd that grants every lease, lets the first campaign win and renews every keep-alive. */
function fakeEtcd(): { client: EtcdClient; keepAlives: number[]; clock: FakeClock } {
  const clock = new FakeClock();
  const keepAlives: number[] = [];
  const won: TxnResult = { succeeded: true, revision: 7, ranges: [] };
  const fake = {
    leaseGrant: (ttl: number) => Promise.resolve({ id: '1', ttl }),
    txn: () => Promise.resolve(won),
    leaseKeepAlive: () => {
      keepAlives.push(clock.now());
      return Promise.resolve(DEFAULT_LEADER_TTL_S);
    },
    leaseRevoke: () => Promise.resolve(),
  };
  // The Election calls only the methods above on a leader's path.
  return { client: fake as unknown as EtcdClient, keepAlives, clock };
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

async function leader(): Promise<{ e: Election; lost: string[]; clock: FakeClock; keepAlives: number[] }> {
  const { client, keepAlives, clock } = fakeEtcd();
  const lost: string[] = [];
  const e = new Election({ client, key: '/orchard/leader', id: 'a', clock, onElected: () => undefined, onLost: (why) => lost.push(why) });
  e.start();
  await settle();
  expect(e.status).toBe('leader');
  // Steady state: renewals answered at once.
  for (let i = 0; i < 5; i++) {
    clock.advance(1000);
    await settle();
  }
  return { e, lost, clock, keepAlives };
}

describe('Election lease timing', () => {
  it('defaults to a 6 s lease renewed every second (TTL/3 below 3 s)', async () => {
    expect(DEFAULT_LEADER_TTL_S).toBe(6);
    expect(keepAlivePeriodMs(6)).toBe(1000);
    expect(keepAlivePeriodMs(10)).toBe(1000);
    expect(keepAlivePeriodMs(2)).toBeCloseTo(667, 0);
    expect(keepAlivePeriodMs(0.3)).toBe(200);
    const { keepAlives } = await leader();
    expect(keepAlives.slice(1).map((t, i) => t - keepAlives[i]!)).toEqual([1000, 1000, 1000, 1000]);
  });

  it('a leader survives an event-loop stall of up to TTL − 1 s (4.9 s at the default), even one just before a renewal', async () => {
    const { e, lost, clock } = await leader();
    clock.advance(999); // the next keep-alive is 1 ms away
    clock.advance(4_900); // stalled: it goes out 4.9 s late, the deadline (last renewal sent + 6 s) not reached
    await settle();
    expect(lost).toEqual([]);
    expect(e.status).toBe('leader');
    // And it keeps leading afterwards (renewed from the late keep-alive).
    for (let i = 0; i < 5; i++) {
      clock.advance(1000);
      await settle();
    }
    expect(e.status).toBe('leader');
    await e.stop();
  });

  it('a leader stalled past TTL − 1 s steps down (its lease may expire in etcd before a renewal lands)', async () => {
    const { e, lost, clock } = await leader();
    clock.advance(999);
    clock.advance(5_100);
    await settle();
    expect(lost).toEqual(['lease not renewed in time']);
    expect(e.status).toBe('campaigning');
    await e.stop();
  });
});

describe('Election.unreachable', () => {
  it('says since when every lease request failed (grant, then keep-alives of a standby) and clears on the first answer', async () => {
    const clock = new FakeClock();
    let down = true;
    const refuse = (): Promise<never> => Promise.reject(new Error('etcd: no endpoint answered'));
    const other: TxnResult = { succeeded: false, revision: 9, ranges: [{ revision: 9, more: false, count: 1, kvs: [] }] };
    const fake = {
      leaseGrant: (ttl: number) => (down ? refuse() : Promise.resolve({ id: '2', ttl })),
      // Another hub leads: this one keeps its lease alive and watches.
      txn: () => (down ? refuse() : Promise.resolve(other)),
      leaseKeepAlive: () => (down ? refuse() : Promise.resolve(DEFAULT_LEADER_TTL_S)),
      leaseRevoke: () => Promise.resolve(),
      watch: () => ({ cancel: () => undefined }),
    };
    const e = new Election({
      client: fake as unknown as EtcdClient,
      key: '/orchard/leader',
      id: 'b',
      clock,
      onElected: () => undefined,
      onLost: () => undefined,
    });
    const t0 = clock.now();
    e.start();
    await settle();
    expect(e.unreachable()).toEqual({ since: t0, error: 'etcd: no endpoint answered' });
    down = false;
    clock.advance(1_000);
    await settle();
    await settle();
    expect(e.status).toBe('campaigning');
    expect(e.unreachable()).toBeUndefined();
    // The quorum goes while it waits: its keep-alives fail, from the first one on.
    down = true;
    const t1 = clock.now();
    clock.advance(1_000);
    await settle();
    clock.advance(500);
    await settle();
    expect(e.unreachable()).toEqual({ since: t1 + 1_000, error: 'etcd: no endpoint answered' });
    await e.stop();
  });
});
