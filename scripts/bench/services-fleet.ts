/**
 * Services at fleet scale (issue 15): "a pod becoming Ready → every node's proxy routes to it,
 * ≤ 1 s p99 at 1,000 hollow nodes with 100 services, endpoint traffic per node in bytes".
 *
 * A real hub process and N hollow agents in worker processes (the fleet harness), every agent
 * with services on and a TimingDataPlane (lib/timing-data-plane.ts: notes when an endpoint first
 * appears in an applied table, opens nothing). S Deployments of R replicas, one Service each.
 * Once every node's table holds every endpoint and applies have gone quiet, K trials: scale one
 * deployment up by one; t0 = the new pod's Ready lastTransitionTime (hub clock), t1 per node =
 * Date.now of the first apply whose table routes to it (worker clock: same machine, same
 * clock). Bytes: topic + payload of service and service-index messages each agent received.
 *
 * Per trial the time is split (all from Ready, ms): `published` = the endpoints controller's
 * publish call, `aedes done` = the broker called back, `written` = the broker's first write to
 * each agent's socket (hub-child.ts), `arrived` = the agent's link got the message, `routed` =
 * its table routes to the pod. written → arrived is the worker process getting to the socket (500
 * hollow agents share one), which a real device does not pay.
 *
 * Run: npx tsx scripts/bench/services-fleet.ts [--nodes 1000] [--services 100] [--replicas 2]
 *   [--trials 20] [--procs 2] [--deadline-ms 10000] [--steady-ms 10000] [--setup-ms 200000] [--register-ms 70000] [--max-minutes 6]
 *   [--scheduler-pods 20000 | --no-scheduler] [--md out.md] [--json out.json]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { API_VERSION } from '../../protocol/manifest.js';
import type { Pod, ServiceObject } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import type { HollowNode, ServiceProbe } from './lib/hollow-fleet.js';
import { HubProcess, killAll, runSchedulerBench, startWorkerFleet, type FleetHandle } from './lib/processes.js';
import { parseSchedulerTable, schedulerTable } from './lib/report.js';
import { pollUntil } from './lib/scenario.js';
import { markdownTable, spread, type Spread } from './lib/stats.js';
import { apiRequest, applyAll, benchDeployments } from './lib/workload.js';
import { wholeNumber } from './lib/flags.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000' },
    services: { type: 'string', default: '100' },
    replicas: { type: 'string', default: '2' },
    trials: { type: 'string', default: '20' },
    procs: { type: 'string', default: '2' },
    'deadline-ms': { type: 'string', default: '10000' },
    'steady-ms': { type: 'string', default: '10000' },
    'setup-ms': { type: 'string', default: '200000' },
    /** How long the nodes may take to register (default 60 s + 10 ms per node; a loaded machine needs more). */
    'register-ms': { type: 'string' },
    'usage-interval-ms': { type: 'string', default: '30000' },
    'max-minutes': { type: 'string', default: '6' },
    'scheduler-pods': { type: 'string', default: '20000' },
    'no-scheduler': { type: 'boolean', default: false },
    md: { type: 'string' },
    json: { type: 'string' },
  },
  strict: true,
});
const int = (name: keyof typeof values): number => wholeNumber(name, values[name] as string | undefined);
const N = int('nodes');
const S = int('services');
const R = int('replicas');
const K = Math.min(int('trials'), S);
const DEADLINE = int('deadline-ms');
const SERVICE_CIDR = '127.79.0.0/22';
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const uptime = (): string => execFileSync('uptime', { encoding: 'utf8' }).trim();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Trial {
  service: string;
  /** Hub API call → pod Ready on the hub (scale, schedule, hollow agent start, report, ingest). */
  readyAfterMs: number;
  latency: Spread;
  /** Ready → the service message's arrival at the agent (hub ingest + controller + broker fan-out + worker queueing). */
  arrival: Spread;
  /** Ready → the endpoints controller's publish call for the message with the pod ready (-1: not seen). */
  publishedMs: number;
  /** Ready → aedes called back (the message handed to every subscriber). */
  fanoutDoneMs: number;
  /** Ready → the broker's first write to each agent's socket after that publish (hub side of the arrival). */
  written: Spread;
  /** MQTT clients built so far by all agents (N at start; more = reconnects). */
  linkBuilds: number;
  /**
   * CPU during the trial (scale call to 500 ms after the last node routed): the hub's in ms, the
   * workers' per agent in µs. Both include the bench's own polling (API reads, IPC probes), so
   * they are upper bounds of what the change itself cost.
   */
  hubCpuMs: number;
  workerCpuUsPerAgent: number;
  missed: number;
  bytesPerNode: Spread;
  bytesTotal: number;
}

