/**
 * One `GET /metrics` body at fleet size, without the fleet: a MemoryStore filled with N nodes and
 * N × P pods (1 container each, as the fleet bench's hollow pods), 1,000 deployments, and the
 * UsageStore fed one full usage report per node, then HubMetrics.text() timed R times. Prints ms
 * per scrape, the body size, and the heap before/after (usage store and history included).
 * Issue 16's goal: ≤ 1 s at 10,000 nodes / 100,000 pods, with bounded memory.
 *
 * With --http the same body goes through the hub's /metrics route (Fastify over HTTPS, a
 * throw-away CA) to a reader in a child node process (lib/scrape-reader.ts), as Prometheus reads
 * it: `Accept-Encoding: gzip`, decompressed as it streams in; `--identity` asks for no encoding.
 * Time to the last byte per scrape, bytes on the wire and decompressed, series, and a parse check
 * of the last body. Both modes print the longest event-loop stall during the scrapes (what
 * node-message ingest would wait for while a scrape is written).
 *
 * Run: node --expose-gc --import tsx scripts/bench/scrape.ts [--nodes 10000] [--pods-per-node 10] [--rounds 5] [--http [--identity]]
 *   [--cpu-prof FILE]   (a .cpuprofile of this process over the scrapes only, not the fill)
 *   [--gap-ms MS]       (without --http: an idle pause between the scrapes, untimed, as a scraper's interval:
 *                        V8's idle-time and concurrent GC get it, as on a hub between Prometheus' requests)
 *   [--families]        (after the scrapes: each family rendered alone, R times, into a null sink and
 *                        again with each chunk copied to UTF-8 bytes as the socket or zlib does: render cost alone;
 *                        since 2026-12-05 the two container families' lines are rendered at ingest (UsageLines),
 *                        so their figures are the copy of those blocks, not comparable with earlier runs)
 *   [--repeated-values] (every container reports one of 10 CPU values and 10 working sets, as this bench did
 *                        before 2026-12-03 evening: V8's number-to-string cache then hides the formatting cost;
 *                        default: a distinct 3-decimal CPU time and a distinct working set per container, as
 *                        agents report them)
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { registerMetricsRoutes } from '../../hub/api/routes-metrics.js';
import { loadOrCreatePki } from '../../hub/security/pki.js';
import { API_VERSION, PodSpecSchema } from '../../protocol/manifest.js';
import type { NodeUsageReport, PodUsageReport } from '../../protocol/messages.js';
import { HubMetrics } from '../../hub/metrics/prometheus.js';
import { UsageStore } from '../../hub/metrics/usage-store.js';
import { MemoryStore } from '../../hub/store/memory-store.js';
import type { NewObject } from '../../hub/store/store.js';
import type { ScrapeResult } from './lib/scrape-reader.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '10000' },
    'pods-per-node': { type: 'string', default: '10' },
    rounds: { type: 'string', default: '5' },
    http: { type: 'boolean', default: false },
    identity: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    families: { type: 'boolean', default: false },
    'repeated-values': { type: 'boolean', default: false },
    'busy-ms': { type: 'string', default: '0' },
    'gap-ms': { type: 'string', default: '0' },
  },
  strict: true,
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
const reports: NodeUsageReport[] = [];
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
    const k = i * P + j;
    // Agents round CPU seconds to 3 decimals (agent/pod-usage.ts); a working set is whole bytes.
    pods[name] = values['repeated-values']
      ? { app: [1234.567 + j, 20_000_000 + j] }
      : { app: [((k * 7919) % 36_000_000) / 1000, 8_000_000 + ((k * 104_729) % 500_000_000)] };
  }
  reports.push({ node, usage: { cpuPercent: 25, memoryUsedBytes: 2 ** 30, at: '' }, pods, full: true });
  usage.ingest(reports[reports.length - 1] as NodeUsageReport);
}
/** One report per node ingested again (all entries exist), timed: what the fleet's usage costs the hub per round. */
const ingestAll = (): number => {
  const t0 = performance.now();
  for (const r of reports) usage.ingest(r);
  return performance.now() - t0;
};
const ingestBefore = [ingestAll(), ingestAll(), ingestAll()];
const h1 = heap();
const ab1 = process.memoryUsage().arrayBuffers;
const metrics = new HubMetrics({ store, usage, queueDepths: () => ({ scheduling: 0 }), intakeBacklog: () => 0, mqttConnections: () => N });
const times: number[] = [];
let bytes = 0;
let wire = 0;
let series = 0;
let peak = 0;
/**
 * The longest the event loop went without running a 1 ms timer (what node-message ingest would
 * wait for), counting a last gap that is still open when stopped: monitorEventLoopDelay records
 * nothing at all while the loop never turns.
 */
