/**
 * One `GET /metrics` body at fleet size, without the fleet: a MemoryStore filled with N nodes and
 * N × P pods (1 container each, as the fleet bench's hollow pods), 1,000 deployments, and the
 * UsageStore fed one full usage report per node, then HubMetrics.text() timed R times. Prints ms
 * per scrape, the body size, and the heap before/after (usage store and history included).
 * Issue 16's goal: ≤ 1 s at 10,000 nodes / 100,000 pods, with bounded memory.
 *
 * Run: node --expose-gc --import tsx scripts/bench/scrape.ts [--nodes 10000] [--pods-per-node 10] [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { API_VERSION, PodSpecSchema } from '../../protocol/manifest.js';
import type { PodUsageReport } from '../../protocol/messages.js';
import { HubMetrics } from '../../hub/metrics/prometheus.js';
import { UsageStore } from '../../hub/metrics/usage-store.js';
import { MemoryStore } from '../../hub/store/memory-store.js';
import type { NewObject } from '../../hub/store/store.js';

const { values } = parseArgs({
  options: { nodes: { type: 'string', default: '10000' }, 'pods-per-node': { type: 'string', default: '10' }, rounds: { type: 'string', default: '5' } },
});
const N = Number(values.nodes);
const P = Number(values['pods-per-node']);
const R = Number(values.rounds);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const h0 = heap();
const store = new MemoryStore();
const now = { t: 1_700_000_000_000 };
const usage = new UsageStore({ now: () => now.t });
const spec = PodSpecSchema.parse({ containers: [{ name: 'app', image: 'bench.local/pause:1', resources: { requests: { cpu: '50m', memory: '32Mi' } } }] });
const DEPLOYMENTS = 1000;
for (let d = 0; d < DEPLOYMENTS; d++) {
  store.create({
    apiVersion: API_VERSION,
    kind: 'Deployment',
    metadata: { name: `app-${d}`, labels: {}, annotations: {} },
    spec: { replicas: (N * P) / DEPLOYMENTS, mode: 'replicated', template: { metadata: { labels: { app: `app-${d}` } }, spec } },
    status: { observedGeneration: 1, replicas: (N * P) / DEPLOYMENTS, readyReplicas: (N * P) / DEPLOYMENTS, availableReplicas: 0, unscheduledReplicas: 0 },
  } as unknown as NewObject<'Deployment'>);
}
for (let i = 0; i < N; i++) {
  const node = `node-${String(i).padStart(5, '0')}`;
  store.create({
    apiVersion: API_VERSION,
    kind: 'Node',
    metadata: { name: node, labels: {}, annotations: {} },
    spec: { unschedulable: false, taints: [] },
    status: {
      info: {
        arch: 'arm64',
        os: 'linux',
        cpu: { cores: 4 },
        memoryBytes: 8 * 2 ** 30,
        engine: { name: 'docker', version: '20.10', memoryLimit: true, cpuLimit: true },
        agentVersion: '0.1.0',
        addresses: [],
      },
      capacity: { cpuMillis: 4000, memoryBytes: 8 * 2 ** 30, pods: 110 },
      conditions: [
        { type: 'Ready', status: 'True' },
        { type: 'MemoryLimitUnsupported', status: 'False' },
      ],
    },
  } as unknown as NewObject<'Node'>);
  const pods: PodUsageReport = {};
  for (let j = 0; j < P; j++) {
    const name = `app-${(i * P + j) % DEPLOYMENTS}-${i.toString(36)}-${j}`;
    store.create({
      apiVersion: API_VERSION,
      kind: 'Pod',
      metadata: { name, labels: {}, annotations: {}, ownerName: `app-${(i * P + j) % DEPLOYMENTS}` },
      spec: { ...spec, nodeName: node },
      status: { phase: 'Running', conditions: [], containerStatuses: [] },
    } as unknown as NewObject<'Pod'>);
    pods[name] = { app: [1234.567 + j, 20_000_000 + j] };
  }
  usage.ingest({ node, usage: { cpuPercent: 25, memoryUsedBytes: 2 ** 30, at: '' }, pods, full: true });
}
const h1 = heap();
const metrics = new HubMetrics({ store, usage, queueDepths: () => ({ scheduling: 0 }), intakeBacklog: () => 0, mqttConnections: () => N });
const times: number[] = [];
let bytes = 0;
let peak = 0;
for (let r = 0; r < R; r++) {
  const t0 = performance.now();
  // As the /metrics route does: chunk by chunk (a socket would take each), the body never whole.
  bytes = 0;
  for await (const chunk of metrics.chunks()) {
    bytes += chunk.length;
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  }
  times.push(performance.now() - t0);
}
const h2 = heap();
times.sort((a, b) => a - b);
const st = usage.stats();
process.stdout.write(
  [
    `nodes ${N}, pods ${N * P}, deployments ${DEPLOYMENTS}; Node ${process.version}`,
    `scrape ms: min ${times[0]?.toFixed(0)}, median ${times[Math.floor(R / 2)]?.toFixed(0)}, max ${times.at(-1)?.toFixed(0)} (${R} rounds)`,
    `body ${mib(bytes)} MiB, ${bytes} chars`,
    `heap: empty ${mib(h0)} MiB, filled ${mib(h1)} MiB (usage store history ${mib(st.historyBytes)} MiB), peak during scrapes ${mib(peak)} MiB (sampled per chunk), after scrapes + GC ${mib(h2)} MiB`,
    '',
  ].join('\n'),
);