const out = {
  nodes: N,
  services: S,
  replicas: R,
  trials: [] as Trial[],
  latency: spread([]),
  arrival: spread([]),
  missed: 0,
  steady: { ms: 0, bytesPerNode: spread([]), bytesTotal: 0, hubCpuMsPerSec: 0, workerCpuUsPerAgentPerSec: 0 },
  setupBytesPerNode: spread([]),
  hub: { peakRssBytes: 0, cpuSecondsTotal: 0, cpuSecondsTrials: 0 },
  workers: { peakRssBytes: 0, cpuSeconds: 0 },
  scheduler: [] as ReturnType<typeof parseSchedulerTable>,
  load: { start: uptime(), end: '' },
  errors: [] as string[],
};

function report(partial: boolean): string {
  const mib = (b: number): string => `${Math.round(b / 2 ** 20)} MiB`;
  const ms = (s: Spread): string[] => [s.p50.toFixed(0), s.p99.toFixed(0), s.max.toFixed(0)];
  const met = out.latency.n > 0 && out.missed === 0 && out.latency.p99 <= 1000;
  const headroom = met && out.latency.p99 <= 500;
  return [
    `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}`,
    `Command: \`npx tsx scripts/bench/services-fleet.ts ${process.argv.slice(2).join(' ')}\`${partial ? ' (STOPPED EARLY: partial results)' : ''}`,
    `Load (uptime) at start: ${out.load.start}`,
    `Load (uptime) at end: ${out.load.end}`,
    '',
    markdownTable(
      ['measure', 'p50', 'p99', 'max', 'note'],
      [
        [
          `Ready → routed, ms (${out.latency.n} node×trial samples)`,
          ...ms(out.latency),
          `${out.missed} not routed within ${DEADLINE} ms; target ≤ 1000 ms p99: ${met ? (headroom ? 'met with ≥ 2× headroom' : 'met, headroom < 2×') : 'MISSED'}`,
        ],
        [
          'service bytes per node per trial',
          ...ms(spread(out.trials.map((t) => t.bytesPerNode.p50))),
          `mean ${out.trials.length ? Math.round(out.trials.reduce((a, t) => a + t.bytesPerNode.mean, 0) / out.trials.length) : 0} B (p50/p99/max over trials of each trial's median node)`,
        ],
        ['service bytes, whole fleet per trial', ...ms(spread(out.trials.map((t) => t.bytesTotal))), ''],
        [
          `service bytes per node, steady ${out.steady.ms} ms`,
          ...ms(out.steady.bytesPerNode),
          `fleet total ${out.steady.bytesTotal} B; idle CPU: hub ${out.steady.hubCpuMsPerSec.toFixed(0)} ms/s, workers ${out.steady.workerCpuUsPerAgentPerSec.toFixed(0)} µs/s per agent`,
        ],
        ['service bytes per node, setup (S services created)', ...ms(out.setupBytesPerNode), ''],
      ],
    ),
    '',
    `Hub: peak RSS ${mib(out.hub.peakRssBytes)}, CPU ${out.hub.cpuSecondsTotal.toFixed(1)} s in all ` +
      `(${out.hub.cpuSecondsTrials.toFixed(1)} s during the ${out.trials.length} trials); ` +
      `workers (${N} hollow agents): peak RSS ${mib(out.workers.peakRssBytes)} summed, CPU ${out.workers.cpuSeconds.toFixed(1)} s`,
    '',
    'Per trial:',
    markdownTable(
      [
        'service',
        'API → Ready ms',
        'published',
        'aedes done',
        'written p50',
        'p99',
        'arrived p50',
        'p99',
        'routed p50',
        'p99',
        'max',
        'missed',
        'bytes/node (median)',
        'fleet bytes',
        'link builds',
        'hub CPU ms',
        'worker CPU µs/agent',
      ],
      out.trials.map((t) => [
        t.service,
        String(t.readyAfterMs),
        String(t.publishedMs),
        String(t.fanoutDoneMs),
        t.written.p50.toFixed(0),
        t.written.p99.toFixed(0),
        t.arrival.p50.toFixed(0),
        t.arrival.p99.toFixed(0),
        ...ms(t.latency),
        String(t.missed),
        String(t.bytesPerNode.p50),
        String(t.bytesTotal),
        String(t.linkBuilds),
        t.hubCpuMs.toFixed(0),
        t.workerCpuUsPerAgent.toFixed(0),
      ]),
    ),
    '',
    'Pure scheduler (calibration, scripts/bench/scheduler.ts):',
    out.scheduler.length > 0 ? schedulerTable(out.scheduler) : '(not run)',
    ...(out.errors.length > 0 ? ['', `Errors: ${out.errors.join('; ')}`] : []),
    '',
  ].join('\n');
}

