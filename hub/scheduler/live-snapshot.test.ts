import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import { MemoryStore } from '../store/memory-store.js';
import type { Store } from '../store/store.js';
import { DISK_GAIN_RETRY_BYTES, LiveSnapshot } from './live-snapshot.js';
import { buildSchedNodes, type SnapshotOptions } from './snapshot.js';
import { mockNodeObject, mockPod, mockPodObject } from './testing.js';
import type { SchedNode, SchedPod } from './types.js';
import { scheduleWithVolumes } from './volume-pins.js';

/**
 * The LiveSnapshot must always equal the reference full rebuild (buildSchedNodes over every node
 * and pod) and give the same scheduling decisions: random writes to a MemoryStore, checked
 * after every step.
 */

const NODES = ['n0', 'n1', 'n2'];
const PODS = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
const OWNERS = [undefined, 'web', 'db'] as const;
const LABEL_KEYS = ['zone', 'rack'];
const LABEL_VALUES = ['a', 'b', 'c'];
const PHASES = ['Pending', 'Running', 'Succeeded', 'Failed'] as const;
const OPTS: SnapshotOptions = { systemReserved: { cpuMillis: 50, memoryBytes: 0 } };

type Action =
  | {
      t: 'node';
      name: string;
      labels: Record<string, string>;
      cpu: number;
      ready: boolean;
      cordon: boolean;
      noInfo: boolean;
      disk: number | undefined;
      taint: boolean;
    }
  | { t: 'nodeDeleting'; name: string }
  | { t: 'nodeDelete'; name: string }
  | {
      t: 'pod';
      name: string;
      node: string | undefined;
      owner: string | undefined;
      cpu: number;
      hostPort: number | undefined;
      eph: number;
      phase: (typeof PHASES)[number];
    }
  | { t: 'phase'; name: string; phase: (typeof PHASES)[number] }
  | { t: 'bind'; name: string; node: string | undefined }
  | { t: 'resize'; name: string; cpu: number; hostPort: number | undefined }
  | { t: 'owner'; name: string; owner: string | undefined }
  | { t: 'podDeleting'; name: string }
  | { t: 'podDelete'; name: string }
  | { t: 'twice'; name: string; node: string; phase: (typeof PHASES)[number] }
  | { t: 'index'; key: string }
  | { t: 'pass'; count: number; owner: string | undefined; spread: boolean; hostPort: number | undefined };

const nodeName = fc.constantFrom(...NODES);
const podName = fc.constantFrom(...PODS);
const maybeNode = fc.option(fc.constantFrom(...NODES, 'ghost'), { nil: undefined, freq: 4 });
const owner = fc.constantFrom(...OWNERS);
const phase = fc.constantFrom(...PHASES);
const hostPort = fc.option(fc.constantFrom(80, 443), { nil: undefined });
const cpu = fc.constantFrom(0, 100, 250, 1000);
const labels = fc.dictionary(fc.constantFrom(...LABEL_KEYS), fc.constantFrom(...LABEL_VALUES), { maxKeys: 2 });

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('node' as const),
      name: nodeName,
      labels,
      cpu: fc.constantFrom(1000, 2000, 4000),
      ready: fc.boolean(),
      cordon: fc.boolean(),
      noInfo: fc.boolean(),
      disk: fc.option(fc.constantFrom(0, 1000, 10_000), { nil: undefined }),
      taint: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('nodeDeleting' as const), name: nodeName }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('nodeDelete' as const), name: nodeName }) },
  {
    weight: 4,
    arbitrary: fc.record({ t: fc.constant('pod' as const), name: podName, node: maybeNode, owner, cpu, hostPort, eph: fc.constantFrom(0, 500), phase }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('phase' as const), name: podName, phase }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('bind' as const), name: podName, node: maybeNode }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('resize' as const), name: podName, cpu, hostPort }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('owner' as const), name: podName, owner }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('podDeleting' as const), name: podName }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('podDelete' as const), name: podName }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('twice' as const), name: podName, node: nodeName, phase }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('index' as const), key: fc.constantFrom(...LABEL_KEYS) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('pass' as const), count: fc.integer({ min: 1, max: 4 }), owner, spread: fc.boolean(), hostPort }) },
);

function podObject(a: Extract<Action, { t: 'pod' }>): Pod {
  const p = mockPodObject(a.name, {
    ...(a.node !== undefined ? { nodeName: a.node } : {}),
    ...(a.owner !== undefined ? { owner: a.owner } : {}),
    ...(a.hostPort !== undefined ? { hostPort: a.hostPort } : {}),
    cpu: `${a.cpu}m`,
    memory: '16Mi',
    phase: a.phase,
  });
  if (a.eph > 0)
    p.spec.containers[0]!.resources = {
      ...p.spec.containers[0]!.resources,
      requests: { ...p.spec.containers[0]!.resources?.requests, 'ephemeral-storage': String(a.eph) },
    };
  return p;
}

