/**
 * `GET /metrics` at fleet scale through the fleet harness (issue 16: a scrape at 10,000 hollow
 * nodes / 100,000 pods finishes in ≤ 1 s with bounded memory). A real hub process (compiled,
 * scripts/bench/lib/hub-child.ts: SQLite, TLS broker, HTTPS API) and N hollow agents in worker
 * processes (the real Agent over MemoryRuntime, each its own MQTT/TLS client) that report
 * per-container usage (MemoryRuntime's counters) with their usage heartbeats. Once every pod is
 * Running and every container has a CPU rate at the hub, the bench scrapes the hub's /metrics over
 * HTTPS R times, one after the other, while the fleet keeps reporting, and prints per scrape the
 * time to the last byte and the body size, and the hub process's RSS (from /proc, sampled every
 * 20 ms) before, during and after, plus its heap after a full GC before and after the scrapes.
 * Before the fleet starts it runs the pure scheduler bench (the calibration figure) and prints the
 * load average. The scrapes ask for gzip as Prometheus does (decompressed by the reader as they
 * stream in; the wire and the decompressed size are both printed, the last body is parse-checked);
 * `--identity` asks for the uncompressed text instead.
 *
 * Run: npx tsx scripts/bench/fleet-scrape.ts [--nodes 10000] [--pods-per-node 10] [--procs 2]
 *   [--rounds 5] [--usage-interval-ms 30000] [--max-minutes 25] [--no-scheduler] [--scheduler-pods 20000] [--register-s N] [--deploy-s N]
 *   [--identity]   (no Accept-Encoding: the uncompressed text, as before gzip)
 *   [--no-render-ahead]   (the hub starts its metrics' per-node lines at the first scrape, as before 2026-12-06)
 *   [--hub-trace-gc]      (the hub prints V8's GC trace; each scrape prints when it started and ended, in ms since the hub started)
 *   [--warm-scrapes K]    (K scrapes right after usage is complete, before the settle period, not counted)
 *   [--hub-cpu-prof FILE]   (a .cpuprofile of the hub process over the R scrapes)
 *   [--settle-s N]   (wait N s after every container has its CPU rate before the first scrape, printing the
 *                     hub's CPU per 10 s, so the scrapes meet the hub in its steady state and not the deploy's
 *                     tail: 2026-12-05 the hub was busy for over a minute after the last pod Running)
 *   [--gap-ms N]     (pause between scrapes, default 1000)
 *   [--workers-nice N]   (an A/B in one run: the scrapes alternate between the hollow agents' processes at
 *                         nice 0, as every run before 2026-12-04, and at nice N, set just before that scrape
 *                         and back to 0 after it: the hub then runs first when both want the CPU, as on a
 *                         machine of its own. Only around the scrapes: a fleet niced through the deploy
 *                         starved its own heartbeats and went NotReady, 2026-12-04.) R scrapes of each.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import type { HollowNode } from './lib/hollow-fleet.js';
import { HubProcess, killAll, runSchedulerBench, startWorkerFleet, type FleetHandle } from './lib/processes.js';
import { parseSchedulerTable, schedulerTable } from './lib/report.js';
import { pollUntil } from './lib/scenario.js';
import { scrapeOnce, type ScrapeResult } from './lib/scrape-reader.js';
import { wholeNumber } from './lib/flags.js';
import { reniceProcess } from './lib/renice.js';
import { spread } from './lib/stats.js';
import { apiRequest, applyAll, benchDeployments } from './lib/workload.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '10000' },
    'pods-per-node': { type: 'string', default: '10' },
    procs: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '5' },
    'usage-interval-ms': { type: 'string', default: '30000' },
    'max-minutes': { type: 'string', default: '25' },
    'settle-s': { type: 'string', default: '0' },
    'gap-ms': { type: 'string', default: '1000' },
    /** The hub without rendering its metrics' lines ahead (HubOptions.metricsRenderAhead false: the first scrape starts them). */
    'no-render-ahead': { type: 'boolean', default: false },
    /** The hub runs with --trace-gc (its lines in this output, ms since its start; scrapes print their offsets on that clock too). */
    'hub-trace-gc': { type: 'boolean', default: false },
    /** Scrapes made before the settle period and not counted (a scraper already running when the measured scrapes start). */
    'warm-scrapes': { type: 'string', default: '0' },
    'no-scheduler': { type: 'boolean', default: false },
    'scheduler-pods': { type: 'string', default: '20000' },
    /** Register deadline (default 60 s + 20 ms per node); a loaded machine needs more. */
    'register-s': { type: 'string' },
    /** Deploy deadline (default 120 s + 3 ms per pod). */
    'deploy-s': { type: 'string' },
    'hub-cpu-prof': { type: 'string' },
    identity: { type: 'boolean', default: false },
    /** Scrapes alternate between workers at nice 0 and at nice N (0: all at 0, as before). */
    'workers-nice': { type: 'string', default: '0' },
  },
  strict: true,
});
const N = Number(values.nodes);
const P = Number(values['pods-per-node']);
const M = N * P;
const R = Number(values.rounds);
const NICE = wholeNumber('workers-nice', values['workers-nice']);
if (NICE > 19) {
  process.stderr.write('--workers-nice must be 0-19\n');
  process.exit(2);
}
const usageMs = Number(values['usage-interval-ms']);
/** Pause between the forced GC of the heap reading and the first scrape. */
const AFTER_GC_MS = 5000;
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const mib = (b: number): string => (b / 2 ** 20).toFixed(0);
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ');