function finish(partial: boolean, code: number): never {
  killAll();
  out.load.end = uptime();
  const md = report(partial);
  process.stdout.write(`${md}\n`);
  if (values.md) writeFileSync(values.md, md);
  if (values.json) writeFileSync(values.json, JSON.stringify(out, null, 2));
  process.exit(code);
}
setTimeout(
  () => {
    log('time limit reached: stopping');
    finish(true, 3);
  },
  int('max-minutes') * 60_000,
).unref();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => finish(true, 130));
process.on('exit', () => killAll());

function serviceDocs(): object[] {
  return Array.from({ length: S }, (_, i) => ({
    apiVersion: API_VERSION,
    kind: 'Service',
    metadata: { name: `bench-${i}` },
    spec: { selector: { app: `bench-${i}` }, ports: [{ port: 80, targetPort: 8080 }] },
  }));
}

/** Per node, concatenated over workers. */
async function probe(fleet: FleetHandle, keys: string[], since: number, topic?: string): Promise<ServiceProbe> {
  const all = await fleet.each<ServiceProbe>('serviceProbe', { keys, since, topic }, 90_000);
  return {
    nodes: all.flatMap((p) => p.nodes),
    seenAt: all.flatMap((p) => p.seenAt),
    arrivedAt: all.flatMap((p) => p.arrivedAt),
    bytes: all.flatMap((p) => p.bytes),
    applies: all.flatMap((p) => p.applies),
    lastApplyAt: Math.max(0, ...all.map((p) => p.lastApplyAt)),
    endpoints: all.flatMap((p) => p.endpoints),
  };
}

const bytesDelta = (a: ServiceProbe, b: ServiceProbe): number[] => b.bytes.map((x, i) => x - (a.bytes[i] ?? 0));

