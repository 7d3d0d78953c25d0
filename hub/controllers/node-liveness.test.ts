import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { silentLogger } from '../log.js';
import { mockNodeObject } from '../scheduler/testing.js';
import { MemoryStore } from '../store/memory-store.js';
import { NodeLiveness, PERSISTED_HEARTBEATS_PER_S } from './node-liveness.js';

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