const lag = (() => {
  let last = 0;
  let max = 0;
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    const now = performance.now();
    max = Math.max(max, now - last);
    last = now;
  };
  return {
    enable: (): void => {
      last = performance.now();
      timer = setInterval(tick, 1);
    },
    disable: (): void => {
      tick();
      clearInterval(timer);
    },
    get max(): number {
      return max;
    },
  };
})();
const prof = values['cpu-prof'] === undefined ? undefined : new Session();
if (prof !== undefined) {
  prof.connect();
  await prof.post('Profiler.enable');
  await prof.post('Profiler.setSamplingInterval', { interval: 200 });
  await prof.post('Profiler.start');
}
let transport = 'in process (HubMetrics.chunks(), no socket)';
if (values.http) {
  transport = `HTTPS: the /metrics route (Fastify, TLS) to a reader in a child process, ${values.identity ? 'identity' : 'Accept-Encoding: gzip'}${Number(values['busy-ms']) > 0 ? `, ${values['busy-ms']} ms of other work on every loop turn` : ''}`;
  const dir = mkdtempSync(join(tmpdir(), 'orchard-scrape-pki-'));
  const pki = await loadOrCreatePki(dir, { hostnames: ['localhost'], ips: ['127.0.0.1'], includeInterfaceAddresses: false });
  const app = Fastify({ logger: false, https: { cert: pki.certPem, key: pki.keyPem } });
  registerMetricsRoutes(app, { need: () => async () => undefined, store, usage, prometheus: metrics });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const url = `https://localhost:${typeof addr === 'object' && addr !== null ? addr.port : 0}/metrics`;
  // The reader: R GETs one after the other, as Prometheus sends them (or identity), each body
  // counted as it streams in and dropped (the last one parse-checked after its timing). Child
  // process, so TLS decryption and gunzip are not on this event loop.
  const reader = join(dirname(fileURLToPath(import.meta.url)), 'lib', 'scrape-reader.ts');
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 10);
  lag.enable();
  // --busy-ms: other work on every turn of the event loop while the scrapes run (as node-message
  // ingest on a loaded hub): what the scrape's own turns (chunks, zlib round trips) then cost.
  const busyMs = Number(values['busy-ms']);
  let busy = busyMs > 0;
  const spin = (): void => {
    if (!busy) return;
    const until = performance.now() + busyMs;
    while (performance.now() < until);
    setImmediate(spin);
  };
  spin();
  const raw = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      ['--import', 'tsx', reader, url, pki.caPem, String(R), values.identity ? 'identity' : 'gzip'],
      { maxBuffer: 1 << 20 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    ),
  );
  busy = false;
  lag.disable();
  clearInterval(sampler);
  await app.close();
  rmSync(dir, { recursive: true, force: true });
  for (const r of JSON.parse(raw) as ScrapeResult[]) {
    if (r.status !== 200) throw new Error(`scrape answered ${r.status}`);
    if (r.encoding !== (values.identity ? 'identity' : 'gzip')) throw new Error(`scrape came back ${r.encoding}`);
    if (r.problems !== undefined && r.problems.length > 0) throw new Error(`the body does not parse: ${r.problems.join('; ')}`);
    times.push(r.ms);
    bytes = r.bytes;
    wire = r.wireBytes;
    series = r.series;
  }
} else {
  lag.enable();
  const gapMs = Number(values['gap-ms']);
  for (let r = 0; r < R; r++) {
    // --gap-ms: an idle pause before each scrape after the first, as between Prometheus' scrapes (untimed):
    // what the process does between requests (idle-time and concurrent GC) gets it, as on a hub.
    if (r > 0 && gapMs > 0) await new Promise((res) => setTimeout(res, gapMs));
    const t0 = performance.now();
    // As the /metrics route does: chunk by chunk (a socket would take each), the body never whole.
    bytes = 0;
    for await (const chunk of metrics.chunks()) {
      bytes += chunk.length;
      peak = Math.max(peak, process.memoryUsage().heapUsed);
    }
    times.push(performance.now() - t0);
  }
  lag.disable();
}
/**
 * The SHA-256 of the families' text (one more scrape, untimed; without prom-client's own metrics,
 * which differ run to run): old and new code must write the same bytes.
 */
