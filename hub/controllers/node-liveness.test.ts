import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { silentLogger } from '../log.js';
import { isNodeReady as isReady } from '../objects/node.js';
import { MemoryStore } from '../store/memory-store.js';
import { mockNode } from '../store/store-contract.js';
import { mockNodeObject } from '../scheduler/testing.js';
import { NodeLiveness, PERSISTED_HEARTBEATS_PER_S, readyCondition } from './node-liveness.js';

/**
 * The sweep marks silent nodes NotReady a turn's worth at a time (issue 19): at 10,000 nodes on
 * etcd a new leader's sweep found 7,700 agents not back yet, marked them all in one turn of the
 * event loop (a store transaction each, with their pods' status), stalled for over 40 s and lost
 * its 15 s lease.
 */
describe('NodeLiveness sweep', () => {
  function fleet(count: number, maxMarksPerTurn?: number) {
    const clock = new FakeClock(Date.parse('2026-01-01T00:00:00Z'));
    const now = (): Date => new Date(clock.now());
    const store = new MemoryStore({ now });
    const names = Array.from({ length: count }, (_, i) => `n${i}`);
    for (const name of names) {
      const n = mockNode(name);
      const ts = now().toISOString();
      store.create({ ...n, status: { conditions: [readyCondition(true, ts)] } });
    }
    const liveness = new NodeLiveness({
      store,
      log: silentLogger,
      now,
      clock,
      heartbeatGraceMs: 40_000,
      ...(maxMarksPerTurn !== undefined ? { maxMarksPerTurn } : {}),
    });
    for (const name of names) liveness.reported(name);
    const ready = (): number => store.list('Node').filter(isReady).length;
    return { clock, store, liveness, ready };
  }

  it('marks at most 100 silent nodes per turn, the rest in later turns', () => {
    const { clock, liveness, ready } = fleet(250);
    clock.advance(41_000); // no timer armed (start() not called): only time passes
    liveness.sweep();
    expect(ready()).toBe(150);
    clock.advance(0); // the next turns
    expect(ready()).toBe(0);
  });

  it('a node heard between two turns stays Ready', () => {
    const { clock, store, liveness, ready } = fleet(5, 2);
    clock.advance(41_000);
    liveness.sweep();
    expect(ready()).toBe(3);
    liveness.reported('n4'); // the last one in sweep order reports before its turn
    clock.advance(0);
    expect(ready()).toBe(1);
    expect(isReady(store.get('Node', 'n4')!)).toBe(true);
  });

  it('stop() drops the marks still to do', () => {
    const { clock, liveness, ready } = fleet(5, 2);
    clock.advance(41_000);
    liveness.sweep();
    liveness.stop();
    clock.advance(0);
    expect(ready()).toBe(3);
  });
});

const T0 = Date.parse('2026-01-01T00:00:00Z');

function world(nodes: number, persistHeartbeatEveryMs?: number) {
  let t = T0;
  const now = (): Date => new Date(t);
  const store = new MemoryStore({ now });
  store.transaction(() => {
    for (let i = 0; i < nodes; i++) store.create(mockNodeObject(`n${i}`));
  });
  const liveness = new NodeLiveness({
    store,
    log: silentLogger,
    now,
    clock: new FakeClock(T0),
    ...(persistHeartbeatEveryMs === undefined ? {} : { persistHeartbeatEveryMs }),
  });
  for (let i = 0; i < nodes; i++) liveness.reported(`n${i}`);
  const persisted = (): string | undefined => store.get('Node', 'n0')?.status.lastHeartbeatTime;
  return { liveness, persisted, advance: (ms: number) => void (t += ms) };
}

describe('NodeLiveness heartbeat persistence', () => {
  it('writes a small fleet’s heartbeats to the store at most every 30 s per node', () => {
    const w = world(10);
    expect(w.liveness.persistEveryMs()).toBe(30_000);
    const before = w.persisted();
    w.advance(10_000);
    w.liveness.heartbeat('n0');
    expect(w.persisted()).toBe(before);
    w.advance(20_000);
    w.liveness.heartbeat('n0');
    expect(w.persisted()).toBe(new Date(T0 + 30_000).toISOString());
  });

  it(`spaces them in a large fleet so it writes at most ${PERSISTED_HEARTBEATS_PER_S} per second in all`, () => {
    const w = world(10_000);
    expect(w.liveness.persistEveryMs()).toBe(100_000);
    const before = w.persisted();
    w.advance(60_000);
    w.liveness.heartbeat('n0');
    expect(w.persisted()).toBe(before);
    w.advance(40_000);
    w.liveness.heartbeat('n0');
    expect(w.persisted()).toBe(new Date(T0 + 100_000).toISOString());
    // An explicit setting wins.
    expect(world(10, 5_000).liveness.persistEveryMs()).toBe(5_000);
  });
});
