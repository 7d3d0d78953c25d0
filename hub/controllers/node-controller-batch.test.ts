import { describe, expect, it } from 'vitest';
import type { NodeStatusMessage } from '../../protocol/messages.js';
import type { Pod } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import { silentLogger } from '../log.js';
import { MemoryStore } from '../store/memory-store.js';
import { isNodeReady as isReady } from '../objects/node.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { NodeController } from './node-controller.js';
import { mockNodeStatus } from './test-fixtures.js';

const status = (node: string): NodeStatusMessage => mockNodeStatus(node);

/** A store that counts its outermost transactions (each one is one commit, one fsync on SQLite). */
function countingStore(): { store: MemoryStore; commits: () => number } {
  const store = new MemoryStore();
  const inner = store.transaction.bind(store);
  let depth = 0;
  let commits = 0;
  store.transaction = <T>(fn: () => T): T => {
    if (depth === 0) commits++;
    depth++;
    try {
      return inner(fn);
    } finally {
      depth--;
    }
  };
  return { store, commits: () => commits };
}

const msg = (m: unknown): Buffer => Buffer.from(JSON.stringify(m));

/** A fake clock for the controller's timers and its `now`: time moves only with advance(). */
function fakeTime(): { clock: FakeClock; now: () => Date } {
  const clock = new FakeClock();
  return { clock, now: () => new Date(clock.now()) };
}

function boundPod(store: MemoryStore, name: string, node: string): Pod {
  return store.create({
    apiVersion: 'orchard/v1',
    kind: 'Pod',
    metadata: { name, labels: {}, annotations: {} },
    spec: { containers: [{ name: 'c', image: 'img' }], nodeName: node },
    status: { phase: 'Pending', conditions: [], containerStatuses: [] },
  } as unknown as Parameters<MemoryStore['create']>[0]) as Pod;
}

function observed(node: string, pod: Pod): Buffer {
  return msg({
    node,
    generation: 1,
    at: 'now',
    pods: [
      {
        name: pod.metadata.name,
        uid: pod.metadata.uid,
        phase: 'Running',
        ready: true,
        containers: [{ name: 'c', image: 'img', state: 'running', restartCount: 0, ready: true }],
      },
    ],
  });
}

describe('NodeController batching (batchMs)', () => {
  it('ingests the messages of one window in a single store transaction, in arrival order', () => {
    const { store, commits } = countingStore();
    const { clock, now } = fakeTime();
    const nodes = new NodeController({ store, log: silentLogger, now, clock, batchMs: 10 });
    for (const n of ['a', 'b', 'c']) nodes.handle(topics.nodeStatus(n), msg(status(n)));
    nodes.handle(topics.nodePresence('b'), msg({ node: 'b', online: false }));
    expect(store.list('Node')).toHaveLength(0); // queued, not yet ingested
    clock.advance(9);
    expect(store.list('Node')).toHaveLength(0); // the window is not over
    clock.advance(1);
    expect(store.list('Node').map((n) => n.metadata.name)).toEqual(['a', 'b', 'c']);
    expect(isReady(store.get('Node', 'b')!)).toBe(false); // the will came after b's status
    expect(commits()).toBe(1);
    nodes.stop();
  });

  it('a message that fails undoes only its own writes; the rest of the batch commits', () => {
    const { store } = countingStore();
    const { clock, now } = fakeTime();
    const nodes = new NodeController({ store, log: silentLogger, now, clock, batchMs: 60_000 });
    nodes.handle(topics.nodeStatus('a'), msg(status('a')));
    nodes.handle(topics.nodeStatus('b'), msg(status('b')));
    nodes.flush();
    const good = boundPod(store, 'good', 'a');
    const bad = boundPod(store, 'bad', 'b');
    // Fail the write of pod "bad" after node b's observedGeneration was written in the same message.
    const update = store.update.bind(store);
    store.update = ((o: Parameters<MemoryStore['update']>[0]) => {
      if (o.kind === 'Pod' && o.metadata.name === 'bad') throw new Error('disk on fire');
      return update(o);
    }) as MemoryStore['update'];
    nodes.handle(topics.nodeObserved('a'), observed('a', good));
    nodes.handle(topics.nodeObserved('b'), observed('b', bad));
    nodes.handle(topics.nodeStatus('c'), Buffer.from('{not json'));
    nodes.flush();
    expect(store.get('Pod', 'good')?.status.phase).toBe('Running');
    expect(store.get('Node', 'a')?.status.observedGeneration).toBe(1);
    expect(store.get('Pod', 'bad')?.status.phase).toBe('Pending');
    expect(store.get('Node', 'b')?.status.observedGeneration).toBeUndefined();
    expect(nodes.rejected).toBe(1);
    nodes.stop();
  });

  it('stop() ingests what is still queued; without batchMs messages are ingested at once', () => {
    const store = new MemoryStore();
    const { clock, now } = fakeTime();
    const batched = new NodeController({ store, log: silentLogger, now, clock, batchMs: 60_000 });
    batched.handle(topics.nodeStatus('a'), msg(status('a')));
    expect(store.get('Node', 'a')).toBeUndefined();
    batched.stop();
    expect(store.get('Node', 'a')).toBeDefined();
    expect(clock.pending).toBe(0); // stop() cleared the batch timer
    const direct = new NodeController({ store, log: silentLogger, now, clock });
    direct.handle(topics.nodeStatus('b'), msg(status('b')));
    expect(store.get('Node', 'b')).toBeDefined();
    expect(clock.pending).toBe(0); // no batch, no timer
  });
});

