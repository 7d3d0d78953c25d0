import { describe, expect, it } from 'vitest';
import type { NodeUsageReport } from '../../protocol/messages.js';
import { RingPool } from './ring.js';
import { UsageStore } from './usage-store.js';

const msg = (o: Partial<NodeUsageReport> = {}): NodeUsageReport => ({ node: 'n1', usage: { cpuPercent: 50, memoryUsedBytes: 100, at: 'x' }, ...o });

describe('UsageStore', () => {
  it('computes CPU cores from the last two samples of a container and merges change-only reports', () => {
    const t = { now: 0 };
    const u = new UsageStore({ now: () => t.now });
    u.ingest(msg({ pods: { a: { app: [10, 1000] }, b: { app: [1, 10] } }, full: true }));
    expect(u.pod('n1', 'a')?.get('app')?.cpuCores).toBeUndefined();
    t.now = 10_000;
    u.ingest(msg({ pods: { a: { app: [15, 2000] } } })); // b unchanged: not sent, kept
    expect(u.pod('n1', 'a')?.get('app')).toMatchObject({ cpuCores: 0.5, memoryBytes: 2000 });
    expect(u.pod('n1', 'b')?.get('app')?.cpuSeconds).toBe(1);
    u.ingest(msg({ gone: ['b'] }));
    expect(u.pod('n1', 'b')).toBeUndefined();
    // A full report without `a` drops it.
    u.ingest(msg({ pods: {}, full: true }));
    expect(u.pod('n1', 'a')).toBeUndefined();
  });

  it('stays bounded: a day of reports from 50 pods holds the same bytes as one hour', () => {
    const t = { now: 0 };
    const u = new UsageStore({ now: () => t.now });
    const pods = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`p-${i}`, { app: [0, 1] as [number, number] }]));
    const at = (ms: number): void => {
      t.now = ms;
      u.ingest(msg({ pods, full: true }));
    };
    for (let s = 0; s < 3600; s += 10) at(s * 1000);
    const hour = u.stats();
    for (let s = 3600; s < 86_400; s += 10) at(s * 1000);
    const day = u.stats();
    expect(day).toEqual(hour);
    expect(day.historyBytes).toBe(51 * 720);
    expect(day.rings).toBe(51);
    // The history holds the last hour only, one point a minute.
    expect(u.nodeHistory('n1')).toHaveLength(60);
    expect(u.podHistory('n1', 'p-0')[0]?.at).toBe(86_400_000 - 60 * 60_000);
  });

  it("a hostile node cannot grow the store with made-up pods across change-only reports, nor report another node's pods", () => {
    const bound = new Set(['real']);
    const u = new UsageStore({ now: () => 0, podOnNode: (node, pod) => node === 'n1' && bound.has(pod) });
    for (let r = 0; r < 20; r++) {
      const pods = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`fake-${r}-${i}`, { app: [1, 1] as [number, number] }]));
      u.ingest(msg({ pods }));
    }
    u.ingest(msg({ pods: { real: { app: [1, 1] } } }));
    u.ingest(msg({ node: 'n2', pods: { real: { app: [9, 9] } } })); // bound to n1, reported by n2
    expect(u.stats().pods).toBe(1);
    expect(u.pod('n1', 'real')?.get('app')?.cpuSeconds).toBe(1);
    expect(u.pod('n2', 'real')).toBeUndefined();
    // Without the predicate, the per-node cap still holds.
    const open = new UsageStore({ now: () => 0 });
    for (let r = 0; r < 3; r++)
      open.ingest(msg({ pods: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`p-${r}-${i}`, { app: [1, 1] as [number, number] }])) }));
    expect(open.stats().pods).toBe(1000);
  });

  it("keeps each node's service proxy counters as its last report that carried them; only services the store has", () => {
    const t = { now: 5_000 };
    const exists = new Set(['web', 'db']);
    const u = new UsageStore({ now: () => t.now, serviceExists: (s) => exists.has(s) });
    u.ingest(msg({ services: { web: { replays: 2 }, ghost: { replays: 9 } } }));
    u.ingest(msg({ node: 'n2', services: { web: { replays: 1 }, db: { replays: 4 } } }));
    expect([...u.serviceCounters()]).toEqual([
      { node: 'n1', service: 'web', replays: 2, at: 5_000 },
      { node: 'n2', service: 'web', replays: 1, at: 5_000 },
      { node: 'n2', service: 'db', replays: 4, at: 5_000 },
    ]);
    expect([...u.serviceCounters('web')].map((c) => [c.node, c.replays])).toEqual([
      ['n1', 2],
      ['n2', 1],
    ]);
    // A report without `services`: unchanged. With: replaced whole (db's listener closed on n2).
    t.now = 6_000;
    u.ingest(msg({ node: 'n2' }));
    expect([...u.serviceCounters('db')]).toHaveLength(1);
    u.ingest(msg({ node: 'n2', services: { web: { replays: 3 } } }));
    expect([...u.serviceCounters('db')]).toEqual([]);
    expect([...u.serviceCounters('web')].map((c) => [c.node, c.replays, c.at])).toEqual([
      ['n1', 2, 5_000],
      ['n2', 3, 6_000],
    ]);
    u.ingest(msg({ services: {} }));
    u.forgetNode('n2');
    expect([...u.serviceCounters()]).toEqual([]);
  });

  it("drops a deleted service's counters at read time, without waiting for the nodes' next reports", () => {
    const exists = new Set(['web', 'db']);
    const u = new UsageStore({ now: () => 1_000, serviceExists: (s) => exists.has(s) });
    u.ingest(msg({ services: { web: { replays: 2 }, db: { replays: 1 } } }));
    u.ingest(msg({ node: 'n2', services: { db: { replays: 4 } } }));
    exists.delete('db');
    expect([...u.serviceCounters('db')]).toEqual([]);
    expect([...u.serviceCounters()].map((c) => [c.node, c.service])).toEqual([['n1', 'web']]);
    // Gone for good: a service of the same name created later starts from the nodes' next reports.
    exists.add('db');
    expect([...u.serviceCounters()].map((c) => [c.node, c.service])).toEqual([['n1', 'web']]);
    // n2, left with no counters at that read, counts again from its next report.
    u.ingest(msg({ node: 'n2', services: { db: { replays: 5 } } }));
    expect([...u.serviceCounters()].map((c) => [c.node, c.service, c.replays])).toEqual([
      ['n1', 'web', 2],
      ['n2', 'db', 5],
    ]);
  });

  it('keeps the nodes it walks for service counters to those that have some (review 71)', () => {
    const exists = new Set(['web', 'db']);
    const u = new UsageStore({ now: () => 0, serviceExists: (s) => exists.has(s) });
    const withServices = (): number => (u as unknown as { withServices: Set<string> }).withServices.size;
    u.ingest(msg({ node: 'n1', services: { web: { replays: 1 } } }));
    u.ingest(msg({ node: 'n2', services: { db: { replays: 1 } } }));
    u.ingest(msg({ node: 'n3', services: { web: { replays: 1 } } }));
    expect(withServices()).toBe(3);
    u.forgetNode('n1');
    expect(withServices()).toBe(2);
    u.ingest(msg({ node: 'n3', services: {} }));
    expect(withServices()).toBe(1);
    exists.delete('db');
    expect([...u.serviceCounters()]).toEqual([]);
    expect(withServices()).toBe(0);
  });

  it('forgetNode drops a node and its pods', () => {
    const u = new UsageStore({ now: () => 0 });
    u.ingest(msg({ pods: { a: { app: [1, 1] } }, full: true }));
    u.forgetNode('n1');
    expect(u.stats()).toMatchObject({ nodes: 0, pods: 0, historyBytes: 0, rings: 0 });
  });

  it('hands the history rings of pods and nodes that go back to the pool, so churn does not grow it', () => {
    const t = { now: 0 };
    const u = new UsageStore({ now: () => t.now });
    // Every report replaces the node's 20 pods with 20 new ones (a rollout a minute, for a day).
    for (let r = 0; r < 1440; r++) {
      t.now = r * 60_000;
      const pods = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`p-${r}-${i}`, { app: [1, 1] as [number, number] }]));
      u.ingest(msg({ pods, full: true }));
      if (r % 2 === 1) u.ingest(msg({ gone: Object.keys(pods).slice(0, 10) }));
    }
    const churned = u.stats();
    expect(churned).toMatchObject({ nodes: 1, pods: 10, rings: 11 });
    // One slab (256 rings) was enough for the whole day.
    expect(churned.slabBytes).toBe(256 * 720);
    for (let n = 2; n < 300; n++) u.ingest(msg({ node: `n${n}`, pods: { [`q-${n}`]: { app: [1, 1] } } }));
    expect(u.stats().rings).toBe(11 + 298 * 2);
    for (let n = 2; n < 300; n++) u.forgetNode(`n${n}`);
    expect(u.stats()).toMatchObject({ nodes: 1, pods: 10, rings: 11 });
    // A new series reuses a released place (those places held an hour of samples) and starts empty.
    t.now += 60_000;
    u.ingest(msg({ node: 'fresh', pods: { z: { app: [1, 1] } } }));
    expect(u.nodeHistory('fresh')).toHaveLength(1);
    expect(u.podHistory('fresh', 'z')).toHaveLength(1);
    expect(u.stats().slabBytes).toBe(3 * 256 * 720);
  });

  it('a full report drops pods and containers whose names are also Object.prototype keys (review 74)', () => {
    const u = new UsageStore({ now: () => 0 });
    // Built from entries: in a literal, TypeScript types these keys from Object.prototype.
    const named = (...names: string[]): Record<string, [number, number]> => Object.fromEntries(names.map((n) => [n, [1, 1] as [number, number]]));
    u.ingest(msg({ pods: { constructor: named('toString', 'app'), keep: named('app') }, full: true }));
    u.ingest(msg({ pods: { keep: { app: [2, 2] } }, full: true }));
    expect(u.pod('n1', 'constructor')).toBeUndefined();
    expect(u.stats()).toMatchObject({ pods: 1, rings: 2 });
    u.ingest(msg({ pods: { keep: named('app', 'hasOwnProperty') }, full: true }));
    u.ingest(msg({ pods: { keep: { app: [3, 3] } }, full: true }));
    expect([...(u.pod('n1', 'keep')?.keys() ?? [])]).toEqual(['app']);
  });
});

