/**
 * Logs (issue 16): the hub's memory with 100 concurrent `-f` streams, the hub measured ALONE. The
 * hub runs in its own process (scripts/bench/lib/hub-child.ts, compiled: SQLite, TLS broker,
 * HTTPS API, default stream limits: 1 MiB/s per stream, 2 MiB/s per node, 64 KiB window), the
 * hollow agents in a worker process (real Agent over MQTT/TLS, MemoryRuntime containers whose
 * logs are endless 16 KiB chunks written as fast as they are read), and the 100 HTTPS readers
 * (GET /api/v1/pods/{pod}/logs?follow=true, draining at once) in this process. One global
 * deployment: one pod per node, 4 streams per pod (the per-node limit).
 *
 * Prints the hub's RSS (from /proc, so it works while the hub is busy) idle, peak and mean during
 * the streams (100 ms samples), and 5 s after they closed; its heap after a full GC at each point;
 * the bytes it held for readers (peak); per-stream and aggregate throughput; the load average.
 *
 * Run: npx tsx scripts/bench/logs-hub-process.ts [--nodes 25] [--window-s 20]
 */
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { API_VERSION } from '../../protocol/manifest.js';
import { HOLLOW_IMAGE, type HollowNode } from './lib/hollow-fleet.js';
import { HubProcess, killAll, startWorkerFleet, type FleetHandle } from './lib/processes.js';
import { pollUntil } from './lib/scenario.js';
import { apiRequest, applyAll } from './lib/workload.js';

const { values } = parseArgs({
  options: { nodes: { type: 'string', default: '25' }, 'window-s': { type: 'string', default: '20' }, 'max-minutes': { type: 'string', default: '10' } },
  strict: true,
});
const N = Number(values.nodes);
const WINDOW_MS = Number(values['window-s']) * 1000;
const MiB = 1024 * 1024;
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ');
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
setTimeout(
  () => {
    log('stopping after --max-minutes');
    killAll();
    process.exit(3);
  },
  Number(values['max-minutes']) * 60_000,
).unref();

