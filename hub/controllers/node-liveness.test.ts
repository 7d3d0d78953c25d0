import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { silentLogger } from '../log.js';
import { isNodeReady as isReady } from '../objects/node.js';
import { MemoryStore } from '../store/memory-store.js';
import { mockNode, mockPod } from '../store/store-contract.js';
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
  let written = 0;
  store.watch((ev) => {
    if (ev.object.kind === 'Node' && ev.type === 'MODIFIED') written++;
  });
  return { store, liveness, persisted, writes: () => written, advance: (ms: number) => void (t += ms) };
}

describe('NodeLiveness heartbeat persistence', () => {
  /** Every node heartbeats every 10 s (node i at offset i·10 s/N) for `seconds`; the store's Node writes per second. */
  function run(w: ReturnType<typeof world>, nodes: number, seconds: number, at?: Record<number, () => void>): number[] {
    const perSecond: number[] = [];
    const slots: string[][] = Array.from({ length: 100 }, () => []);
    for (let i = 0; i < nodes; i++) slots[Math.floor((i * 100) / nodes)]?.push(`n${i}`);
    for (let ms = 100; ms <= seconds * 1000; ms += 100) {
      w.advance(100);
      at?.[ms]?.();
      const before = w.writes();
      for (const n of slots[(ms / 100) % 100] ?? []) w.liveness.heartbeat(n);
      const s = Math.floor((ms - 1) / 1000);
      perSecond[s] = (perSecond[s] ?? 0) + w.writes() - before;
    }
    return perSecond;
  }

  it('writes a small fleet’s heartbeats to the store once every 30 s per node', () => {
    const w = world(10);
    expect(w.liveness.persistEveryMs()).toBe(30_000);
    const times: number[] = [];
    let last = w.persisted();
    for (let i = 0; i < 60; i++) {
      w.advance(10_000);
      w.liveness.heartbeat('n0');
      if (w.persisted() !== last) times.push(Date.parse((last = w.persisted()) ?? ''));
    }
    // 600 s: 20 slots (the first may come sooner than 30 s after the registration), then every 30 s.
    expect(times.length).toBeGreaterThanOrEqual(19);
    expect(times.length).toBeLessThanOrEqual(20);
    for (let i = 1; i < times.length; i++) expect((times[i] ?? 0) - (times[i - 1] ?? 0)).toBe(30_000);
    // An explicit setting wins.
    expect(world(10, 5_000).liveness.persistEveryMs()).toBe(5_000);
  });

  it(`spreads a large fleet's over the period: ${PERSISTED_HEARTBEATS_PER_S} per second in all, even when every node registered at once`, () => {
    // 5,000 nodes registered in the same instant (a reconnect storm at its worst). Timed from
    // each node's last write, all of them were due together every 50 s: 500 writes/s for 10 s.
    const nodes = 5_000;
    const w = world(nodes);
    expect(w.liveness.persistEveryMs()).toBe(50_000);
    // The fleet's size changes the period (nodes × 10 ms): one node enrolled, later one deleted,
    // must not make the fleet due at once (review, 2026-12-04: the first version wrote ≈ 9,200 in
    // 10 s at 10,000 nodes after one enrolment).
    const perSecond = run(w, nodes, 150, {
      60_000: () => w.store.create(mockNodeObject('late')),
      100_000: () => w.store.delete('Node', 'n7'),
    });
    const total = perSecond.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThanOrEqual(1.5 * nodes); // ≈ 3 periods (50 s, then 60 s): two or three writes each, fewer across the change
    expect(total).toBeLessThanOrEqual(3 * nodes);
    // Uniform phases over 10,000 nodes: 100 a second on average, never near the storm's shape.
    expect(Math.max(...perSecond)).toBeLessThanOrEqual(1.6 * PERSISTED_HEARTBEATS_PER_S);
  });
});

/**
 * Pods of nodes that go NotReady while the startup grace holds are left as last reported, and
 * marked once it is over (issue 19: at 10,000 nodes on etcd, marking the pods of the agents not yet
 * back from a restart's reconnect storm was 17 % of the new leader's CPU, all of it undone as they
 * returned).
 */
