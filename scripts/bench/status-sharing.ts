/**
 * Store memory of pods going Running (issue 4): heap the store holds after 20,000 replicas of 200
 * Deployments, created Pending and bound, each get their first Running status through
 * `store.update` (the node controller's path), and the CPU per update. It isolates what the
 * structural sharing of updates buys (hub/store/structural-share.ts): a first Running status has
 * no previous conditions or container statuses to share with, only its siblings'.
 *
 * Run: npx tsx --expose-gc scripts/bench/status-sharing.ts [--pods 20000] [--rounds 3]
 * Prints a markdown table, one row per round.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { API_VERSION } from '../../protocol/manifest.js';
import type { Pod } from '../../protocol/objects.js';
import { MemoryStore } from '../../hub/store/memory-store.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive whole number`);
  return v;
};
const PODS = arg('pods', 20_000);
const ROUNDS = arg('rounds', 3);
const REPLICAS = 100;
const gcFn = (globalThis as { gc?: () => void }).gc;
if (gcFn === undefined) throw new Error('run with --expose-gc (npx tsx --expose-gc …)');
const gc = (): void => {
  for (let i = 0; i < 3; i++) gcFn();
};
const hex = (n: number): string => randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n);
const iso = (t: number): string => new Date(t).toISOString();
const T0 = Date.parse('2026-11-27T00:00:00Z');
const SPEC = { containers: [{ name: 'app', image: 'bench.local/pause:1', imagePullPolicy: 'IfNotPresent', env: [], envFrom: [], ports: [], resources: { requests: { cpu: '10m', memory: '8Mi' } }, volumeMounts: [] }], tolerations: [], restartPolicy: 'Always', network: 'bridge', terminationGracePeriodSeconds: 10, volumes: [], imagePullSecrets: [] };

function round(): { bytesPerPod: number; pendingBytesPerPod: number; cpuMicros: number } {
  gc();
  const empty = process.memoryUsage().heapUsed;
  const store = new MemoryStore();
  const names: string[] = [];
  for (let p = 0; p < PODS; p++) {
    const dep = `bench-${Math.floor(p / REPLICAS)}`;
    const name = `${dep}-${p % REPLICAS}${hex(5)}`;
    names.push(name);
    store.create({
      apiVersion: API_VERSION, kind: 'Pod',
      metadata: { name, uid: randomUUID(), ownerName: dep, labels: { app: dep, 'orchard.dev/deployment': dep }, annotations: { 'orchard.dev/template-hash': 'a1b2c3d4e5' } },
      spec: { ...structuredClone(SPEC), nodeName: `hollow-${p % (PODS / 10)}` },
      status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True', lastTransitionTime: iso(T0 + p) }], containerStatuses: [] },
    } as unknown as Parameters<MemoryStore['create']>[0]);
  }
  gc();
  const pending = process.memoryUsage().heapUsed;
  const cpu0 = process.cpuUsage();
  names.forEach((name, k) => {
    const p = structuredClone(store.get('Pod', name)) as Pod;
    // Agents report in bursts, so neighbours often carry the same millisecond.
    const t = T0 + 60_000 + Math.floor(k / 50) * 3;
    p.status = {
      ...p.status, phase: 'Running', startTime: iso(t - 5),
      conditions: [...p.status.conditions, { type: 'ContainersReady', status: 'True', lastTransitionTime: iso(t) }, { type: 'Ready', status: 'True', lastTransitionTime: iso(t) }],
      containerStatuses: [{ name: 'app', containerId: hex(64), image: 'bench.local/pause:1', state: 'running', restartCount: 0, ready: true, startedAt: iso(t - 5) }],
    } as Pod['status'];
    store.update(JSON.parse(JSON.stringify(p)) as Pod);
  });
  const cpu = process.cpuUsage(cpu0);
  if (store.get('Pod', names[PODS - 1] ?? '')?.status.phase !== 'Running') throw new Error('updates did not land');
  gc();
  const running = process.memoryUsage().heapUsed;
  const out = { bytesPerPod: (running - empty) / PODS, pendingBytesPerPod: (pending - empty) / PODS, cpuMicros: (cpu.user + cpu.system) / PODS };
  store.close();
  return out;
}

console.log(`| round | pods | store heap, Pending (B/pod) | store heap, Running (B/pod) | first-Running update (CPU µs/pod) |`);
console.log(`|---|---|---|---|---|`);
for (let r = 1; r <= ROUNDS; r++) {
  const x = round();
  console.log(`| ${r} | ${PODS.toLocaleString('en-US')} | ${x.pendingBytesPerPod.toFixed(0)} | ${x.bytesPerPod.toFixed(0)} | ${x.cpuMicros.toFixed(1)} |`);
}
