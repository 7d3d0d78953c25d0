/**
 * One scheduling pass at fleet scale: the full snapshot rebuild (buildSchedNodes over every node
 * and bound pod, what SchedulingController did before issue 4) against the LiveSnapshot kept from
 * watch events. Fills a MemoryStore with N nodes and M bound pods (Deployments of 100 replicas),
 * then times a pass for P pending pods: ms per pass and bytes allocated (heap growth with GC
 * forced before and young-generation space large enough that no GC runs inside a pass).
 *
 * Run: node --expose-gc --max-semi-space-size=256 --import tsx scripts/bench/scheduler-pass.ts [nodes] [pods] [pending]
 * (defaults 10000 100000 100)
 */
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { API_VERSION } from '../../protocol/manifest.js';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import { volumeBindings } from '../../hub/controllers/volume-records.js';
import { LiveSnapshot } from '../../hub/scheduler/live-snapshot.js';
import { mulberry32 } from '../../hub/scheduler/random.js';
import { buildSchedNodes, podToSchedPod } from '../../hub/scheduler/snapshot.js';
import { mockNodeObject, mockPodObject } from '../../hub/scheduler/testing.js';
import type { SchedNode } from '../../hub/scheduler/types.js';
import { scheduleWithVolumes } from '../../hub/scheduler/volume-pins.js';
import { MemoryStore } from '../../hub/store/memory-store.js';

const nodeCount = Number(process.argv[2] ?? 10_000);
const podCount = Number(process.argv[3] ?? 100_000);
const pendingCount = Number(process.argv[4] ?? 100);
const REPLICAS = 100;

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('run with node --expose-gc (see the header)');
  process.exit(1);
}
let gcs = 0;
new PerformanceObserver((list) => (gcs += list.getEntries().length)).observe({ entryTypes: ['gc'] });

const store = new MemoryStore();
const rnd = mulberry32(7);
const tFill = performance.now();
store.transaction(() => {
  for (let i = 0; i < nodeCount; i++) {
    const n: NodeObject = mockNodeObject(`node-${String(i).padStart(5, '0')}`, {
      arch: rnd() < 0.7 ? 'arm64' : 'amd64',
      cores: 4,
      memoryBytes: 4 * 1024 ** 3,
      labels: { zone: `z${i % 4}` },
    });
    store.create(n);
  }
});
// Bound pods: one spec per Deployment (as stamped from a template), spread round-robin.
const template = (owner: string): Pod => mockPodObject('x', { owner, cpu: '100m', memory: '64Mi' });
for (let d = 0; d * REPLICAS < podCount; d++) {
  const owner = `app-${d}`;
  const t = template(owner);
  store.transaction(() => {
    for (let r = 0; r < REPLICAS && d * REPLICAS + r < podCount; r++) {
      const i = d * REPLICAS + r;
      store.create({
        ...t,
        metadata: { name: `${owner}-${r}`, ownerName: owner, labels: {}, annotations: {} },
        spec: { ...t.spec, nodeName: `node-${String((i * 7919) % nodeCount).padStart(5, '0')}` },
      });
    }
  });
}
// The deploy in progress: its pods wait for a pass.
const pendingTemplate = template('new-app');
store.transaction(() => {
  for (let r = 0; r < pendingCount; r++) {
    store.create({
      apiVersion: API_VERSION,
      kind: 'Pod',
      metadata: { name: `new-app-${r}`, ownerName: 'new-app', labels: {}, annotations: {} },
      spec: pendingTemplate.spec,
      status: { phase: 'Pending', conditions: [], containerStatuses: [] },
    });
  }
});
console.log(`filled ${nodeCount} nodes, ${store.count('Pod')} pods in ${Math.round(performance.now() - tFill)} ms`);

const pending = store.list('Pod', { ownerName: 'new-app' });
const placement = { strategy: 'spread' as const, spreadBy: 'zone' };
const schedPods = () => pending.map((p) => podToSchedPod(p, { placement }));

const live = new LiveSnapshot();
const tSeed = performance.now();
live.reset(store.list('Node'), store.list('Pod'));
console.log(`LiveSnapshot.reset (once, at start-up): ${Math.round(performance.now() - tSeed)} ms`);

function fullPass(): number {
  const nodes = buildSchedNodes(
    store.list('Node'),
    store.list('Pod').filter((p) => p.spec.nodeName),
    {},
  );
  return bound(scheduleWithVolumes(schedPods(), nodes, volumeBindings(store)));
}
function livePass(): number {
  const nodes: SchedNode[] = live.acquire();
  try {
    return bound(scheduleWithVolumes(schedPods(), nodes, volumeBindings(store)));
  } finally {
    live.release();
  }
}
function bound(ds: ReadonlyArray<{ kind: string }>): number {
  return ds.filter((d) => d.kind === 'bound').length;
}

function measure(label: string, pass: () => number, runs: number): Record<string, string | number> {
  for (let i = 0; i < 3; i++) pass(); // warm up
  const ms: number[] = [];
  const bytes: number[] = [];
  let gcInside = 0;
  let placed = 0;
  for (let i = 0; i < runs; i++) {
    gc!();
    const g0 = gcs;
    const h0 = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    placed = pass();
    const t1 = performance.now();
    const h1 = process.memoryUsage().heapUsed;
    gcInside += gcs - g0;
    ms.push(t1 - t0);
    bytes.push(h1 - h0);
  }
  ms.sort((a, b) => a - b);
  bytes.sort((a, b) => a - b);
  const mid = Math.floor(runs / 2);
  return {
    pass: label,
    'ms (median)': Number(ms[mid]!.toFixed(2)),
    'ms (min)': Number(ms[0]!.toFixed(2)),
    'MiB allocated (median)': Number((bytes[mid]! / 1024 ** 2).toFixed(2)),
    'GCs inside passes': gcInside,
    bound: placed,
  };
}

// Per-event upkeep of the live view: status-only pod writes (the bulk during a deploy) and bindings.
function upkeep(): Record<string, string | number> {
  const sample = store.list('Pod', { ownerName: 'app-1' });
  const events = sample.map((p) => ({ type: 'MODIFIED' as const, old: p, object: { ...p, status: { ...p.status, phase: 'Running' as const } } }));
  const t0 = performance.now();
  for (let k = 0; k < 100; k++) for (const ev of events) live.apply(ev);
  const statusUs = ((performance.now() - t0) * 1000) / (100 * events.length);
  const binds = pending.map((p) => ({ old: p, next: { ...p, metadata: { ...p.metadata, generation: 2 }, spec: { ...p.spec, nodeName: 'node-00001' } } }));
  const t1 = performance.now();
  for (let k = 0; k < 100; k++) {
    for (const b of binds) live.podChanged(b.old, b.next);
    for (const b of binds) live.podChanged(b.next, b.old);
  }
  const bindUs = ((performance.now() - t1) * 1000) / (200 * binds.length);
  return { 'status-only pod event (µs)': Number(statusUs.toFixed(3)), 'bind/unbind pod event (µs)': Number(bindUs.toFixed(3)) };
}

console.table([measure('full rebuild (before)', fullPass, 7), measure('LiveSnapshot (after)', livePass, 25)]);
console.table([upkeep()]);
