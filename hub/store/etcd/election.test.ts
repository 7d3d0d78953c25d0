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

/** A candidate for `/orchard/leader` on a fake client (only the methods its path calls). */
const candidate = (fake: object, clock: FakeClock, id: string, onLost: (why: string) => void = () => undefined): Election =>
  new Election({ client: fake as unknown as EtcdClient, key: '/orchard/leader', id, clock, onElected: () => undefined, onLost });

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
    const e = candidate(fake, clock, 'b');
    const t0 = clock.now();
    e.start();
    await settle();
    // Failing, but not yet for a whole TTL: not said.
    expect(e.unreachable()).toBeUndefined();
    for (let i = 0; i < DEFAULT_LEADER_TTL_S; i++) {
      clock.advance(1_000);
      await settle();
    }
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
    for (let i = 0; i <= DEFAULT_LEADER_TTL_S * 2; i++) {
      clock.advance(500);
      await settle();
    }
    expect(e.unreachable()).toEqual({ since: t1 + 1_000, error: 'etcd: no endpoint answered' });
    await e.stop();
  });
});

describe('Election: a leader watches its own key', () => {
  type OnEvents = (events: Array<{ type: 'PUT' | 'DELETE'; kv: { key: string; createRevision: number; lease: string } }>) => void;
  function leaderWithWatch(rangeKv: () => { createRevision: number; lease: string } | undefined, rangeFails = () => false) {
    const clock = new FakeClock();
    const watches: Array<{ from: number; onEvents: OnEvents; onEnd: () => void; cancelled: boolean }> = [];
    const fake = {
      leaseGrant: (ttl: number) => Promise.resolve({ id: '1', ttl }),
      txn: () => Promise.resolve({ succeeded: true, revision: 7, ranges: [] } as TxnResult),
      leaseKeepAlive: () => Promise.resolve(DEFAULT_LEADER_TTL_S),
      leaseRevoke: () => Promise.resolve(),
      range: () =>
        rangeFails()
          ? Promise.reject(new Error('etcd: no endpoint answered'))
          : Promise.resolve({ revision: 20, more: false, count: 1, kvs: rangeKv() ? [rangeKv()] : [] }),
      watch: (_key: string, o: { startRevision: number }, onEvents: OnEvents, onEnd: () => void) => {
        const w = { from: o.startRevision, onEvents, onEnd, cancelled: false };
        watches.push(w);
        return { cancel: () => void (w.cancelled = true), ready: Promise.resolve() };
      },
    };
    const lost: string[] = [];
    const e = candidate(fake, clock, 'a', (why) => lost.push(why));
    return { e, lost, clock, watches };
  }

  it('steps down when its key is deleted (an operator forcing a failover) although its lease renews', async () => {
    const { e, lost, watches } = leaderWithWatch(() => ({ createRevision: 7, lease: '1' }));
    e.start();
    await settle();
    expect(e.status).toBe('leader');
    expect(watches.map((w) => w.from)).toEqual([8]);
    // Its own re-put (same create revision) changes nothing.
    watches[0]!.onEvents([{ type: 'PUT', kv: { key: '/orchard/leader', createRevision: 7, lease: '1' } }]);
    expect(lost).toEqual([]);
    watches[0]!.onEvents([{ type: 'DELETE', kv: { key: '/orchard/leader', createRevision: 0, lease: '0' } }]);
    expect(lost).toEqual(['the leader key was deleted in etcd']);
    expect(e.status).toBe('campaigning');
    expect(watches[0]!.cancelled).toBe(true);
    await e.stop();
  });

  it('steps down when another candidate holds the key', async () => {
    const { e, lost, watches } = leaderWithWatch(() => ({ createRevision: 7, lease: '1' }));
    e.start();
    await settle();
    watches[0]!.onEvents([{ type: 'PUT', kv: { key: '/orchard/leader', createRevision: 12, lease: '5' } }]);
    expect(lost).toEqual(['another candidate holds the leader key']);
    await e.stop();
  });

  it('a watch that ended is replaced after a look at the key: still its own, it watches on; gone meanwhile, it steps down', async () => {
    let kv: { createRevision: number; lease: string } | undefined = { createRevision: 7, lease: '1' };
    const { e, lost, clock, watches } = leaderWithWatch(() => kv);
    e.start();
    await settle();
    watches[0]!.onEnd();
    clock.advance(1_000);
    await settle();
    expect(watches.map((w) => w.from)).toEqual([8, 21]);
    expect(lost).toEqual([]);
    kv = undefined;
    watches[1]!.onEnd();
    clock.advance(1_000);
    await settle();
    expect(lost).toEqual(['the leader key was deleted in etcd']);
    await e.stop();
  });
  it('steps down when the key is overwritten without its lease (a plain `etcdctl put`), which keeps the create revision', async () => {
    const { e, lost, watches } = leaderWithWatch(() => ({ createRevision: 7, lease: '1' }));
    e.start();
    await settle();
    watches[0]!.onEvents([{ type: 'PUT', kv: { key: '/orchard/leader', createRevision: 7, lease: '0' } }]);
    expect(lost).toEqual(["the leader key was overwritten in etcd (not under this leader's lease)"]);
    await e.stop();
  });

  it('a look at the key that fails after the candidate stopped opens no watch', async () => {
    const { e, clock, watches } = leaderWithWatch(
      () => ({ createRevision: 7, lease: '1' }),
      () => true,
    );
    e.start();
    await settle();
    watches[0]!.onEnd();
    clock.advance(1_000); // the range goes out (and will fail)…
    await e.stop(); // …while the candidate stops
    await settle();
    await settle();
    expect(watches).toHaveLength(1);
  });
});