const hubDir = mkdtempSync(join(tmpdir(), 'orchard-logs-hub-'));
const agentRoot = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'orchard-logs-agents-'));
let hub: HubProcess | undefined;
let fleet: FleetHandle | undefined;
const out: string[] = [];
try {
  hub = await HubProcess.start({ dataDir: hubDir, mqttPort: 0, httpPort: 0 }, 120_000, ['--expose-gc']);
  const h = hub;
  const token = h.ready.adminToken ?? '';
  const ca = h.ready.caPem;
  const creds = await h.rpc.call<Array<[string, string]>>('issue', { prefix: 'logs-', count: N }, 60_000);
  const nodes: HollowNode[] = creds.map(([name, credential]) => ({ name, credential }));
  fleet = await startWorkerFleet(1, { mqttUrl: h.ready.mqttUrl, caPem: ca, nodes, dataRoot: agentRoot, usageIntervalMs: 10_000, logChunkBytes: 16 * 1024 });
  const t0 = Date.now();
  const reg = await pollUntil(
    t0,
    t0 + 120_000,
    500,
    () => h.snapshot(),
    (s) => s.nodesReady >= N,
  );
  if (!reg.ok) throw new Error(`${reg.last?.nodesReady ?? 0}/${N} nodes Ready`);
  const doc = {
    apiVersion: API_VERSION,
    kind: 'Deployment',
    metadata: { name: 'chatty' },
    spec: { mode: 'global', template: { spec: { containers: [{ name: 'app', image: HOLLOW_IMAGE, imagePullPolicy: 'IfNotPresent' }] } } },
  };
  await applyAll(h.ready.apiUrl, token, ca, [doc]);
  const run = await pollUntil(
    Date.now(),
    Date.now() + 120_000,
    500,
    () => h.snapshot(),
    (s) => s.podsRunning >= N,
  );
  if (!run.ok) throw new Error(`${run.last?.podsRunning ?? 0}/${N} pods Running`);
  const list = JSON.parse((await apiRequest('GET', `${h.ready.apiUrl}/api/v1/pods`, token, ca)).text) as { items: Array<{ metadata: { name: string } }> };
  const pods = list.items.map((p) => p.metadata.name);
  log(`${N} hollow nodes, ${pods.length} pods Running; hub pid ${h.pid} (load ${load()})`);

  const memory = (): Promise<NodeJS.MemoryUsage> => h.rpc.call<NodeJS.MemoryUsage>('memory', {}, 30_000);
  const rss = (): number => h.procStats()?.rssBytes ?? 0;
  await sleep(2000);
  const idleHeap = await memory();
  const idleRss = rss();

  const open = (pod: string): Promise<{ res: IncomingMessage; bytes: () => number }> =>
    new Promise((resolve, reject) => {
      const req = https.get(`${h.ready.apiUrl}/api/v1/pods/${pod}/logs?follow=true`, { ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`logs ${pod}: HTTP ${res.statusCode}`));
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        resolve({ res, bytes: () => n });
      });
      req.on('error', reject);
    });
  const streams: Array<Awaited<ReturnType<typeof open>>> = [];
  for (let k = 0; k < 4; k++) for (const p of pods) streams.push(await open(p));
  log(`${streams.length} streams open (load ${load()})`);
  await sleep(2000); // past each stream's first-second burst
  const loadDuring = load();
  const b0 = streams.map((s) => s.bytes());
  const tStart = Date.now();
  const samples: number[] = [];
  let peakHeld = 0;
  let peakOneHeld = 0;
  const sampler = setInterval(() => samples.push(rss()), 100);
  const held = setInterval(() => {
    void h.rpc
      .call<{ heldBytes: number; maxHeldBytes: number }>('streamStats', {}, 5_000)
      .then((s) => {
        peakHeld = Math.max(peakHeld, s.heldBytes);
        peakOneHeld = Math.max(peakOneHeld, s.maxHeldBytes);
      })
      .catch(() => undefined);
  }, 250);
  await sleep(WINDOW_MS);
  const secs = (Date.now() - tStart) / 1000;
  clearInterval(sampler);
  clearInterval(held);
  const perStream = streams.map((s, i) => (s.bytes() - (b0[i] ?? 0)) / MiB / secs);
  const duringHeap = await memory();
  const duringRss = rss();
  for (const s of streams) s.res.destroy();
  await pollUntil(
    Date.now(),
    Date.now() + 10_000,
    200,
    () => h.rpc.call<{ open: number }>('streamStats'),
    (s) => s.open === 0,
  );
  await sleep(5000);
  const afterHeap = await memory();
  const afterRss = rss();
  const total = perStream.reduce((a, b) => a + b, 0);
  const m = (b: number): string => `${(b / MiB).toFixed(0)} MiB`;
  out.push(`Command: \`npx tsx scripts/bench/logs-hub-process.ts ${process.argv.slice(2).join(' ')}\``);
  out.push(`Load average (1/5/15 min): during the streams ${loadDuring}; at the end ${load()}`);
  out.push('');
  out.push('| measure | value |');
  out.push('|---|---|');
  out.push(`| hollow nodes / pods / streams | ${N} / ${pods.length} / ${streams.length} |`);
  out.push(`| aggregate over ${secs.toFixed(0)} s | ${total.toFixed(1)} MiB/s |`);
  out.push(
    `| per stream min / p50 / max | ${Math.min(...perStream).toFixed(3)} / ${pct(perStream, 50).toFixed(3)} / ${Math.max(...perStream).toFixed(3)} MiB/s |`,
  );
  out.push(`| hub RSS idle | ${m(idleRss)} |`);
  out.push(
    `| hub RSS during (100 ms samples): mean / peak | ${m(samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length))} / ${m(Math.max(...samples))} |`,
  );
  out.push(`| hub RSS 5 s after the streams closed | ${m(afterRss)} |`);
  out.push(`| hub heap after a full GC: idle / during / after | ${m(idleHeap.heapUsed)} / ${m(duringHeap.heapUsed)} / ${m(afterHeap.heapUsed)} |`);
  out.push(`| hub external + array buffers: idle / during / after | ${m(idleHeap.external)} / ${m(duringHeap.external)} / ${m(afterHeap.external)} |`);
  out.push(
    `| bytes the hub held for readers, peak total / one stream (250 ms samples) | ${(peakHeld / 1024).toFixed(0)} KiB / ${(peakOneHeld / 1024).toFixed(0)} KiB |`,
  );
  out.push(`| (RSS at the end of the window) | ${m(duringRss)} |`);
} catch (err) {
  out.push(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  await fleet?.stop().catch(() => undefined);
  await hub?.stop().catch(() => undefined);
  killAll();
  rmSync(hubDir, { recursive: true, force: true });
  rmSync(agentRoot, { recursive: true, force: true });
}
process.stdout.write(`${out.join('\n')}\n`);
process.exit(0);