function nodeObject(a: Extract<Action, { t: 'node' }>): NodeObject {
  const n = mockNodeObject(a.name, {
    labels: a.labels,
    cores: a.cpu / 1000,
    ready: a.ready,
    unschedulable: a.cordon,
    noInfo: a.noInfo,
    ...(a.taint ? { taints: [{ key: 'k', effect: 'NoSchedule' as const }] } : {}),
  });
  if (a.disk !== undefined) n.status.usage = { cpuPercent: 0, memoryUsedBytes: 0, diskFreeBytes: a.disk, at: '2024-01-01T00:00:00Z' };
  return n;
}

function put(store: Store, obj: Pod | NodeObject): void {
  const cur = store.get(obj.kind, obj.metadata.name);
  if (cur === undefined) {
    store.create(obj);
    return;
  }
  const next = structuredClone(obj);
  next.metadata.resourceVersion = cur.metadata.resourceVersion;
  if (cur.metadata.deletionTimestamp !== undefined) next.metadata.deletionTimestamp = cur.metadata.deletionTimestamp;
  store.update(next);
}

function editPod(store: Store, name: string, fn: (p: Pod) => void): void {
  const cur = store.get('Pod', name);
  if (cur === undefined) return;
  const next = structuredClone(cur) as Pod;
  fn(next);
  store.update(next);
}

function pending(a: Extract<Action, { t: 'pass' }>, step: number): SchedPod[] {
  return Array.from({ length: a.count }, (_, i) => {
    const p = mockPod({
      name: `pending-${step}-${i}`,
      cpu: '300m',
      ...(a.owner !== undefined ? { owner: a.owner } : {}),
      ...(a.hostPort !== undefined ? { ports: [{ containerPort: 80, hostPort: a.hostPort }] } : {}),
    });
    if (a.spread) p.spreadBy = 'zone';
    return p;
  });
}

/** Plain data for comparison: Set/Map as sorted arrays, topology compared apart. */
function plain(nodes: readonly SchedNode[]): unknown[] {
  return nodes.map((n) => ({ ...n, usedHostPorts: [...n.usedHostPorts].sort(), podsByOwner: [...n.podsByOwner].sort(), topology: undefined }));
}

function expectSame(live: LiveSnapshot, store: Store, indexed: ReadonlySet<string>): void {
  const want = buildSchedNodes(store.list('Node'), store.list('Pod'), OPTS);
  const got = live.acquire();
  try {
    expect(plain(got)).toStrictEqual(plain(want));
    const ref = want[0]?.topology;
    const mine = got[0]?.topology;
    if (ref === undefined || mine === undefined) return;
    for (const key of indexed)
      for (const value of LABEL_VALUES) for (const o of ['web', 'db']) expect(mine.count(key, value, o), `${key}=${value} ${o}`).toBe(ref.count(key, value, o));
  } finally {
    live.release();
  }
}

function run(actions: readonly Action[], indexFirst: readonly string[] = []): void {
  const store = new MemoryStore({ now: () => new Date('2024-01-01T00:00:00Z') });
  const live = new LiveSnapshot(OPTS);
  live.reset(store.list('Node'), store.list('Pod'));
  store.watch((ev) => live.apply(ev), ['Pod', 'Node']);
  const indexed = new Set<string>(indexFirst);
  expectSame(live, store, indexed);
  actions.forEach((a, step) => {
    switch (a.t) {
      case 'node':
        put(store, nodeObject(a));
        break;
      case 'nodeDeleting': {
        const cur = store.get('Node', a.name);
        if (cur === undefined || cur.metadata.deletionTimestamp !== undefined) break;
        const next = structuredClone(cur) as NodeObject;
        next.metadata.deletionTimestamp = '2024-01-01T00:00:00Z';
        store.update(next);
        break;
      }
      case 'nodeDelete':
        store.delete('Node', a.name);
        break;
      case 'pod':
        put(store, podObject(a));
        break;
      case 'phase':
        editPod(store, a.name, (p) => (p.status.phase = a.phase));
        break;
      case 'bind':
        editPod(store, a.name, (p) => {
          if (a.node === undefined) delete p.spec.nodeName;
          else p.spec.nodeName = a.node;
        });
        break;
      case 'resize':
        editPod(store, a.name, (p) => {
          const c = p.spec.containers[0]!;
          c.resources = { requests: { cpu: `${a.cpu}m` } };
          c.ports = a.hostPort === undefined ? [] : [{ containerPort: 80, hostPort: a.hostPort, protocol: 'TCP' }];
        });
        break;
      case 'owner':
        editPod(store, a.name, (p) => {
          if (a.owner === undefined) delete p.metadata.ownerName;
          else p.metadata.ownerName = a.owner;
        });
        break;
      case 'podDeleting':
        editPod(store, a.name, (p) => (p.metadata.deletionTimestamp = '2024-01-01T00:00:00Z'));
        break;
      case 'podDelete':
        store.delete('Pod', a.name);
        break;
      case 'twice':
        // Two writes of one pod in one transaction: two events, each with its own `old`.
        store.transaction(() => {
          editPod(store, a.name, (p) => (p.spec.nodeName = a.node));
          editPod(store, a.name, (p) => (p.status.phase = a.phase));
        });
        break;
      case 'index':
        indexed.add(a.key);
        break;
      case 'pass': {
        // The same batch against the reference and the live view: same decisions; release() of
        // just the booked nodes (as SchedulingController does) must leave the live view as it
        // was (the next expectSame checks that).
        const ref = buildSchedNodes(store.list('Node'), store.list('Pod'), OPTS);
        const want = scheduleWithVolumes(pending(a, step), ref, new Map());
        const nodes = live.acquire();
        let got: ReturnType<typeof scheduleWithVolumes>;
        try {
          got = scheduleWithVolumes(pending(a, step), nodes, new Map());
        } catch (err) {
          live.release();
          throw err;
        }
        live.release(got.flatMap((d) => (d.kind === 'bound' ? [d.nodeName] : [])));
        expect(got).toStrictEqual(want);
        break;
      }
    }
    expectSame(live, store, indexed);
  });
  expect(live.stale).toBe(false);
}

