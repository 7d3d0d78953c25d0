/**
 * Store memory benchmark (issue 4): JS heap of the hub's store holding N nodes and 10×N pods,
 * load time, and the cost of pod status writes.
 *
 * Run: npx tsx scripts/bench/store-memory.ts [--nodes 10000] [--pods-per-node 10] [--writes 10000] [--rounds 5] [--modes off,on]
 *
 * The parent builds a realistic SQLite store on disk in a temp dir: Deployments of 100
 * replicas (a few containers with env, ports, resources, probes, mounts, the template hash
 * annotation and deployment label the deployment controller stamps), every pod bound and
 * Running with the status shape the node controller writes from agent reports. Then, for each
 * mode (structural sharing on/off), a fresh `node --expose-gc` child opens the store and
 * measures heap after load, then times pod status writes (a container restart: new
 * containerId, startedAt, restartCount), 10 pods of one node per transaction as the node
 * controller ingests an observed set: once on the SQLite store (synchronous=FULL, so this
 * includes fsync) and once on a MemoryStore holding the same pods (the CPU cost of the write
 * path alone, CPU time, best of --rounds). Bytes/object divides the heap by pods + nodes. Prints a
 * markdown table.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { API_VERSION, PodSpecSchema } from '../../protocol/manifest.js';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import { MemoryStore } from '../../hub/store/memory-store.js';
import { SqliteStore } from '../../hub/store/sqlite-store.js';
import type { Store } from '../../hub/store/store.js';

const HERE = fileURLToPath(import.meta.url);
const T0 = Date.parse('2025-03-01T08:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : def;
}

/** Deterministic hex ids (container ids, uids) so runs are comparable. */
let seq = 0;
function hex(len: number): string {
  let s = '';
  while (s.length < len) s += ((++seq * 2654435761) >>> 0).toString(16).padStart(8, '0');
  return s.slice(0, len);
}
const uuid = (): string => {
  const h = hex(32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

function nodeObject(i: number): Parameters<Store['create']>[0] {
  const name = `node-${String(i).padStart(5, '0')}`;
  const arch = i % 10 < 6 ? 'arm64' : i % 10 < 9 ? 'arm' : 'amd64';
  const mem = arch === 'amd64' ? 16 * 2 ** 30 : arch === 'arm64' ? 8 * 2 ** 30 : 2 ** 30;
  const ts = iso(T0 + i * 37);
  const info: NonNullable<NodeObject['status']['info']> = {
    arch,
    rawArch: arch === 'arm64' ? 'aarch64' : arch === 'arm' ? 'armv7l' : 'x86_64',
    os: 'Debian GNU/Linux 12 (bookworm)',
    kernel: '6.6.51+rpt-rpi-v8',
    hostname: name,
    cpu: { cores: 4, model: 'Cortex-A72' },
    memoryBytes: mem,
    disk: { totalBytes: 62_000_000_000, freeBytes: 40_000_000_000 + i, path: '/var/lib/orchard' },
    engine: { name: 'docker', version: '20.10.24', apiVersion: '1.41', memoryLimit: true, cpuLimit: true },
    agentVersion: '0.1.0',
    addresses: [`10.${(i >> 8) & 255}.${i & 255}.${(i % 200) + 10}`],
  };
  return {
    apiVersion: API_VERSION,
    kind: 'Node',
    metadata: {
      name,
      labels: { zone: i % 2 === 0 ? 'north' : 'south', 'orchard.dev/arch': arch, 'orchard.dev/hostname': name },
      annotations: {},
      uid: uuid(),
      creationTimestamp: ts,
    },
    spec: { unschedulable: false, taints: [] },
    status: {
      info,
      capacity: { cpuMillis: 4000, memoryBytes: mem, pods: 110 },
      usage: { cpuPercent: 12.5 + (i % 50), memoryUsedBytes: 400_000_000 + i * 1000, diskFreeBytes: 40_000_000_000 + i, at: ts },
      conditions: [
        { type: 'MemoryLimitUnsupported', status: 'False', lastTransitionTime: ts },
        { type: 'Ready', status: 'True', reason: 'AgentReporting', message: 'the agent is connected and reporting', lastTransitionTime: ts },
      ],
      lastHeartbeatTime: ts,
      observedGeneration: 3,
    },
  } as Parameters<Store['create']>[0];
}

/** The template spec of deployment d, with zod's defaults as the API stores it. */
function templateSpec(d: number): Pod['spec'] {
  const app = `svc-${d}`;
  return PodSpecSchema.parse({
    containers: [
      {
        name: 'app',
        image: `registry.example.internal/fleet/${app}:1.${d % 7}.${d % 13}`,
        env: [
          { name: 'APP_NAME', value: app },
          { name: 'LOG_LEVEL', value: 'info' },
          { name: 'HTTP_PORT', value: '8080' },
          { name: 'UPSTREAM_URL', value: `http://gateway.fleet.internal:9000/${app}` },
          { name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: `${app}-db`, key: 'password' } } },
        ],
        envFrom: [{ configMapRef: { name: `${app}-config` } }],
        ports: [
          { name: 'http', containerPort: 8080 },
          { name: 'metrics', containerPort: 9100 },
        ],
        resources: { requests: { cpu: '50m', memory: '32Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
        readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 5 },
        volumeMounts: [
          { name: 'data', mountPath: '/data' },
          { name: 'config', mountPath: '/etc/app', readOnly: true },
        ],
      },
      {
        name: 'log-shipper',
        image: 'registry.example.internal/fleet/fluent-bit:2.2.0',
        args: ['--config', '/etc/fluent-bit/fluent-bit.conf'],
        env: [
          { name: 'TARGET', value: 'logs.fleet.internal:24224' },
          { name: 'SERVICE', value: app },
        ],
        resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '48Mi' } },
        volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: true }],
      },
      {
        name: 'node-exporter',
        image: 'registry.example.internal/fleet/node-exporter:1.7.0',
        ports: [{ containerPort: 9101 }],
        resources: { requests: { cpu: '5m', memory: '8Mi' } },
      },
    ],
    tolerations: [{ key: 'sd-card', operator: 'Exists', effect: 'PreferNoSchedule' }],
    volumes: [
      { name: 'data', emptyDir: {} },
      { name: 'config', configMap: { name: `${app}-config` } },
    ],
  }) as Pod['spec'];
}