describe('NodeController: a deleted node does not come back from its queued reports', () => {
  /** A batching controller whose auth knows the names in `enrolled`; `del` is what `orchard node delete` does to it. */
  function fleet(withForget: boolean) {
    const store = new MemoryStore();
    const { clock, now } = fakeTime();
    const enrolled = new Set(['pi-7', 'pi-8']);
    const nodes = new NodeController({ store, log: silentLogger, now, clock, batchMs: 50, isEnrolled: (n) => enrolled.has(n) });
    const del = (node: string): void => {
      enrolled.delete(node); // the credential is revoked
      if (withForget) nodes.forget(node);
      store.delete('Node', node);
    };
    return { store, nodes, del };
  }

  it('never creates a Node from a status queued before the delete and ingested after it (isEnrolled)', () => {
    const { store, nodes, del } = fleet(false);
    nodes.handle(topics.nodeStatus('pi-7'), msg(status('pi-7')));
    nodes.flush();
    expect(store.get('Node', 'pi-7')).toBeDefined();
    // A status waits in the batch (under load, for seconds) when the admin deletes the node.
    nodes.handle(topics.nodeStatus('pi-7'), msg(status('pi-7')));
    nodes.handle(topics.nodeStatus('pi-8'), msg(status('pi-8')));
    del('pi-7');
    nodes.flush();
    expect(store.get('Node', 'pi-7')).toBeUndefined(); // no Ready ghost to attract pods or block the re-join
    expect(store.get('Node', 'pi-8')).toBeDefined(); // an enrolled node in the same batch registers
    // A straggler that reaches the controller even later changes nothing either.
    nodes.handle(topics.nodeStatus('pi-7'), msg(status('pi-7')));
    nodes.handle(topics.nodeUsage('pi-7'), msg({ node: 'pi-7', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: new Date().toISOString() } }));
    nodes.flush();
    expect(store.get('Node', 'pi-7')).toBeUndefined();
    expect(nodes.rejected).toBe(0); // valid messages of a deleted node are dropped, not counted as invalid
    nodes.stop();
  });

  it('forget() drops the queued messages of a deleted node and keeps the others', () => {
    const { store, nodes, del } = fleet(true);
    nodes.handle(topics.nodeStatus('pi-7'), msg(status('pi-7')));
    nodes.handle(topics.nodeStatus('pi-8'), msg(status('pi-8')));
    nodes.handle(topics.nodePresence('pi-7'), msg({ node: 'pi-7', online: false }));
    expect(nodes.backlog().queued).toBe(3);
    del('pi-7');
    expect(nodes.backlog().queued).toBe(1);
    nodes.flush();
    expect(store.list('Node').map((n) => n.metadata.name)).toEqual(['pi-8']);
    nodes.stop();
  });

  it('a Node that exists keeps taking its reports (isEnrolled gates only the creation)', () => {
    const store = new MemoryStore();
    const { clock, now } = fakeTime();
    const nodes = new NodeController({ store, log: silentLogger, now, clock, isEnrolled: () => false });
    store.create({
      apiVersion: 'orchard/v1',
      kind: 'Node',
      metadata: { name: 'kept', labels: {}, annotations: {} },
      spec: { unschedulable: false, taints: [] },
      status: { conditions: [] },
    } as unknown as Parameters<MemoryStore['create']>[0]);
    nodes.handle(topics.nodeStatus('kept'), msg(status('kept')));
    expect(isReady(store.get('Node', 'kept')!)).toBe(true);
  });
});