const stopAt = setTimeout(
  () => {
    log(`stopping after --max-minutes ${values['max-minutes']}`);
    killAll();
    process.exit(3);
  },
  Number(values['max-minutes']) * 60_000,
);
stopAt.unref();
process.on('SIGINT', () => {
  killAll();
  process.exit(130);
});

const lines: string[] = [];
const out = (s: string): void => void lines.push(s);
let sched = '(not run)';
if (!values['no-scheduler']) {
  log(`calibration: pure scheduler (load ${load()})`);
  const rows = parseSchedulerTable(await runSchedulerBench(Number(values['scheduler-pods'])));
  sched = schedulerTable(rows);
  log(`calibration: ${rows.map((r) => `${r.nodes} nodes ${r.mode}: ${r.podsPerSec} pods/s`).join('; ')} (load ${load()})`);
}

const hubDir = mkdtempSync(join(tmpdir(), 'orchard-scrape-hub-'));
const agentRoot = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'orchard-scrape-agents-'));
let hub: HubProcess | undefined;
let fleet: FleetHandle | undefined;
const loadStart = load();
try {
  // No restart here: the tracker need not parse every observed set again inside the hub (reportedRunning).
  const hubSpawnedAt = Date.now();
  hub = await HubProcess.start(
    { dataDir: hubDir, mqttPort: 0, httpPort: 0, heartbeatGraceMs: 4 * usageMs, reportedRunning: false, metricsRenderAhead: !values['no-render-ahead'] },
    120_000,
    ['--expose-gc', ...(values['hub-trace-gc'] ? ['--trace-gc'] : [])],
  );
  const h = hub;
  const admin = h.ready.adminToken ?? '';
  // Scrapes use a scrape token, as a Prometheus set up per docs/observability.md does (since
  // 2026-12-06: the hub renders its per-node lines from the start when it holds one).
  const made = await apiRequest('POST', `${h.ready.apiUrl}/api/v1/tokens`, admin, h.ready.caPem, JSON.stringify({ role: 'scrape', name: 'prometheus' }));
  if (made.status !== 200) throw new Error(`scrape token: ${made.status} ${made.text}`);
  const token = (JSON.parse(made.text) as { token: string }).token;
  const creds = await h.rpc.call<Array<[string, string]>>('issue', { prefix: 'hollow-', count: N }, 600_000);
  const nodes: HollowNode[] = creds.map(([name, credential]) => ({ name, credential }));
  log(`[${N}] hub pid ${h.pid}; ${N} credentials issued; starting ${values.procs} worker processes (load ${load()})`);
  const t0 = Date.now();
  let polls = 0;
  fleet = await startWorkerFleet(Number(values.procs), {
    mqttUrl: h.ready.mqttUrl,
    caPem: h.ready.caPem,
    nodes,
    dataRoot: agentRoot,
    usageIntervalMs: usageMs,
  });
  const reg = await pollUntil(
    t0,
    t0 + (values['register-s'] !== undefined ? Number(values['register-s']) * 1000 : 60_000 + 20 * N),
    1000,
    () => h.snapshot(),
    (s) => s.nodesReady >= N,
    (s) => {
      log(`[${N}] register: ready ${s.nodesReady}/${N} rss ${mib(s.rssBytes)} MiB`);
      // Why agents are not connecting, when they are not (every 10th poll).
      if (++polls % 10 === 0)
        void fleet
          ?.stats()
          .then((a) => log(`[${N}] agents connected ${a.connected}, link builds ${a.linkBuilds}, warnings ${JSON.stringify(a.warnings).slice(0, 300)}`))
          .catch(() => undefined);
    },
  );
  if (!reg.ok) throw new Error(`register: ${reg.last?.nodesReady ?? 0}/${N} Ready at the deadline`);
  log(`[${N}] all Ready in ${reg.ms} ms`);
  const t1 = Date.now();
  await applyAll(h.ready.apiUrl, admin, h.ready.caPem, benchDeployments(M, 100));
  const dep = await pollUntil(
    t1,
    t1 + (values['deploy-s'] !== undefined ? Number(values['deploy-s']) * 1000 : 120_000 + 3 * M),
    1000,
    () => h.snapshot(),
    (s) => s.pods >= M && s.podsRunning >= M,
    (s) => log(`[${N}] deploy: pods ${s.pods} bound ${s.podsBound} running ${s.podsRunning}/${M} rss ${mib(s.rssBytes)} MiB`),
  );
  if (!dep.ok) throw new Error(`deploy: ${dep.last?.podsRunning ?? 0}/${M} Running at the deadline`);
  log(`[${N}] all ${M} pods Running in ${dep.ms} ms`);
  // A container's rate needs two of its node's usage reports after it started: up to ~2–3 periods.
  const t2 = Date.now();
  const use = await pollUntil(
    t2,
    t2 + 6 * usageMs,
    2000,
    () => h.rpc.call<{ nodes: number; pods: number; historyBytes: number; containersWithRate: number }>('usageStats', {}, 60_000),
    (u) => u.containersWithRate >= M,
    (u) => log(`[${N}] usage: nodes ${u.nodes} pods ${u.pods} containers with a CPU rate ${u.containersWithRate}/${M}`),
  );
  const usage = use.last;
  log(`[${N}] usage ${use.ok ? 'complete' : 'INCOMPLETE'} after ${use.ms} ms`);

  const warm: number[] = [];
  for (let i = 0; i < wholeNumber('warm-scrapes', values['warm-scrapes']); i++) {
    const s = await scrapeOnce(`${h.ready.apiUrl}/metrics`, { ca: h.ready.caPem, token, gzip: !values.identity, keep: false });
    warm.push(s.ms);
    log(`[${N}] warm-up scrape ${i + 1} (not counted): ${s.status} ${s.ms.toFixed(0)} ms, ${s.series} series`);
    await new Promise((r) => setTimeout(r, wholeNumber('gap-ms', values['gap-ms'])));
  }
  // The hub's CPU while the fleet settles (per 10 s): the steady state the scrapes should meet.
  const settleS = wholeNumber('settle-s', values['settle-s']);
  for (let waited = 0; waited < settleS; waited += 10) {
    const c0 = h.procStats()?.cpuSeconds ?? 0;
    const slice = Math.min(10, settleS - waited);
    await new Promise((r) => setTimeout(r, slice * 1000));
    const c1 = h.procStats()?.cpuSeconds ?? 0;
    log(`[${N}] settling: hub CPU ${(((c1 - c0) / slice) * 100).toFixed(0)} % of a core over ${slice} s (${waited + slice}/${settleS} s)`);
  }
  const memBefore = await h.rpc.call<NodeJS.MemoryUsage>('memory', {}, 60_000);
  // That reading forces a full GC; its sweeping goes on in the hub after gc() returns (on its
  // thread as it allocates, and on V8's helper threads). Before 2026-12-06 scrape 1 started at once
  // and paid for it; a scraper's request does not follow a forced GC. Wait it out.
  await new Promise((r) => setTimeout(r, AFTER_GC_MS));
  const rssBefore = h.procStats()?.rssBytes ?? 0;
  const loadBefore = load();
  const scrapes: Array<ScrapeResult & { rssPeak: number; rssAfter: number; hubCpuMs: number; nice: number }> = [];
  const prof = values['hub-cpu-prof'];
  if (prof !== undefined) {
    await h.rpc.call('profileStart', {}, 60_000);
    // The inspector's start took ≈ 1.9 s of the hub's thread (2026-12-05): not inside the first scrape.
    await new Promise((r) => setTimeout(r, 5000));
  }
  const workerPids = fleet.pids;
  // With --workers-nice N, scrapes alternate: workers at 0, then at N (set just before, back after).
  const niceOf = (i: number): number => (NICE > 0 && i % 2 === 1 ? NICE : 0);
  const total = NICE > 0 ? 2 * R : R;
  for (let i = 0; i < total; i++) {
    const nice = niceOf(i);
    if (nice > 0) for (const pid of workerPids) reniceProcess(pid, nice);
    const cpu0 = h.procStats()?.cpuSeconds ?? 0;
    const startedAt = Date.now() - hubSpawnedAt;
    let peak = h.procStats()?.rssBytes ?? 0;
    const sampler = setInterval(() => (peak = Math.max(peak, h.procStats()?.rssBytes ?? 0)), 20);
    const s = await scrapeOnce(`${h.ready.apiUrl}/metrics`, { ca: h.ready.caPem, token, gzip: !values.identity, keep: i === total - 1 }).finally(() => {
      if (nice > 0) for (const pid of workerPids) reniceProcess(pid, 0);
    });
    if (s.encoding !== (values.identity ? 'identity' : 'gzip')) throw new Error(`scrape ${i + 1} came back ${s.encoding}`);
    if (s.problems !== undefined && s.problems.length > 0) throw new Error(`scrape ${i + 1} does not parse: ${s.problems.join('; ')}`);
    clearInterval(sampler);
    const afterStats = h.procStats();
    const after = afterStats?.rssBytes ?? 0;
    if (afterStats === undefined) throw new Error(`the hub process is gone (scrape ${i + 1})`);
    const hubCpuMs = (afterStats.cpuSeconds - cpu0) * 1000;
    scrapes.push({ ...s, rssPeak: Math.max(peak, after), rssAfter: after, hubCpuMs, nice });
    log(
      `[${N}] scrape ${i + 1}: ${s.status} ${s.encoding} ${s.ms.toFixed(0)} ms, ${mib(s.bytes)} MiB (wire ${(s.wireBytes / 2 ** 20).toFixed(1)} MiB), ` +
        `${s.series} series, workers at nice ${nice}, hub CPU ${hubCpuMs.toFixed(0)} ms, hub rss peak ${mib(peak)} after ${mib(after)} MiB` +
        (values['hub-trace-gc'] ? ` (hub clock ${startedAt}–${Date.now() - hubSpawnedAt} ms)` : ''),
    );
    await new Promise((r) => setTimeout(r, wholeNumber('gap-ms', values['gap-ms'])));
  }
  if (prof !== undefined) await h.rpc.call('profileStop', { file: resolvePath(prof) }, 120_000);
  const memAfter = await h.rpc.call<NodeJS.MemoryUsage>('memory', {}, 60_000);
  const rssAfter = h.procStats()?.rssBytes ?? 0;
  const groups = NICE > 0 ? [0, NICE] : [0];
  out(`Command: \`npx tsx scripts/bench/fleet-scrape.ts ${process.argv.slice(2).join(' ')}\``);
  out(`Load average (1/5/15 min): at start ${loadStart}; before the scrapes ${loadBefore}; after ${load()}`);
  out('');
  out('### Pure scheduler (calibration, scripts/bench/scheduler.ts)');
  out(sched);
  out('');
  out(`### Scrape at ${N.toLocaleString('en-US')} nodes / ${M.toLocaleString('en-US')} pods`);
  out(`register ${(reg.ms / 1000).toFixed(1)} s, all Running ${(dep.ms / 1000).toFixed(1)} s`);
  out(`/metrics rendered ahead: ${values['no-render-ahead'] ? 'no (the first scrape starts the lines)' : 'yes (a scrape token exists from the start)'}`);
  if (warm.length > 0) out(`warm-up scrapes before the settle period (not counted): ${warm.map((m) => m.toFixed(0)).join(' / ')} ms`);
  out(
    `usage at the hub: ${usage?.nodes} nodes, ${usage?.pods} pods, ${usage?.containersWithRate} containers with a CPU rate (history ${mib(usage?.historyBytes ?? 0)} MiB)`,
  );
  out('');
  out(`Accept-Encoding: ${values.identity ? '(none: identity)' : 'gzip (decompressed by the reader; last body parse-checked)'}`);
  out('');
  if (NICE > 0) out(`scrapes alternate: the hollow agents' worker processes at nice 0, then at nice ${NICE} (during that scrape only)`);
  out('');
  out(
    '| scrape | workers at nice | status | encoding | time to last byte | hub CPU during (all threads; all its work, 10 ms ticks) | body | on the wire | series | hub RSS peak during | hub RSS after |',
  );
  out('|---|---|---|---|---|---|---|---|---|---|---|');
  scrapes.forEach((s, i) =>
    out(
      `| ${i + 1} | ${s.nice} | ${s.status} | ${s.encoding} | ${s.ms.toFixed(0)} ms | ${s.hubCpuMs.toFixed(0)} ms | ${(s.bytes / 2 ** 20).toFixed(1)} MiB | ${(s.wireBytes / 2 ** 20).toFixed(2)} MiB | ${s.series.toLocaleString('en-US')} | ${mib(s.rssPeak)} MiB | ${mib(s.rssAfter)} MiB |`,
    ),
  );
  out('');
  for (const g of groups) {
    const times = scrapes.filter((s) => s.nice === g).map((s) => s.ms);
    const t = spread(times);
    const cpu = spread(scrapes.filter((s) => s.nice === g).map((s) => s.hubCpuMs));
    out(
      `time per scrape, workers at nice ${g}: min ${Math.min(...times).toFixed(0)} ms, median ${t.p50.toFixed(0)} ms, max ${t.max.toFixed(0)} ms (hub CPU median ${cpu.p50.toFixed(0)} ms)`,
    );
  }
  out(`hub RSS before the scrapes ${mib(rssBefore)} MiB, after ${mib(rssAfter)} MiB`);
  out(
    `hub heap after a full GC ${mib(memBefore.heapUsed)} → ${mib(memAfter.heapUsed)} MiB (external ${mib(memBefore.external)} → ${mib(memAfter.external)} MiB)`,
  );
} catch (err) {
  out(`FAILED: ${err instanceof Error ? err.message : String(err)} (load ${load()})`);
  out('');
  out('### Pure scheduler (calibration, scripts/bench/scheduler.ts)');
  out(sched);
} finally {
  await fleet?.stop().catch(() => undefined);
  await hub?.stop().catch(() => undefined);
  killAll();
  rmSync(hubDir, { recursive: true, force: true });
  rmSync(agentRoot, { recursive: true, force: true });
}
process.stdout.write(`${lines.join('\n')}\n`);
process.exit(0);
