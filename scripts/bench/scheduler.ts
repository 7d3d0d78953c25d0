/**
 * Scheduler micro-benchmark: pods/s for scheduleBatch at 1,000 and 5,000 nodes.
 * Run: npx tsx scripts/bench/scheduler.ts [podsPerRun] [nodeCounts, default 1000,5000]
 *
 * Fleet: mixed arch (50% arm64, 30% arm, 20% amd64) and sizes (Pi 3 to small x86 boxes),
 * two zones, a few tainted and cordoned nodes. Pods: Deployments of 10–50 replicas with mixed
 * arch constraints, requests, node selectors and a few host ports; replicas share one spec, as
 * pods stamped from a template do. Each row schedules a fresh copy of the fleet.
 */
import { performance } from 'node:perf_hooks';
import { PodSpecSchema } from '../../protocol/manifest.js';
import type { Arch } from '../../protocol/manifest.js';
import { mulberry32 } from '../../hub/scheduler/random.js';
import { scheduleBatch } from '../../hub/scheduler/scheduler.js';
import type { ScheduleOptions } from '../../hub/scheduler/scheduler.js';
import type { SchedNode, SchedPod } from '../../hub/scheduler/types.js';

const Gi = 1024 ** 3;
const Mi = 1024 ** 2;

function makeNodes(count: number, seed: number): SchedNode[] {
  const rnd = mulberry32(seed);
  const shapes: Array<{ arch: Arch; cpu: number; mem: number; w: number }> = [
    { arch: 'arm64', cpu: 4000, mem: 4 * Gi, w: 0.35 },
    { arch: 'arm64', cpu: 4000, mem: 8 * Gi, w: 0.15 },
    { arch: 'arm', cpu: 4000, mem: 1 * Gi, w: 0.3 },
    { arch: 'amd64', cpu: 8000, mem: 16 * Gi, w: 0.2 },
  ];
  return Array.from({ length: count }, (_, i) => {
    let r = rnd();
    const shape = shapes.find((s) => (r -= s.w) < 0) ?? shapes[0]!;
    return {
      name: `node-${i}`,
      labels: { zone: rnd() < 0.5 ? 'north' : 'south' },
      arch: shape.arch,
      ready: rnd() > 0.01,
      unschedulable: rnd() < 0.01,
      taints:
        rnd() < 0.05
          ? [{ key: 'sd-card', effect: 'PreferNoSchedule' as const }]
          : rnd() < 0.02
            ? [{ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' as const }]
            : [],
      allocatable: { cpuMillis: shape.cpu - 100, memoryBytes: shape.mem - 64 * Mi, pods: 110 },
      requested: { cpuMillis: 0, memoryBytes: 0, pods: 0 },
      usedHostPorts: new Set<string>(),
      podsByOwner: new Map<string, number>(),
    };
  });
}

function makePods(count: number, seed: number): SchedPod[] {
  const rnd = mulberry32(seed);
  const pods: SchedPod[] = [];
  const archChoices: Array<Arch[] | undefined> = [undefined, undefined, ['arm64'], ['arm64', 'amd64'], ['arm'], ['amd64']];
  let d = 0;
  while (pods.length < count) {
    const owner = `deploy-${d++}`;
    const replicas = 10 + Math.floor(rnd() * 41);
    const arch = archChoices[Math.floor(rnd() * archChoices.length)];
    const cpu = [0, 50, 100, 100, 250][Math.floor(rnd() * 5)]!;
    const mem = [0, 32, 64, 128, 256][Math.floor(rnd() * 5)]!;
    const requests: Record<string, string> = {};
    if (cpu > 0) requests.cpu = `${cpu}m`;
    if (mem > 0) requests.memory = `${mem}Mi`;
    const hostPort = rnd() < 0.03 ? 8000 + d : undefined;
    const spec = PodSpecSchema.parse({
      containers: [{ name: 'app', image: 'busybox', resources: { requests }, ports: hostPort === undefined ? [] : [{ containerPort: 80, hostPort }] }],
      ...(arch === undefined ? {} : { arch }),
      ...(rnd() < 0.1 ? { nodeSelector: { zone: 'north' } } : {}),
    });
    const strategy = rnd() < 0.2 ? ('binpack' as const) : ('spread' as const);
    for (let r = 0; r < replicas && pods.length < count; r++) pods.push({ name: `${owner}-${r}`, owner, spec, strategy });
  }
  return pods;
}

function run(nodeCount: number, podCount: number, opts: ScheduleOptions) {
  const pods = makePods(podCount, 1);
  const nodes = makeNodes(nodeCount, 2);
  const t0 = performance.now();
  const ds = scheduleBatch(pods, nodes, opts);
  const ms = performance.now() - t0;
  const bound = ds.filter((x) => x.kind === 'bound').length;
  // Spread quality: the most replicas of one spread-strategy Deployment sharing a node.
  const spreadOwners = new Set(pods.filter((p) => p.strategy === 'spread').map((p) => p.owner));
  let maxSameOwner = 0;
  for (const n of nodes) for (const [o, k] of n.podsByOwner) if (spreadOwners.has(o) && k > maxSameOwner) maxSameOwner = k;
  return { ms, podsPerSec: (podCount / ms) * 1000, bound, unschedulable: podCount - bound, maxSameOwner };
}

const podCount = Number(process.argv[2] ?? 20_000);
run(1000, 5000, {}); // warm up the JIT
const rows: Array<Record<string, string | number>> = [];
const nodeCounts = (process.argv[3] ?? '1000,5000').split(',').map(Number);
for (const nodeCount of nodeCounts) {
  for (const [label, opts] of [
    ['sampled (default)', {}],
    ['score all', { percentageOfNodesToScore: 100 }],
  ] as const) {
    const r = run(nodeCount, podCount, opts);
    rows.push({
      nodes: nodeCount,
      pods: podCount,
      mode: label,
      ms: Math.round(r.ms),
      'pods/s': Math.round(r.podsPerSec),
      bound: r.bound,
      unschedulable: r.unschedulable,
      'max replicas/node': r.maxSameOwner,
    });
  }
}
console.table(rows);