async function main(): Promise<void> {
  if (!values['no-scheduler']) {
    log('pure scheduler micro-benchmark (calibration)…');
    out.scheduler = parseSchedulerTable(await runSchedulerBench(int('scheduler-pods')));
    log(`scheduler: ${out.scheduler.map((r) => `${r.nodes} nodes ${r.mode}: ${r.podsPerSec} pods/s`).join('; ')}`);
  }
  const dataDir = mkdtempSync(join(os.tmpdir(), 'orchard-svcfleet-hub-'));
  const agentRoot = mkdtempSync(join('/dev/shm', 'orchard-svcfleet-agents-'));
  const usage = int('usage-interval-ms');
  const hub = await HubProcess.start({ dataDir, mqttPort: 0, httpPort: 0, heartbeatGraceMs: 4 * usage });
  const sampler = setInterval(() => {
    const p = hub.procStats();
    if (p) out.hub = { ...out.hub, peakRssBytes: Math.max(out.hub.peakRssBytes, p.peakRssBytes), cpuSecondsTotal: p.cpuSeconds };
  }, 1000);
  try {
    const token = hub.ready.adminToken ?? '';
    const api = async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
      const r = await apiRequest(method, `${hub.ready.apiUrl}${path}`, token, hub.ready.caPem, body === undefined ? undefined : JSON.stringify(body));
      if (r.status !== 200) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
      return JSON.parse(r.text) as T;
    };
    const creds = await hub.rpc.call<Array<[string, string]>>('issue', { prefix: 'hollow-', count: N }, 120_000);
    // Reported only (the timing data plane opens nothing); 127.80.0.0/16 is this bench's.
    const nodes: HollowNode[] = creds.map(([name, credential], i) => ({
      name,
      credential,
      advertiseAddress: `127.80.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    }));
    const fleet = await startWorkerFleet(int('procs'), {
      mqttUrl: hub.ready.mqttUrl,
      caPem: hub.ready.caPem,
      nodes,
      dataRoot: agentRoot,
      usageIntervalMs: usage,
      services: { serviceCidr: SERVICE_CIDR },
    });
    const t0 = Date.now();
    const reg = await pollUntil(
      t0,
      t0 + (values['register-ms'] !== undefined ? int('register-ms') : 60_000 + 10 * N),
      1000,
      () => hub.snapshot(),
      (s) => s.nodesReady >= N,
    );
    log(`register: ${reg.last?.nodesReady ?? 0}/${N} Ready in ${reg.ms} ms`);
    if (!reg.ok) throw new Error('nodes did not all register');

    // Deployments and services in one apply, as a user would; setup waits for every node to route to every endpoint.
    const before = await probe(fleet, [], 0);
    await applyAll(hub.ready.apiUrl, token, hub.ready.caPem, [...benchDeployments(S * R, R), ...serviceDocs()]);
    const t1 = Date.now();
    const pods = await pollUntil(
      t1,
      t1 + 120_000,
      500,
      () => hub.snapshot(),
      (s) => s.podsRunning >= S * R,
    );
    log(`deploy: ${pods.last?.podsRunning ?? 0}/${S * R} Running in ${pods.ms} ms`);
    const routed = await pollUntil(
      t1,
      t1 + int('setup-ms'),
      1000,
      () => probe(fleet, [], 0),
      (p) => p.endpoints.every((e) => e >= S * R) && Date.now() - p.lastApplyAt > 2000,
    );
    const full = routed.last?.endpoints.filter((e) => e >= S * R).length ?? 0;
    log(`steady: ${full}/${N} nodes route to all ${S * R} endpoints, ${routed.ms} ms after apply; ${uptime()}`);
    if (!routed.ok) throw new Error(`only ${full}/${N} nodes routed to every endpoint`);
    out.setupBytesPerNode = spread(bytesDelta(before, routed.last ?? before));

    const s0 = await probe(fleet, [], 0);
    const steadyHub0 = hub.procStats()?.cpuSeconds ?? 0;
    const steadyWorkers0 = (await fleet.stats()).cpuSeconds;
    await sleep(int('steady-ms'));
    const s1 = await probe(fleet, [], 0);
    const steady = bytesDelta(s0, s1);
    const secs = int('steady-ms') / 1000;
    out.steady = {
      ms: int('steady-ms'),
      bytesPerNode: spread(steady),
      bytesTotal: steady.reduce((a, b) => a + b, 0),
      hubCpuMsPerSec: (((hub.procStats()?.cpuSeconds ?? 0) - steadyHub0) * 1000) / Math.max(secs, 0.001),
      workerCpuUsPerAgentPerSec: (((await fleet.stats()).cpuSeconds - steadyWorkers0) * 1e6) / N / Math.max(secs, 0.001),
    };

    const cpu0 = hub.procStats()?.cpuSeconds ?? 0;
    const all: number[] = [];
    const arrivals: number[] = [];
    for (let k = 0; k < K; k++) {
      const name = `bench-${k}`;
      const b0 = await probe(fleet, [], 0);
      const hubCpu0 = hub.procStats()?.cpuSeconds ?? 0;
      const workerCpu0 = (await fleet.stats()).cpuSeconds;
      const known = new Set((await api<{ items: Pod[] }>('GET', `/api/v1/pods?labelSelector=app%3D${name}`)).items.map((p) => p.metadata.uid));
      await hub.rpc.call('trackService', { topic: topics.service(name) }, 10_000);
      const tReq = Date.now();
      await api('POST', `/api/v1/deployments/${name}/scale`, { replicas: R + 1 });
      const ready = await pollUntil(
        tReq,
        tReq + 30_000,
        50,
        async () => (await api<{ items: Pod[] }>('GET', `/api/v1/pods?labelSelector=app%3D${name}`)).items.find((p) => !known.has(p.metadata.uid)),
        (p) => p?.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True') === true,
      );
      const pod = ready.last;
      const readyAt = Date.parse(pod?.status.conditions.find((c) => c.type === 'Ready')?.lastTransitionTime ?? '');
      if (!ready.ok || pod === undefined || Number.isNaN(readyAt)) {
        out.errors.push(`${name}: new pod not Ready in 30 s`);
        continue;
      }
      const ep = await pollUntil(
        tReq,
        readyAt + DEADLINE,
        50,
        async () => (await api<ServiceObject>('GET', `/api/v1/services/${name}`)).status.endpoints.find((e) => e.uid === pod.metadata.uid && e.ready),
        (e) => e?.address !== undefined && e.targets[0]?.endpointPort !== undefined,
      );
      const keys = [`uid:${pod.metadata.uid}`, ...(ep.last?.address !== undefined ? [`${ep.last.address}:${ep.last.targets[0]?.endpointPort}`] : [])];
      const seen = await pollUntil(
        tReq,
        readyAt + DEADLINE,
        100,
        () => probe(fleet, keys, tReq, topics.service(name)),
        (p) => p.seenAt.every((t) => t !== null),
      );
      await sleep(500); // messages after the last node routed still count as this trial's traffic
      const b1 = await probe(fleet, [], 0);
      const fan = await hub.rpc.call<{ publishes: Array<{ startedAt: number; doneAt?: number; readyUids: string[] }>; writes: number[] }>(
        'serviceFanout',
        {},
        30_000,
      );
      const readyPub = fan.publishes.findIndex((x) => x.readyUids.includes(pod.metadata.uid));
      const pub = fan.publishes[readyPub];
      // Writes are those after the latest publish: the ready one's only if it was the latest.
      const written = readyPub >= 0 && readyPub === fan.publishes.length - 1 ? fan.writes.map((w) => w - readyAt) : [];
      const hubCpuMs = ((hub.procStats()?.cpuSeconds ?? 0) - hubCpu0) * 1000;
      const fleetStats = await fleet.stats();
      const workerCpuUsPerAgent = ((fleetStats.cpuSeconds - workerCpu0) * 1e6) / N;
      const lat = (seen.last?.seenAt ?? []).filter((t): t is number => t !== null).map((t) => t - readyAt);
      const arr = (seen.last?.arrivedAt ?? []).filter((t): t is number => t !== null).map((t) => t - readyAt);
      all.push(...lat);
      arrivals.push(...arr);
      out.latency = spread(all);
      out.arrival = spread(arrivals);
      const bytes = bytesDelta(b0, b1);
      const t: Trial = {
        service: name,
        readyAfterMs: readyAt - tReq,
        latency: spread(lat),
        missed: N - lat.length,
        arrival: spread(arr),
        publishedMs: pub === undefined ? -1 : pub.startedAt - readyAt,
        fanoutDoneMs: pub?.doneAt === undefined ? -1 : pub.doneAt - readyAt,
        written: spread(written),
        linkBuilds: fleetStats.linkBuilds,
        hubCpuMs,
        workerCpuUsPerAgent,
        bytesPerNode: spread(bytes),
        bytesTotal: bytes.reduce((a, b) => a + b, 0),
      };
      out.trials.push(t);
      out.missed += t.missed;
      log(
        `trial ${k + 1}/${K} ${name}: published ${t.publishedMs} (aedes done ${t.fanoutDoneMs}), ` +
          `written p50 ${t.written.p50} p99 ${t.written.p99} (${t.written.n}), arrived p50 ${t.arrival.p50} p99 ${t.arrival.p99}, ` +
          `routed p50 ${t.latency.p50} p99 ${t.latency.p99} max ${t.latency.max} ms, ` +
          `missed ${t.missed}, bytes/node ${t.bytesPerNode.p50}, link builds ${t.linkBuilds}, ` +
          `hub CPU ${hubCpuMs.toFixed(0)} ms, worker CPU ${workerCpuUsPerAgent.toFixed(0)} µs/agent; ${uptime()}`,
      );
    }
    out.latency = spread(all);
    out.hub.cpuSecondsTrials = (hub.procStats()?.cpuSeconds ?? 0) - cpu0;
    const w = await fleet.stats();
    out.workers = { peakRssBytes: w.peakRssBytes, cpuSeconds: w.cpuSeconds };
  } finally {
    clearInterval(sampler);
    const p = hub.procStats();
    if (p) out.hub = { ...out.hub, peakRssBytes: Math.max(out.hub.peakRssBytes, p.peakRssBytes), cpuSecondsTotal: p.cpuSeconds };
    killAll();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(agentRoot, { recursive: true, force: true });
  }
  finish(false, 0);
}

main().catch((err: unknown) => {
  out.errors.push(err instanceof Error ? err.message : String(err));
  log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  finish(true, 1);
});