describe('Ring', () => {
  it('keeps the latest sample per step and forgets steps older than its size', () => {
    const r = new RingPool(3, 1000).ring();
    r.push(0, 1, 10);
    r.push(500, 2, 20); // same step: replaces
    r.push(1000, 3, 30);
    r.push(3500, 4, 40); // step 3 overwrites step 0's slot
    expect(r.points(3500)).toEqual([
      { at: 1000, cpuCores: 3, memoryBytes: 30 },
      { at: 3000, cpuCores: 4, memoryBytes: 40 },
    ]);
    expect(r.bytes).toBe(36);
  });

  it('shares slabs between rings, and a released place comes back empty', () => {
    const pool = new RingPool(4, 1000);
    const rings = Array.from({ length: 600 }, (_, i) => {
      const r = pool.ring();
      r.push(i * 1000, i, i * 10);
      return r;
    });
    // Neighbours do not see each other's samples.
    expect(rings[0]?.points(0)).toEqual([{ at: 0, cpuCores: 0, memoryBytes: 0 }]);
    expect(rings[299]?.points(299_000)).toEqual([{ at: 299_000, cpuCores: 299, memoryBytes: 2990 }]);
    expect(pool.rings).toBe(600);
    expect(pool.slabBytes).toBe(3 * 256 * 48);
    rings[299]?.release();
    rings[299]?.release(); // twice: counted once
    expect(pool.rings).toBe(599);
    expect(rings[299]?.points(299_000)).toEqual([]);
    expect(() => rings[299]?.push(0, 1, 1)).toThrow(/released/);
    const again = pool.ring();
    // The released place, emptied: no old sample shows through.
    expect(again.points(299_000)).toEqual([]);
    again.push(299_500, 7, 70);
    expect(again.points(299_000)).toEqual([{ at: 299_000, cpuCores: 7, memoryBytes: 70 }]);
    // The released ring reads nothing, though its old place holds a sample of the same step again.
    expect(rings[299]?.points(299_000)).toEqual([]);
    expect(pool.slabBytes).toBe(3 * 256 * 48);
  });

  it('drops a sample from before 1970 instead of writing into a neighbour (review 74)', () => {
    const pool = new RingPool(4, 1000);
    const a = pool.ring();
    const b = pool.ring();
    a.push(3000, 1, 1);
    b.push(-2000, 9, 9);
    b.push(Number.NaN, 9, 9);
    expect(a.points(3000)).toEqual([{ at: 3000, cpuCores: 1, memoryBytes: 1 }]);
    expect(b.points(3000)).toEqual([]);
  });

  it('makes rings only through the pool, and refuses a place released twice (review 74)', () => {
    const pool = new RingPool(2, 1000);
    const r = pool.ring();
    const Ctor = r.constructor as new (...args: unknown[]) => unknown;
    expect(() => new Ctor(Symbol('RingPool'), pool, undefined, 0, 0)).toThrow(/RingPool\.ring/);
    expect(() => pool.reclaim(Symbol('RingPool'), 0)).toThrow(/Ring\.release/);
    r.release();
    expect(pool.rings).toBe(0);
  });
});