describe('NodeController liveness under an ingest backlog', () => {
  /**
   * A batching controller (50 ms, 40 s grace) whose time the test moves with advance(). The hub is
   * busy: time passes but no timer gets to run (its FakeClock is never advanced), so messages stay
   * queued until the test flushes.
   */
  function batched() {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const now = (): Date => new Date(t);
    const store = new MemoryStore({ now });
    const nodes = new NodeController({ store, log: silentLogger, now, clock: new FakeClock(t), batchMs: 50, heartbeatGraceMs: 40_000 });
    return { store, nodes, now, advance: (ms: number) => void (t += ms) };
  }

  it('counts a node as heard when its message arrives, not when the batch gets to it', () => {
    const { store, nodes, now, advance } = batched();
    nodes.handle(topics.nodeStatus('a'), msg(status('a')));
    nodes.handle(topics.nodeStatus('b'), msg(status('b')));
    nodes.flush();
    nodes.sweep(); // first sweep after registration notes both
    expect(store.list('Node').every(isReady)).toBe(true);

    // 30 s later both report, but the hub is busy: the messages wait in the batch.
    advance(30_000);
    nodes.handle(topics.nodeUsage('a'), msg({ node: 'a', usage: { cpuPercent: 1, memoryUsedBytes: 1, at: now().toISOString() } }));
    // An offline presence is the broker publishing b's last will: no proof of life.
    nodes.handle(topics.nodePresence('b'), msg({ node: 'b', online: false }));
    advance(20_000); // 50 s after the last ingest, 20 s after a's heartbeat arrived
    nodes.sweep();
    expect(isReady(store.get('Node', 'a') as never)).toBe(true);
    expect(store.get('Node', 'b')?.status.conditions.find((c) => c.type === 'Ready')?.reason).toBe('NodeStatusUnknown');
    expect(nodes.backlog()).toEqual({ queued: 2, maxLagMs: 0 });
    nodes.flush();
    expect(nodes.backlog()).toEqual({ queued: 0, maxLagMs: 20_000 }); // a's heartbeat waited 20 s
    expect(nodes.backlog()).toEqual({ queued: 0, maxLagMs: 0 }); // read-and-reset
  });

  it("asks whether the startup grace was over at a first return's arrival, not when a backlog let it in; the grace moves by ingest", () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const t0 = t;
    const now = (): Date => new Date(t);
    const store = new MemoryStore({ now });
    const asked: number[] = [];
    const nodes = new NodeController({
      store,
      log: silentLogger,
      now,
      clock: new FakeClock(t),
      batchMs: 50,
      heartbeatGraceMs: 40_000,
      returnsOver: (at) => (asked.push(at), false),
    });
    nodes.handle(topics.nodeStatus('a'), msg(status('a')));
    t += 70_000; // the hub was busy: a's first message waited 70 s in the batch
    nodes.handle(topics.nodeStatus('b'), msg(status('b')));
    t += 5_000;
    nodes.flush();
    expect(asked).toEqual([t0, t0 + 70_000]);
    // …while the grace moves by ingest time: graceEnd sees only ingested returns, so it must hold
    // until the backlog's returns are in (review finding: dated by arrival it ended 10 s early).
    expect(nodes.lastReturnAt()).toBe(t0 + 75_000);
    // Both registered as usual.
    expect(new Set(store.list('Node').map((n) => n.metadata.name))).toEqual(new Set(['a', 'b']));
  });

  it('stops counting a message as proof of life once it is ingested and found invalid', () => {
    const { store, nodes, advance } = batched();
    nodes.handle(topics.nodeStatus('a'), msg(status('a')));
    nodes.flush();
    nodes.sweep();
    advance(30_000);
    // A report a can no longer get right (say, after an incompatible upgrade): heard while it waits…
    nodes.handle(topics.nodeUsage('a'), msg({ node: 'a', usage: { cpuPercent: 'high' } }));
    advance(20_000);
    nodes.sweep();
    expect(isReady(store.get('Node', 'a') as never)).toBe(true);
    // …but once ingested and dropped, only the last valid report (50 s ago) counts.
    nodes.flush();
    expect(nodes.rejected).toBe(1);
    nodes.sweep();
    expect(store.get('Node', 'a')?.status.conditions.find((c) => c.type === 'Ready')?.reason).toBe('NodeStatusUnknown');
  });
});