describe('LiveSnapshot', () => {
  it('equals the full rebuild after every step of random pod and node writes', () => {
    // Keys indexed from the start (topology maintained through every write) or lazily by an `index` step.
    const scenario = fc.record({ indexFirst: fc.subarray(LABEL_KEYS), actions: fc.array(action, { minLength: 5, maxLength: 80 }) });
    fc.assert(
      fc.property(scenario, (s) => run(s.actions, s.indexFirst)),
      { numRuns: 400 },
    );
  });

  it('keeps the bookings of pods bound to a node that registers later, and of a node that comes back', () => {
    run([
      { t: 'index', key: 'zone' },
      { t: 'pod', name: 'p0', node: 'n1', owner: 'web', cpu: 250, hostPort: 80, eph: 500, phase: 'Running' },
      { t: 'node', name: 'n1', labels: { zone: 'a' }, cpu: 2000, ready: true, cordon: false, noInfo: false, disk: 10_000, taint: false },
      { t: 'nodeDelete', name: 'n1' },
      { t: 'node', name: 'n1', labels: { zone: 'b' }, cpu: 2000, ready: true, cordon: false, noInfo: false, disk: 10_000, taint: false },
      { t: 'pass', count: 3, owner: 'web', spread: true, hostPort: 80 },
      { t: 'node', name: 'n1', labels: { zone: 'c', rack: 'a' }, cpu: 4000, ready: true, cordon: false, noInfo: false, disk: 0, taint: true },
      { t: 'owner', name: 'p0', owner: 'db' },
      { t: 'phase', name: 'p0', phase: 'Failed' },
    ]);
  });

  it('becomes stale (and is rebuilt by its owner) on a MODIFIED pod without `old`', () => {
    const live = new LiveSnapshot();
    live.reset([], []);
    live.apply({ type: 'MODIFIED', object: mockPodObject('p', { nodeName: 'n' }) });
    expect(live.stale).toBe(true);
    live.reset([mockNodeObject('n')], [mockPodObject('p', { nodeName: 'n', cpu: '1' })]);
    expect(live.stale).toBe(false);
    expect(live.acquire()[0]?.requested).toEqual({ cpuMillis: 1000, memoryBytes: 0, pods: 1 });
    live.release();
  });

  it("takes a usage report's free disk, says when it grew enough to retry waiting pods, and forgets nodes a reset no longer lists", () => {
    const withDisk = (name: string, free: number): NodeObject => {
      const n = mockNodeObject(name);
      n.status.usage = { cpuPercent: 0, memoryUsedBytes: 0, diskFreeBytes: free, at: '2024-01-01T00:00:00Z' };
      return n;
    };
    const live = new LiveSnapshot();
    live.reset([withDisk('a', 100 * 2 ** 20), withDisk('b', 100 * 2 ** 20)], []);
    const free = (name: string): number | undefined => {
      const v = live.acquire().find((n) => n.name === name)?.storage?.diskFreeBytes;
      live.release();
      return v;
    };
    expect(live.setDiskFree('a', 100 * 2 ** 20 + DISK_GAIN_RETRY_BYTES - 1)).toBe(false); // drift
    expect(live.setDiskFree('a', 50 * 2 ** 20)).toBe(false); // less room
    expect(free('a')).toBe(50 * 2 ** 20);
    expect(live.setDiskFree('a', 50 * 2 ** 20 + DISK_GAIN_RETRY_BYTES)).toBe(true); // room freed
    expect(live.setDiskFree('unknown', 1)).toBe(true); // nothing known before
    live.setDiskFree('b', 7 * 2 ** 20);
    // A reset without b (deleted while the snapshot was stale) forgets b's report: b registering
    // again is judged by its own new status, not a report from before it went.
    live.reset([withDisk('a', 1)], []);
    expect(free('a')).toBe(50 * 2 ** 20 + DISK_GAIN_RETRY_BYTES);
    live.reset([withDisk('a', 1), withDisk('b', 900 * 2 ** 20)], []);
    expect(free('b')).toBe(900 * 2 ** 20);
  });
});