function podObject(d: number, r: number, nodeIndex: number, nodeName: string, spec: Pod['spec']): Parameters<Store['create']>[0] {
  const dep = `svc-${d}`;
  const name = `${dep}-${hex(5)}`;
  const t = T0 + 60_000 + d * 1000 + r * 7;
  const containerStatuses = spec.containers.map((c, i) => ({
    name: c.name,
    image: c.image,
    state: 'running',
    restartCount: 0,
    ready: true,
    containerId: hex(64),
    startedAt: iso(t + 3000 + i * 150),
  }));
  return {
    apiVersion: API_VERSION,
    kind: 'Pod',
    metadata: {
      name,
      uid: uuid(),
      creationTimestamp: iso(t),
      ownerName: dep,
      labels: { app: dep, tier: d % 3 === 0 ? 'edge' : 'backend', 'orchard.dev/deployment': dep },
      annotations: { 'orchard.dev/template-hash': `h${((d * 2654435761) >>> 0).toString(16)}` },
    },
    spec: { ...structuredClone(spec), nodeName },
    status: {
      phase: 'Running',
      conditions: [
        { type: 'PodScheduled', status: 'True', lastTransitionTime: iso(t + 40) },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: iso(t + 5000) },
        { type: 'Ready', status: 'True', lastTransitionTime: iso(t + 5000) },
      ],
      containerStatuses,
      startTime: iso(t + 2900),
      hostIP: `10.${(nodeIndex >> 8) & 255}.${nodeIndex & 255}.${(nodeIndex % 200) + 10}`,
    },
  } as Parameters<Store['create']>[0];
}