describe('NodeController timers run on the injected clock', () => {
  it('sweeps every grace/4 until stop(): a silent node goes NotReady without anyone calling sweep()', () => {
    const store = new MemoryStore();
    const { clock, now } = fakeTime();
    const nodes = new NodeController({ store, log: silentLogger, now, clock, heartbeatGraceMs: 40_000 });
    nodes.handle(topics.nodeStatus('a'), msg(status('a')));
    nodes.start();
    expect(clock.pending).toBe(1);
    clock.advance(40_000); // four sweeps; a was heard 40 s ago, not more
    expect(isReady(store.get('Node', 'a')!)).toBe(true);
    expect(clock.pending).toBe(1); // re-armed after each sweep
    clock.advance(10_000); // the next sweep: 50 s of silence
    expect(store.get('Node', 'a')?.status.conditions.find((c) => c.type === 'Ready')?.reason).toBe('NodeStatusUnknown');
    nodes.stop();
    expect(clock.pending).toBe(0);
  });

  it('a stopped controller sweeps no more', () => {
    const store = new MemoryStore();
    const { clock, now } = fakeTime();
    const nodes = new NodeController({ store, log: silentLogger, now, clock, heartbeatGraceMs: 1_000 });
    nodes.handle(topics.nodeStatus('a'), msg(status('a')));
    nodes.start();
    nodes.stop();
    clock.advance(60_000);
    expect(isReady(store.get('Node', 'a')!)).toBe(true);
  });

  it('a timer flush ingests a large backlog in chunks of 200, one commit each (re-armed at 0 ms when its 20 ms slice runs out)', () => {
    const { store, commits } = countingStore();
    const { clock, now } = fakeTime();
    const nodes = new NodeController({ store, log: silentLogger, now, clock, batchMs: 50 });
    // 1,000 status messages (5 chunks of 200): each chunk is one commit, whatever the slice allows.
    for (let i = 0; i < 1000; i++) nodes.handle(topics.nodeStatus(`n${i}`), msg(status(`n${i}`)));
    clock.advance(50);
    for (let turns = 0; clock.pending > 0 && turns < 10; turns++) clock.advance(0);
    expect(store.list('Node')).toHaveLength(1000);
    expect(commits()).toBe(5);
    expect(nodes.backlog()).toEqual({ queued: 0, maxLagMs: 50 });
    nodes.stop();
  });
});
