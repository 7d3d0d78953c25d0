/**
 * A node's steady uplink (agent → hub bytes) with 10 pods, with and without per-container usage
 * (issue 16's budget: ≤ 0.25 kbit/s at the default 10 s interval). Three variants run at once,
 * each a real hub (TLS broker, SQLite) in this process and one real Agent (MemoryRuntime, the
 * host's SystemProbe for realistic node usage) whose MQTT connection passes through a counting
 * TCP pipe: bytes are what the agent writes to its TLS socket (MQTT + TLS records; TCP/IP
 * headers not included).
 *   before         no per-container usage (the runtime cannot measure)
 *   every-interval every container in every usage message (no change-only rule)
 *   change-only    the per-container rule (agent/pod-usage.ts), observed set republished every 300 s,
 *                  the whole node usage and node name in every heartbeat (the default before usage-delta)
 *   usage-delta    the default now: as change-only, and the short heartbeat once the hub says it reads
 *                  it (node usage by change only, agent/node-usage.ts; no node name)
 * Usage: 8 idle pods (0.01 cores, ≈ 20 MiB, ±1 % jitter) and 2 busy ones (0.3 cores, 60 MiB).
 *
 * Run: npx tsx scripts/bench/uplink.ts [--window-s 180] [--warm-s 15] [--variants before,change-only,usage-delta]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from '../../agent/agent.js';
import type { PodUsageRule } from '../../agent/pod-usage.js';
import { SystemProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import type { ContainerRuntime } from '../../agent/runtime/runtime.js';
import { Hub } from '../../hub/hub.js';
import { createLogger } from '../../hub/log.js';

const { values } = parseArgs({
  options: {
    'window-s': { type: 'string', default: '180' },
    'warm-s': { type: 'string', default: '15' },
    variants: { type: 'string', default: 'before,every-interval,change-only,usage-delta' },
  },
});
const windowMs = Number(values['window-s']) * 1000;
const warmMs = Number(values['warm-s']) * 1000;
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

interface Counter {
  up: number;
  port: number;
  close(): void;
}

/** A TCP pipe to `port` that counts the bytes its clients send. */
async function countingPipe(port: number): Promise<Counter> {
  const sockets = new Set<net.Socket>();
  const c: Counter = { up: 0, port: 0, close: () => undefined };
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => (c.up += d.length));
    client.pipe(upstream).pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  c.port = typeof addr === 'object' && addr ? addr.port : 0;
  c.close = () => {
    for (const s of sockets) s.destroy();
    server.close();
  };
  return c;
}

function fakeUsage(runtime: MemoryRuntime): void {
  const t0 = Date.now();
  const busy = new Set<string>();
  const seen = new Set<string>();
  runtime.usageOf = (c) => {
    const pod = c.labels['orchard.pod'] ?? c.id;
    if (!seen.has(pod)) {
      seen.add(pod);
      if (busy.size < 2) busy.add(pod);
    }
    const s = (Date.now() - t0) / 1000;
    const hot = busy.has(pod);
    const jitter = 1 + (Math.random() - 0.5) * 0.02;
    return { cpuSeconds: s * (hot ? 0.3 : 0.01), memoryBytes: Math.round((hot ? 60 : 20) * 1024 ** 2 * jitter) };
  };
}

interface Variant {
  name: string;
  rule?: PodUsageRule;
  measure: boolean;
  observedRepublishMs?: number;
  usageDelta?: boolean;
}

async function run(v: Variant): Promise<{ variant: string; bytes: number; seconds: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-uplink-'));
  const hub = await Hub.start({ dataDir: join(dir, 'hub'), host: '127.0.0.1', mqttPort: 0, httpPort: 0, insecure: false, log: createLogger('hub', 'silent') });
  const pipe = await countingPipe(hub.mqttPort);
  const memory = new MemoryRuntime({ images: ['app:v1'], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
  fakeUsage(memory);
  // `before`: a runtime that cannot measure containers, as the agent was before issue 16.
  const runtime: ContainerRuntime = v.measure
    ? memory
    : new Proxy(memory, { get: (t, k) => (k === 'containerUsage' ? undefined : (Reflect.get(t, k, t) as unknown)) });
  const node = `uplink-${v.name.replace(/[^a-z0-9]+/g, '-')}`;
  const agent = new Agent({
    node,
    labels: {},
    dataDir: join(dir, 'agent'),
    runtime,
    probe: new SystemProbe({ runtime, dataDir: join(dir, 'agent') }),
    link: { url: `mqtts://127.0.0.1:${pipe.port}`, username: node, password: hub.auth.issueNodeCredential(node, {}), ca: hub.pki?.caPem ?? '' },
    ...(v.rule ? { podUsageRule: v.rule } : {}),
    ...(v.observedRepublishMs !== undefined ? { observedRepublishMs: v.observedRepublishMs } : {}),
    usageDelta: v.usageDelta ?? false,
  });
  try {
    await agent.start();
    const manifest = [
      'apiVersion: orchard/v1',
      'kind: Deployment',
      'metadata: {name: app}',
      'spec:',
      '  replicas: 10',
      '  template:',
      '    spec:',
      '      containers: [{name: app, image: app:v1, resources: {requests: {cpu: 50m, memory: 32Mi}}}]',
    ].join('\n');
    hub.ops.apply(`${manifest}\n`);
    const deadline = Date.now() + 60_000;
    while (hub.store.list('Pod').filter((p) => p.status.phase === 'Running').length < 10) {
      if (Date.now() > deadline) throw new Error(`${v.name}: pods not Running in 60 s`);
      await new Promise((r) => setTimeout(r, 250));
    }
    await new Promise((r) => setTimeout(r, warmMs));
    const b0 = pipe.up;
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, windowMs));
    return { variant: v.name, bytes: pipe.up - b0, seconds: (Date.now() - t0) / 1000 };
  } finally {
    await agent.stop();
    pipe.close();
    await hub.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const all: Variant[] = [
  { name: 'before', measure: false, observedRepublishMs: 60_000 },
  { name: 'every-interval', rule: { cpuCores: 0, cpuRatio: 0, memoryRatio: 0, fullEvery: 1 }, measure: true, observedRepublishMs: 60_000 },
  { name: 'change-only', measure: true, observedRepublishMs: 300_000 },
  { name: 'usage-delta', measure: true, observedRepublishMs: 300_000, usageDelta: true },
];
const wanted = new Set((values.variants ?? '').split(','));
const variants = all.filter((v) => wanted.has(v.name));
log(`${variants.length} variants at once, 10 pods each, warm ${warmMs / 1000} s, window ${windowMs / 1000} s`);
const rows = await Promise.all(variants.map(run));
process.stdout.write('| variant | bytes up | B/s | kbit/s |\n|---|---|---|---|\n');
for (const r of rows)
  process.stdout.write(`| ${r.variant} | ${r.bytes} | ${(r.bytes / r.seconds).toFixed(1)} | ${((r.bytes * 8) / r.seconds / 1000).toFixed(3)} |\n`);
process.exit(0);