function build(dir: string, nodes: number, podsPerNode: number, replicas: number): void {
  const store = SqliteStore.open(dir, { now: () => new Date(T0) });
  const total = nodes * podsPerNode;
  store.transaction(() => {
    for (let i = 0; i < nodes; i++) store.create(nodeObject(i));
    for (let p = 0, d = 0; p < total; d++) {
      const spec = templateSpec(d);
      for (let r = 0; r < replicas && p < total; r++, p++) {
        const n = (p * 7919) % nodes; // spread a deployment's replicas over the fleet
        store.create(podObject(d, r, n, `node-${String(n).padStart(5, '0')}`, spec));
      }
    }
  });
  store.close();
}

/** A container restart as the agent reports it: new id, new startedAt, restartCount + 1. */
function restarted(pod: Pod, k: number): Pod {
  const next = structuredClone(pod) as Pod;
  const c = next.status.containerStatuses[0];
  if (c !== undefined) {
    c.containerId = hex(64);
    c.restartCount += 1;
    c.startedAt = iso(T0 + 86_400_000 + k);
  }
  return next;
}

/** Wall-clock ns, or with `cpu` this process's CPU ns (less disturbed by other load on the machine). */
function clock(cpu: boolean): () => number {
  if (!cpu) return () => Number(process.hrtime.bigint());
  return () => {
    const u = process.cpuUsage();
    return (u.user + u.system) * 1000;
  };
}

/** Updates grouped per node, one transaction per node (as the node controller ingests an observed set). */
function timeWrites(store: Store, drafts: Pod[][], cpu = false): number {
  const now = clock(cpu);
  let writes = 0;
  const t = now();
  for (const group of drafts) {
    store.transaction(() => {
      for (const d of group) store.update(d);
    });
    writes += group.length;
  }
  return (now() - t) / writes;
}

/** GC pause time (ms) spent while fn ran; gc entries arrive asynchronously, hence the pause. */
async function gcTimeOf<T>(fn: () => T): Promise<{ value: T; gcMs: number }> {
  let gcMs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  });
  obs.observe({ entryTypes: ['gc'] });
  const value = fn();
  await new Promise((r) => setTimeout(r, 100));
  obs.disconnect();
  return { value, gcMs };
}

interface Measured {
  mode: string;
  nodes: number;
  pods: number;
  heapBytes: number;
  loadMs: number;
  sqliteNsPerWrite: number;
  sqliteGcMs: number;
  memNsPerWrite: number;
  memNsPerCreate: number;
  heapAfterWritesBytes: number;
}

async function measure(dir: string, sharing: boolean, writes: number, rounds: number): Promise<Measured> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run the measuring child with --expose-gc');
  gc();
  gc();
  const base = process.memoryUsage().heapUsed;
  const t = performance.now();
  // structuralSharing: false is the store as it was before sharing (issue 4): the baseline.
  const store = SqliteStore.open(dir, { structuralSharing: sharing });
  const loadMs = performance.now() - t;
  gc();
  gc();
  const heapBytes = process.memoryUsage().heapUsed - base;
  const pods = store.count('Pod');
  const nodes = store.count('Node');

  // Pick whole nodes (all their pods) until `writes` pods.
  const byNode: Pod[][] = [];
  let picked = 0;
  for (let n = 0; picked < writes && n < nodes; n += Math.max(1, Math.floor(nodes / 1000))) {
    const group = store.list('Pod', { nodeName: `node-${String(n).padStart(5, '0')}` }).slice(0, writes - picked);
    byNode.push(group);
    picked += group.length;
  }
  let sqliteDrafts = byNode.map((g) => g.map((p, i) => restarted(p, i)));
  const sq = await gcTimeOf(() => timeWrites(store, sqliteDrafts));
  sqliteDrafts = []; // so the heap below is the store's, not the drafts'
  gc();
  gc();
  const heapAfterWritesBytes = process.memoryUsage().heapUsed - base;

  // The write path without the disk: a MemoryStore holding the same pods, timed in CPU time,
  // best of a few rounds: the CPU cost is what this isolates and other load is noise.
  const current = byNode.map((g) => g.map((p) => store.get('Pod', p.metadata.name) as Pod));
  const cpuNow = clock(true);
  let memNsPerCreate = Infinity;
  let memNsPerWrite = Infinity;
  for (let round = 0; round < rounds; round++) {
    const mem = new MemoryStore({ structuralSharing: sharing });
    const tc = cpuNow();
    const seeded = current.map((g) => g.map((p) => mem.create(p)));
    memNsPerCreate = Math.min(memNsPerCreate, (cpuNow() - tc) / picked);
    const memDrafts = seeded.map((g) => g.map((p, i) => restarted(p, i)));
    memNsPerWrite = Math.min(memNsPerWrite, timeWrites(mem, memDrafts, true));
    mem.close();
  }
  store.close();
  return {
    mode: sharing ? 'sharing on' : 'sharing off',
    nodes,
    pods,
    heapBytes,
    loadMs,
    sqliteNsPerWrite: sq.value,
    sqliteGcMs: sq.gcMs,
    memNsPerWrite,
    memNsPerCreate,
    heapAfterWritesBytes,
  };
}

