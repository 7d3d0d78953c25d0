/**
 * Logs (issue 16): throughput of one `-f` stream, and the hub with 100 concurrent `-f` streams.
 * One real hub (TLS broker, SQLite, HTTPS) and `--nodes` hollow agents (real Agent over MQTT/TLS,
 * one shared MemoryRuntime whose containers write logs as fast as they are read: 16 KiB chunks),
 * all in this process; readers are HTTPS GETs of /api/v1/pods/{pod}/logs?follow=true that drain
 * at once. Phases (bounded, `--phase-s` each):
 *   idle       heartbeat latency (agent usage report → hub, 250 ms interval) and desired-set
 *              latency (hub publish → agent) with no streams
 *   1 stream   default limits (1 MiB/s per stream), then limits raised to 1 GiB/s (raw capacity)
 *   100 streams  --nodes × 4 streams at default limits: aggregate and per-stream MiB/s, the hub's
 *              held bytes (flow control bound: ≤ 64 KiB per stream), process RSS/heap, and the
 *              same latencies during the burst
 * RSS and heap are the whole process (hub + hollow agents + readers); the delta over idle is
 * what the streams cost. Load average is printed: the machine is shared.
 *
 * Run: npx tsx scripts/bench/logs.ts [--nodes 25] [--phase-s 8]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import type { OutputChunk } from '../../agent/runtime/runtime.js';
import { Hub } from '../../hub/hub.js';
import { createLogger } from '../../hub/log.js';
import { DesiredSetMessageSchema, decodeMessage, encodeMessage, type DesiredSetMessage } from '../../protocol/messages.js';
import { NodeUsageMessageSchema } from '../../protocol/reports.js';
import { topics } from '../../protocol/topics.js';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '25' }, 'phase-s': { type: 'string', default: '8' } } });
const NODES = Number(values.nodes);
const PHASE_MS = Number(values['phase-s']) * 1000;
const MiB = 1024 * 1024;
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-logs-bench-'));
  const hub = await Hub.start({ dataDir: join(dir, 'hub'), host: '127.0.0.1', mqttPort: 0, httpPort: 0, insecure: false, log: createLogger('hub', 'silent') });
  const runtime = new MemoryRuntime({ images: ['app:v1'], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
  const chunk = Buffer.alloc(16 * 1024, 0x61);
  runtime.logBook.script = async function* (): AsyncGenerator<OutputChunk> {
    for (;;) {
      yield { fd: 1, data: chunk };
      await new Promise((r) => setImmediate(r));
    }
  };
  const agents: Agent[] = [];
  const lastDesired = new Map<string, DesiredSetMessage>();
  const desiredSeen = new Map<string, (at: number) => void>();
  const token = hub.auth.createApiToken({ name: 'bench', role: 'viewer' }).token;
  const heartbeat: number[] = [];
  let recordHeartbeats = false;
  await hub.broker.subscribe(topics.allNodes('usage'), (_t, payload) => {
    const r = decodeMessage(NodeUsageMessageSchema, payload);
    if (r.ok && recordHeartbeats) heartbeat.push(Date.now() - Date.parse(r.value.usage?.at ?? r.value.at ?? ''));
  });
  try {
    for (let i = 0; i < NODES; i++) {
      const node = `logs-${i}`;
      const agent = new Agent({
        node,
        labels: {},
        dataDir: join(dir, node),
        runtime,
        probe: new EngineOnlyProbe(runtime),
        link: { url: hub.mqttUrl, username: node, password: hub.auth.issueNodeCredential(node, {}), ca: hub.pki?.caPem ?? '' },
        usageIntervalMs: 250,
        resyncMs: 1000,
      });
      const orig = agent.onDesired.bind(agent);
      agent.onDesired = (m) => {
        lastDesired.set(node, m);
        desiredSeen.get(node)?.(Date.now());
        orig(m);
      };
      await agent.start();
      agents.push(agent);
    }
    hub.ops.apply(
      [
        'apiVersion: orchard/v1',
        'kind: Deployment',
        'metadata: {name: chatty}',
        'spec:',
        '  mode: global',
        '  template:',
        '    spec:',
        '      containers: [{name: app, image: app:v1}]',
        '',
      ].join('\n'),
    );
    const deadline = Date.now() + 120_000;
    let pods: Array<{ name: string; node: string }> = [];
    while (pods.length < NODES) {
      if (Date.now() > deadline) throw new Error(`pods not Running in 120 s (${pods.length}/${NODES})`);
      await sleep(250);
      pods = hub.store
        .list('Pod')
        .filter((p) => p.status.phase === 'Running')
        .map((p) => ({ name: p.metadata.name, node: p.spec.nodeName ?? '' }));
    }
    log(`${NODES} hollow nodes, ${pods.length} pods running`);

    /** Hub publish of the node's own desired set (generation + 1) → the agent's receipt, ms. */
    const desiredLatency = async (node: string): Promise<number> => {
      const m = lastDesired.get(node);
      if (m === undefined) return NaN;
      const next = { ...m, generation: m.generation + 1 };
      const t0 = Date.now();
      const seen = new Promise<number>((r) => desiredSeen.set(node, r));
      await hub.broker.publish(topics.nodeDesired(node), encodeMessage(DesiredSetMessageSchema.parse(next), 'deflate'), { qos: 1, retain: true });
      const at = await Promise.race([seen, sleep(10_000).then(() => NaN)]);
      desiredSeen.delete(node);
      return at - t0;
    };
    const latencies = async (): Promise<{ hb: number[]; desired: number[] }> => {
      heartbeat.length = 0;
      recordHeartbeats = true;
      const desired: number[] = [];
      const end = Date.now() + PHASE_MS;
      let i = 0;
      while (Date.now() < end) {
        desired.push(await desiredLatency(pods[i++ % pods.length]!.node));
        await sleep(200);
      }
      recordHeartbeats = false;
      return { hb: [...heartbeat], desired };
    };

    const open = (pod: string): Promise<{ res: IncomingMessage; bytes: () => number }> =>
      new Promise((resolve, reject) => {
        const req = https.get(
          `${hub.apiUrl}/api/v1/pods/${pod}/logs?follow=true`,
          { ca: hub.pki?.caPem ?? '', headers: { authorization: `Bearer ${token}` } },
          (res) => {
            if (res.statusCode !== 200) return reject(new Error(`logs ${pod}: HTTP ${res.statusCode}`));
            let n = 0;
            res.on('data', (c: Buffer) => (n += c.length));
            resolve({ res, bytes: () => n });
          },
        );
        req.on('error', reject);
      });
    const mem = (): { rss: number; heap: number } => {
      const m = process.memoryUsage();
      return { rss: m.rss / MiB, heap: m.heapUsed / MiB };
    };

    global.gc?.();
    const idleMem = mem();
    log('idle latencies');
    const idle = await latencies();

    const single = async (podIdx: number): Promise<number> => {
      const s = await open(pods[podIdx]!.name);
      await sleep(1000); // past the first second's burst
      const b0 = s.bytes();
      const t0 = Date.now();
      await sleep(PHASE_MS);
      const rate = (s.bytes() - b0) / MiB / ((Date.now() - t0) / 1000);
      s.res.destroy();
      await sleep(200);
      return rate;
    };
    log('1 stream, default limits');
    const oneDefault = await single(0);
    hub.streams.limits.streamBytesPerSec = 1024 ** 3;
    hub.streams.limits.nodeBytesPerSec = 1024 ** 3;
    log('1 stream, limits raised');
    const oneRaw = await single(1);
    hub.streams.limits.streamBytesPerSec = 1024 * 1024;
    hub.streams.limits.nodeBytesPerSec = 2 * 1024 * 1024;

    log(`${pods.length * 4} streams`);
    const streams: Array<Awaited<ReturnType<typeof open>>> = [];
    // Nodes 0 and 1 already used their rate budgets above; all nodes serve 4 streams each.
    for (let k = 0; k < 4; k++) for (const p of pods) streams.push(await open(p.name));
    await sleep(1000);
    const b0 = streams.map((s) => s.bytes());
    const t0 = Date.now();
    let peakHeld = 0;
    let peakMaxHeld = 0;
    let peak = { rss: 0, heap: 0 };
    const sampler = setInterval(() => {
      const st = hub.streams.stats();
      peakHeld = Math.max(peakHeld, st.heldBytes);
      peakMaxHeld = Math.max(peakMaxHeld, st.maxHeldBytes);
      const m = mem();
      peak = { rss: Math.max(peak.rss, m.rss), heap: Math.max(peak.heap, m.heap) };
    }, 100);
    const busy = await latencies();
    const secs = (Date.now() - t0) / 1000;
    clearInterval(sampler);
    const perStream = streams.map((s, i) => (s.bytes() - (b0[i] ?? 0)) / MiB / secs);
    const total = perStream.reduce((a, b) => a + b, 0);
    for (const s of streams) s.res.destroy();
    const load = loadavg().map((l) => l.toFixed(2));

    const rows: Array<[string, string]> = [
      ['hollow nodes / pods', `${NODES} / ${pods.length}`],
      ['1 stream, default limits (1 MiB/s)', `${oneDefault.toFixed(2)} MiB/s`],
      ['1 stream, limits raised', `${oneRaw.toFixed(2)} MiB/s`],
      [`${streams.length} streams: aggregate`, `${total.toFixed(1)} MiB/s`],
      [`${streams.length} streams: per stream p50 / min`, `${pct(perStream, 50).toFixed(3)} / ${Math.min(...perStream).toFixed(3)} MiB/s`],
      [
        `${streams.length} streams: hub held bytes, peak total / peak one stream`,
        `${(peakHeld / 1024).toFixed(0)} KiB / ${(peakMaxHeld / 1024).toFixed(0)} KiB`,
      ],
      ['process RSS idle → peak', `${idleMem.rss.toFixed(0)} → ${peak.rss.toFixed(0)} MiB`],
      ['process heap idle → peak', `${idleMem.heap.toFixed(0)} → ${peak.heap.toFixed(0)} MiB`],
      ['heartbeat latency idle p50 / p99', `${pct(idle.hb, 50)} / ${pct(idle.hb, 99)} ms (n=${idle.hb.length})`],
      ['heartbeat latency 100 streams p50 / p99', `${pct(busy.hb, 50)} / ${pct(busy.hb, 99)} ms (n=${busy.hb.length})`],
      ['desired-set latency idle p50 / max', `${pct(idle.desired, 50)} / ${Math.max(...idle.desired)} ms (n=${idle.desired.length})`],
      ['desired-set latency 100 streams p50 / max', `${pct(busy.desired, 50)} / ${Math.max(...busy.desired)} ms (n=${busy.desired.length})`],
      ['load average (1/5/15 min, at the end)', load.join(' ')],
    ];
    const w = Math.max(...rows.map(([k]) => k.length));
    process.stdout.write(`\n| ${'measure'.padEnd(w)} | value |\n|${'-'.repeat(w + 2)}|-------|\n`);
    for (const [k, v] of rows) process.stdout.write(`| ${k.padEnd(w)} | ${v} |\n`);
  } finally {
    for (const a of agents) await a.stop().catch(() => undefined);
    await hub.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