let digest = '';
/** The same over the families' lines sorted: equal when only the order of lines within a family changed (2026-12-05: StateLines writes them node by node). */
let linesDigest = '';
if (!values.http) {
  const h = createHash('sha256');
  const parts: Buffer[] = [];
  let registry = true;
  for await (const chunk of metrics.chunks()) {
    if (!registry) {
      h.update(chunk);
      parts.push(Buffer.from(chunk));
    }
    registry = false;
  }
  digest = h.digest('hex');
  linesDigest = createHash('sha256').update(Buffer.concat(parts).toString('utf8').split('\n').sort().join('\n')).digest('hex');
}
/** Each family alone, R times (median ms): into a null sink, then with each chunk copied to UTF-8 as the socket or zlib would. */
const familyRows: string[] = [];
if (values.families) {
  const { ScrapeView } = await import('../../hub/metrics/prometheus.js');
  const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  let sumRender = 0;
  let sumEncode = 0;
  for (const f of metrics.families) {
    const render: number[] = [];
    const encode: number[] = [];
    for (let r = 0; r < R; r++) {
      for (const [into, bytesToo] of [
        [render, false],
        [encode, true],
      ] as const) {
        const view = new ScrapeView();
        const t0 = performance.now();
        let n = 0;
        for (const c of f.render(view)) n += typeof c !== 'string' ? c.length : bytesToo ? Buffer.from(c, 'utf8').length : c.length;
        into.push(performance.now() - t0);
        if (n < 0) throw new Error('unreachable');
      }
    }
    const [a, b] = [median(render), median(encode)];
    sumRender += a;
    sumEncode += b;
    if (b >= 1) familyRows.push(`  ${f.name}: ${a.toFixed(1)} ms, with UTF-8 copy ${b.toFixed(1)} ms`);
  }
  familyRows.unshift(
    `families alone (median of ${R}; view per render; families under 1 ms left out): all ${sumRender.toFixed(0)} ms, with UTF-8 copy ${sumEncode.toFixed(0)} ms`,
  );
}
// After the scrapes, the usage families' lines are rendered at ingest (UsageLines).
const ingestAfter = [ingestAll(), ingestAll(), ingestAll()];
familyRows.push(
  `ingest of one full usage report per node (${N} reports, ${N * P} containers), 3 times: ${ingestBefore.map((x) => x.toFixed(0)).join(' / ')} ms before the first scrape, ` +
    `${ingestAfter.map((x) => x.toFixed(0)).join(' / ')} ms after it (usage lines rendered at ingest)`,
);
if (prof !== undefined) {
  const { profile } = await prof.post('Profiler.stop');
  writeFileSync(values['cpu-prof'] ?? '', JSON.stringify(profile));
  prof.disconnect();
}
const h2 = heap();
const first = times[0] ?? 0;
times.sort((a, b) => a - b);
const st = usage.stats();
process.stdout.write(
  [
    `nodes ${N}, pods ${N * P}, deployments ${DEPLOYMENTS}; Node ${process.version}; ${transport}; ${values['repeated-values'] ? '10 repeated usage values' : 'distinct usage values'}`,
    `scrape ms: min ${times[0]?.toFixed(0)}, median ${times[Math.floor(R / 2)]?.toFixed(0)}, max ${times.at(-1)?.toFixed(0)} (${R} rounds; the first ${first.toFixed(0)})`,
    values.http
      ? `body ${mib(bytes)} MiB (${bytes} bytes, ${series} series, parse-checked), on the wire ${mib(wire)} MiB (${wire} bytes${values.identity ? '' : `, gzip ${(bytes / wire).toFixed(1)}×`})`
      : `body ${mib(bytes)} MiB, ${bytes} chars, families' sha256 ${digest.slice(0, 16)}, sorted lines ${linesDigest.slice(0, 16)}`,
    `load average (1/5/15 min) at the end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' / ')}`,
    `longest event-loop stall during the scrapes: ${lag.max.toFixed(0)} ms`,
    ...familyRows,
    `array buffers (outside the heap; usage history rings, and the usage families' blocks once scraped): ` +
      `before the first scrape ${mib(ab1)} MiB, after scrapes + GC ${mib(process.memoryUsage().arrayBuffers)} MiB`,
    `heap: empty ${mib(h0)} MiB, filled ${mib(h1)} MiB (usage store history ${mib(st.historyBytes)} MiB), peak during scrapes ${mib(peak)} MiB (${values.http ? 'sampled every 10 ms' : 'sampled per chunk'}), after scrapes + GC ${mib(h2)} MiB`,
    '',
  ].join('\n'),
);