function table(rows: Measured[]): string {
  const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
  const head = [
    'mode',
    'nodes',
    'pods',
    'heap after load (MiB)',
    'bytes/object',
    'load (s)',
    'status write, SQLite FULL (µs)',
    'GC in those writes (ms)',
    'heap after writes (MiB)',
    'status write, memory (CPU µs)',
    'create, memory (CPU µs)',
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    lines.push(
      `| ${[
        r.mode,
        r.nodes.toLocaleString('en-US'),
        r.pods.toLocaleString('en-US'),
        mib(r.heapBytes),
        Math.round(r.heapBytes / (r.pods + r.nodes)).toLocaleString('en-US'),
        (r.loadMs / 1000).toFixed(2),
        (r.sqliteNsPerWrite / 1000).toFixed(1),
        r.sqliteGcMs.toFixed(0),
        mib(r.heapAfterWritesBytes),
        (r.memNsPerWrite / 1000).toFixed(1),
        (r.memNsPerCreate / 1000).toFixed(1),
      ].join(' | ')} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const measureDir = arg('measure', '');
  const writes = Number(arg('writes', '10000'));
  const rounds = Number(arg('rounds', '5'));
  if (measureDir !== '') {
    const r = await measure(measureDir, arg('sharing', 'on') === 'on', writes, rounds);
    process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
    return;
  }
  const nodes = Number(arg('nodes', '10000'));
  const podsPerNode = Number(arg('pods-per-node', '10'));
  const replicas = Number(arg('replicas', '100'));
  const modes = arg('modes', 'off,on').split(',');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orchard-store-bench-'));
  try {
    const t = performance.now();
    build(dir, nodes, podsPerNode, replicas);
    const dbBytes =
      fs.statSync(path.join(dir, 'orchard.db')).size +
      (fs.existsSync(path.join(dir, 'orchard.db-wal')) ? fs.statSync(path.join(dir, 'orchard.db-wal')).size : 0);
    console.error(
      `built ${nodes} nodes / ${nodes * podsPerNode} pods in ${((performance.now() - t) / 1000).toFixed(1)} s (${(dbBytes / 2 ** 20).toFixed(0)} MiB on disk)`,
    );
    const rows: Measured[] = [];
    for (const mode of modes) {
      // A fresh process per mode: nothing from the build or the other mode stays on the heap.
      const child = spawnSync(
        process.execPath,
        [
          '--expose-gc',
          '--max-old-space-size=4096',
          '--import',
          'tsx',
          HERE,
          '--measure',
          dir,
          '--sharing',
          mode,
          '--writes',
          String(writes),
          '--rounds',
          String(rounds),
        ],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'inherit'],
          maxBuffer: 1 << 24,
        },
      );
      const line = child.stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (child.status !== 0 || line === undefined) throw new Error(`measuring child (${mode}) failed with status ${String(child.status)}`);
      rows.push(JSON.parse(line.slice('RESULT '.length)) as Measured);
    }
    console.log(table(rows));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
