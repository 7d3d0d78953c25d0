/**
 * The cost of the hub's prom-client process metrics with many connections open (issue 16): the
 * text of `HubMetrics.registry` (what `GET /metrics` writes before any family) timed in a process
 * that holds N accepted TCP connections (a hub with N agents holds at least that many sockets and
 * descriptors), against prom-client's full default set in a Registry of its own, alternated.
 * The client ends live in a child process, so only the server ends count here.
 *
 * Run: npx tsx scripts/bench/process-metrics.ts [--connections 10000] [--rounds 20]
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { HubMetrics } from '../../hub/metrics/prometheus.js';
import { UsageStore } from '../../hub/metrics/usage-store.js';
import { MemoryStore } from '../../hub/store/memory-store.js';
import { spread } from './lib/stats.js';

const { values } = parseArgs({
  options: { connections: { type: 'string', default: '10000' }, rounds: { type: 'string', default: '20' } },
  strict: true,
});
const N = Number(values.connections);
const R = Number(values.rounds);
const sockets: net.Socket[] = [];
const server = net.createServer((s) => void sockets.push(s));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as net.AddressInfo).port;
// The client ends in a child: it opens N connections and holds them until stdin closes.
const holder = [
  "const net = require('net');",
  'const held = [];',
  'let open = 0;',
  'const next = () => {',
  `  if (held.length >= ${N}) return;`,
  `  const s = net.connect(${port}, '127.0.0.1', () => { if (++open === ${N}) process.stdout.write('ok\\n'); next(); });`,
  "  s.on('error', () => undefined);",
  '  held.push(s);',
  '};',
  'next();',
  "process.stdin.on('end', () => process.exit(0));",
  'process.stdin.resume();',
].join('\n');
const child = spawn(process.execPath, ['-e', holder], { stdio: ['pipe', 'pipe', 'inherit'] });
await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
while (sockets.length < N) await new Promise((r) => setTimeout(r, 50));

const hub = new HubMetrics({
  store: new MemoryStore(),
  usage: new UsageStore({ now: () => 0 }),
  queueDepths: () => ({}),
  intakeBacklog: () => 0,
  mqttConnections: () => N,
});
const full = new Registry();
collectDefaultMetrics({ register: full });
const time = async (render: () => Promise<string>): Promise<{ wall: number; cpu: number }> => {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await render();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1000 };
};
const rows: Record<'hub' | 'full', Array<{ wall: number; cpu: number }>> = { hub: [], full: [] };
for (let i = 0; i < 3; i++) {
  await hub.registry.metrics();
  await full.metrics();
}
for (let i = 0; i < R; i++) {
  rows.full.push(await time(() => full.metrics()));
  rows.hub.push(await time(() => hub.registry.metrics()));
}
process.stdout.write(`${N} accepted connections in this process, ${R} rounds each, alternated\n`);
process.stdout.write('| registry | wall median (min–max) | CPU of this process, median (all threads) |\n|---|---|---|\n');
for (const [name, r] of [
  ["prom-client's full default set", rows.full],
  ["the hub's (HubMetrics.registry)", rows.hub],
] as const) {
  const w = spread(r.map((x) => x.wall));
  const c = spread(r.map((x) => x.cpu));
  process.stdout.write(`| ${name} | ${w.p50.toFixed(1)} ms (${Math.min(...r.map((x) => x.wall)).toFixed(1)}–${w.max.toFixed(1)}) | ${c.p50.toFixed(1)} ms |\n`);
}
child.stdin.end();
for (const s of sockets) s.destroy();
server.close();
process.exit(0);