describe('NodeLiveness pod marks during the startup grace', () => {
  function graceWorld(opts: { noGrace?: boolean } = {}) {
    const clock = new FakeClock(T0);
    const now = (): Date => new Date(clock.now());
    const store = new MemoryStore({ now });
    const ts = now().toISOString();
    store.transaction(() => {
      for (const name of ['a', 'b']) {
        store.create({ ...mockNode(name), status: { conditions: [readyCondition(true, ts)] } });
        for (let i = 0; i < 3; i++) {
          const pod = store.create(mockPod(`${name}-p${i}`, { nodeName: name }));
          store.update({ ...pod, status: { ...pod.status, phase: 'Running', conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: ts }] } });
        }
      }
    });
    let graceOver = false;
    const liveness = new NodeLiveness({
      store,
      log: silentLogger,
      now,
      clock,
      heartbeatGraceMs: 40_000,
      ...(opts.noGrace ? {} : { returnsOver: () => graceOver }),
    });
    liveness.reported('a');
    liveness.reported('b');
    const phases = (node: string): string[] => store.list('Pod', { nodeName: node }).map((p) => p.status.phase);
    const podWrites = (): string => JSON.stringify(store.list('Pod').map((p) => p.metadata.resourceVersion));
    return { clock, store, liveness, phases, podWrites, endGrace: () => (graceOver = true) };
  }

  it('leaves a silent node’s pods unmarked while the grace holds, and marks them at the first sweep after it', () => {
    const { clock, liveness, phases, endGrace, store } = graceWorld();
    clock.advance(41_000);
    liveness.sweep();
    expect(store.list('Node').filter(isReady)).toHaveLength(0); // the nodes themselves go NotReady
    expect(phases('a')).toEqual(['Running', 'Running', 'Running']);
    liveness.disconnected('b');
    expect(phases('b')).toEqual(['Running', 'Running', 'Running']);
    endGrace();
    liveness.sweep();
    expect(phases('a')).toEqual(['Unknown', 'Unknown', 'Unknown']);
    expect(phases('b')).toEqual(['Unknown', 'Unknown', 'Unknown']);
    const p = store.get('Pod', 'a-p0')!;
    expect(p.status.reason).toBe('NodeLost');
    expect(p.status.message).toMatch(/node a is not ready: no heartbeat for 41s/);
  });

  it('a node back before the grace ends never had its pods written', () => {
    const { clock, liveness, phases, podWrites, endGrace } = graceWorld();
    const before = podWrites();
    clock.advance(41_000);
    liveness.sweep();
    liveness.heartbeat('a'); // back: Ready again
    liveness.heartbeat('b');
    endGrace();
    liveness.sweep();
    expect(podWrites()).toBe(before);
    expect(phases('a')).toEqual(['Running', 'Running', 'Running']);
  });

  it('marks pods at once once the grace is over, without waiting for a sweep', () => {
    const { liveness, phases, endGrace } = graceWorld();
    endGrace();
    liveness.disconnected('a');
    expect(phases('a')).toEqual(['Unknown', 'Unknown', 'Unknown']);
    expect(phases('b')).toEqual(['Running', 'Running', 'Running']);
  });

  it('after the grace, marks the pods of nodes left NotReady by an earlier hub, a turn’s worth at a time', () => {
    const { clock, store, phases, endGrace } = graceWorld();
    // An earlier hub marked both nodes NotReady while holding the pod marks, then stopped.
    for (const name of ['a', 'b']) {
      const n = store.get('Node', name)!;
      const ts = new Date(clock.now()).toISOString();
      store.update({
        ...n,
        status: {
          ...n.status,
          conditions: [{ ...readyCondition(false, ts), reason: 'AgentDisconnected', message: 'the agent disconnected (MQTT last will)' }],
        },
      });
    }
    const next = new NodeLiveness({
      store,
      log: silentLogger,
      now: () => new Date(clock.now()),
      clock,
      heartbeatGraceMs: 40_000,
      maxMarksPerTurn: 1,
      returnsOver: () => true,
    });
    next.sweep();
    expect(phases('a')).toEqual(['Unknown', 'Unknown', 'Unknown']);
    expect(phases('b')).toEqual(['Running', 'Running', 'Running']); // the next turn
    clock.advance(0);
    expect(phases('b')).toEqual(['Unknown', 'Unknown', 'Unknown']);
    expect(store.get('Pod', 'b-p1')!.status.message).toBe('node b is not ready: the agent disconnected (MQTT last will)');
    endGrace();
  });

  it('without a grace (no returnsOver) marks pods with their node, as before', () => {
    const { liveness, phases } = graceWorld({ noGrace: true });
    liveness.disconnected('a');
    expect(phases('a')).toEqual(['Unknown', 'Unknown', 'Unknown']);
  });
});
