/**
 * HA failover benchmark (issue 19): `kill -9` of the leading hub on etcd, with a hollow fleet.
 *
 * Three etcd members (Debian's etcd-server, test/helpers/etcd.ts, etcd's default raft timings),
 * `--hubs` hub processes on them (lib/hub-child.ts → `leadOnEtcd` of hub/main.ts, as `orchard hub
 * --store etcd://…` runs), N hollow nodes (the real Agent over a MemoryRuntime, in worker
 * processes) that know every hub's MQTT address and move to the next one when theirs drops or
 * refuses (the agent Link's own `hubs` rotation), and a deployment spread over them. Then, `--runs` times:
 *   t0 = `kill -9` of the leader;
 *   → won: a standby won the election (the dead leader's lease expired), then had the identity
 *     and the store from etcd ("elected"), then listened;
 *   → API: first hub whose /healthz says role leader and that answers an authenticated read
 *     (GET /api/v1/deployments, admin token) with 200, polled every 100 ms (standbys serve reads
 *     too, so the role is checked);
 *   → MQTT: first CONNACK (an API-token MQTT session) from any other hub, polled every 100 ms;
 *   → nodes: the new leader has heard every node since it started and holds it Ready, and every
 *     agent holds its desired set from after t0;
 *   → pods: every pod reported Running to the new leader (same uid, same node);
 *   and: pods rescheduled (name → uid, node before vs after: must be 0), containers restarted on
 *   the agents (every container's id and start time before vs after: must be 0), and the node
 *   events (NodeNotReady, Rescheduling, …) the new leader wrote. The killed hub is started again
 *   as a standby before the next run.
 * Also per run: the agents' link attempts that were refused (no hub listening) and those that
 * failed otherwise (agent/link.ts), and the longest event-loop stalls of the old leader while it
 * led and of the new one from winning to ready (a stall longer than TTL − 1 s costs a leader its
 * lease). The pure scheduler at 1,000 nodes (scripts/bench/scheduler.ts) is printed as the
 * machine's calibration figure, and the 1-minute load average before each kill.
 *
 * Run: npx tsx scripts/bench/failover.ts [--nodes 1000] [--pods 3000] [--hubs 3] [--runs 3]
 *   [--leader-ttl 6s (the hub's default)] [--old-agent-backoff] [--procs 2] [--usage-interval-ms 30000]
 *   [--deadline-ms 120000] [--setup-ms 600000] [--max-minutes 30] [--scheduler-pods 20000 | --no-scheduler]
 *   [--md out.md] [--json out.json]
 * --old-agent-backoff: the agents back off on refusals as a busy hub (agent/link.ts `refusedFastForMs: 0`),
 * the agent's behaviour before refusals got their short window; for before/after comparisons.
 *
 * Bounded: every phase has a deadline and the whole run stops after --max-minutes. Every process
 * it starts (etcd members, hubs, workers) is killed on any exit, and its temp dirs removed; ports
 * are picked free on 127.0.0.1.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { apiTokenId } from '../../protocol/api.js';
import { userClientId } from '../../protocol/topics.js';
import { DEFAULT_LEADER_TTL_S } from '../../hub/store/etcd/election.js';
import { EtcdCluster, type EtcdMemberStatus } from '../../test/helpers/etcd.js';
import { freePort } from '../../test/helpers/procs.js';
import type { HubSnapshot } from './lib/fleet-tracker.js';
import type { HubChildConfig } from './lib/hub-child.js';
import type { HollowFleetOptions, HollowNode } from './lib/hollow-fleet.js';
import { HubProcess, killAll, runSchedulerBench, startWorkerFleet, type FleetHandle } from './lib/processes.js';
import { parseSchedulerTable, schedulerTable, type SchedulerRow } from './lib/report.js';
import { pollUntil } from './lib/scenario.js';
import { percentile } from './lib/stats.js';
import { apiRequest, applyAll, benchDeployments } from './lib/workload.js';
import { wholeNumber } from './lib/flags.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000' },
    pods: { type: 'string', default: '3000' },
    hubs: { type: 'string', default: '3' },
    runs: { type: 'string', default: '3' },
    'leader-ttl': { type: 'string' },
    'old-agent-backoff': { type: 'boolean', default: false },
    procs: { type: 'string', default: '2' },
    'usage-interval-ms': { type: 'string', default: '30000' },
    'deadline-ms': { type: 'string', default: '120000' },
    'setup-ms': { type: 'string', default: '600000' },
    'max-minutes': { type: 'string', default: '30' },
    'scheduler-pods': { type: 'string', default: '20000' },
    'no-scheduler': { type: 'boolean', default: false },
    md: { type: 'string' },
    json: { type: 'string' },
  },
  strict: true,
});
const int = (name: keyof typeof values): number => wholeNumber(name, values[name] as string | undefined);
const N = int('nodes');
const M = int('pods');
const HUBS = Math.max(2, int('hubs'));
const RUNS = int('runs');
const DEADLINE = int('deadline-ms');
const SETUP_MS = int('setup-ms');
const USAGE = int('usage-interval-ms');
/** Unset: the hub's own default, as `orchard hub` without --leader-ttl. */
const TTL_FLAG = values['leader-ttl'];
const TTL = TTL_FLAG ?? `${DEFAULT_LEADER_TTL_S}s (the hub's default)`;
const OLD_BACKOFF = values['old-agent-backoff'] === true;
const HA_SECRET = `failover-bench-${process.pid}-${Date.now()}`;
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

interface RunResult {
  run: number;
  load1: number;
  killed: string;
  newLeader: string;
  /** From the kill: the new leader won the election, had the store (elected; its own clock, same machine), listened, first API 200, first CONNACK. */
  wonMs: number;
  electedMs: number;
  listeningMs: number;
  apiMs: number;
  mqttMs: number;
  nodesOk: boolean;
  nodesMs: number;
  podsOk: boolean;
  podsMs: number;
  podsRescheduled: number;
  podsMissing: number;
  containersRestarted: number;
  containersMissing: number;
  /** Node events the new leader wrote after the kill (NodeNotReady, Rescheduling, …), by reason. */
  nodeEvents: Record<string, number>;
  /** Lowest count of Ready nodes seen on the new leader while it converged. */
  minReady: number;
  agentLinkBuilds: number;
  /** Agents' link attempts after the kill that were refused (nobody listening) / failed otherwise. */
  agentLinkRefused: number;
  agentLinkFailed: number;
  /** Longest event-loop stalls (ms): the old leader's while it led (since its tracker attached), the new one's from winning to ready and after. */
  oldLeaderStallMs: number;
  newLeaderStartStallMs: number;
  newLeaderStallMs: number;
  detail?: string;
}

const out: {
  machine: string;
  command: string;
  config: Record<string, unknown>;
  scheduler: SchedulerRow[];
  setup: { registerMs: number; deployMs: number; applyMs: number; applyRetries: number; load1: number };
  runs: RunResult[];
  etcd: EtcdMemberStatus[];
  errors: string[];
} = {
  machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}`,
  command: `npx tsx scripts/bench/failover.ts ${process.argv.slice(2).join(' ')}`.trim(),
  config: { nodes: N, pods: M, hubs: HUBS, runs: RUNS, leaderTtl: TTL, oldAgentBackoff: OLD_BACKOFF, usageIntervalMs: USAGE },
  scheduler: [],
  setup: { registerMs: 0, deployMs: 0, applyMs: 0, applyRetries: 0, load1: 0 },
  runs: [],
  etcd: [],
  errors: [],
};

let etcd: EtcdCluster | undefined;
const dirs: string[] = [];
function cleanup(): void {
  killAll();
  etcd?.close();
  etcd = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

let lastProgress = 0;
function progress(phase: string, s: HubSnapshot): void {
  if (Date.now() - lastProgress < 10_000) return;
  lastProgress = Date.now();
  log(
    `${phase}: Ready ${s.nodesReady}/${N} heard ${s.nodesHeard} pods ${s.pods} Running ${s.podsRunning} reported ${s.podsReportedRunning} loop p99 ${s.eventLoopDelay.p99Ms.toFixed(0)} ms`,
  );
}

const sec = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
function report(partial: boolean): string {
  const rows = out.runs;
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  const head = [
    'run',
    'load 1 min',
    'killed → new leader',
    'won',
    'elected',
    'listening',
    'API 200 (leader)',
    'MQTT CONNACK',
    `all ${N} nodes Ready on it`,
    '(of which after it listened)',
    `all ${M} pods reported`,
    'pods rescheduled',
    'containers restarted',
    'node events',
    'min Ready',
    'link builds',
    'dials refused / failed',
    'longest loop stall: old leader / new at start / new after',
  ];
  const table = [
    line(head),
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) =>
      line([
        String(r.run),
        r.load1.toFixed(1),
        `${r.killed} → ${r.newLeader}`,
        sec(r.wonMs),
        sec(r.electedMs),
        sec(r.listeningMs),
        sec(r.apiMs),
        sec(r.mqttMs),
        r.nodesOk ? sec(r.nodesMs) : `MISS (>${sec(r.nodesMs)})`,
        r.nodesOk ? sec(r.nodesMs - r.listeningMs) : '—',
        r.podsOk ? sec(r.podsMs) : `MISS (>${sec(r.podsMs)})`,
        `${r.podsRescheduled}${r.podsMissing > 0 ? ` (+${r.podsMissing} missing)` : ''}`,
        `${r.containersRestarted}${r.containersMissing > 0 ? ` (+${r.containersMissing} gone)` : ''}`,
        Object.keys(r.nodeEvents).length === 0
          ? '0'
          : Object.entries(r.nodeEvents)
              .map(([k, v]) => `${k} ${v}`)
              .join(', '),
        String(r.minReady),
        String(r.agentLinkBuilds),
        `${r.agentLinkRefused} / ${r.agentLinkFailed}`,
        `${sec(r.oldLeaderStallMs)} / ${sec(r.newLeaderStartStallMs)} / ${sec(r.newLeaderStallMs)}`,
      ]),
    ),
  ];
  const spread = (pick: (r: RunResult) => number, ok: (r: RunResult) => boolean = () => true): string => {
    const xs = rows.filter(ok).map(pick);
    if (xs.length === 0) return '—';
    return `median ${sec(percentile(xs, 0.5))}, min ${sec(Math.min(...xs))}, max ${sec(Math.max(...xs))} (n=${xs.length})`;
  };
  const worst = (pick: (r: RunResult) => number): number => Math.max(0, ...rows.map(pick));
  const allOk = (f: (r: RunResult) => boolean): boolean => rows.length > 0 && rows.every(f);
  const serveWorst = Math.max(
    worst((r) => r.apiMs),
    worst((r) => r.mqttMs),
  );
  // The team's rule: a target met with no headroom is not met; say how much is left.
  const verdict = (ok: boolean, worstMs: number, targetMs: number): string =>
    rows.length === 0 ? '—' : ok ? `met, worst ${sec(worstMs)}: ${sec(targetMs - worstMs)} to spare` : 'MISSED';
  const nodesWorst = worst((r) => (r.nodesOk ? r.nodesMs : Infinity));
  const cal = out.scheduler.find((r) => r.nodes === 1000 && r.mode.startsWith('sampled'));
  return [
    `Machine: ${out.machine}`,
    `Command: \`${out.command}\`${partial ? ' (STOPPED EARLY: partial results)' : ''}`,
    `Calibration (pure scheduler, 1,000 nodes, sampled): ${cal ? `${cal.podsPerSec.toLocaleString('en-US')} pods/s` : 'not run'}`,
    `Setup: ${N} nodes Ready on the first leader in ${sec(out.setup.registerMs)}, ${M} pods Running in ${sec(out.setup.deployMs)}` +
      ` (apply answered in ${sec(out.setup.applyMs)}, ${out.setup.applyRetries} requests retried after ERR_TIMEOUT or another 5xx)` +
      ` (load ${out.setup.load1.toFixed(1)}); ${HUBS} hubs, leader TTL ${TTL}, 3 etcd members` +
      `${OLD_BACKOFF ? '; agents with the old back-off on refusals (--old-agent-backoff)' : ''}`,
    '',
    ...table,
    '',
    '| measure | spread over runs | target | verdict |',
    '|---|---|---|---|',
    `| kill -9 → API 200 | ${spread((r) => r.apiMs)} | ≤ 10 s | ${verdict(serveWorst <= 10_000, serveWorst, 10_000)} |`,
    `| kill -9 → MQTT CONNACK | ${spread((r) => r.mqttMs)} | ≤ 10 s | (with the API) |`,
    `| kill -9 → all nodes Ready on the new leader | ${spread(
      (r) => r.nodesMs,
      (r) => r.nodesOk,
    )} | ≤ 30 s | ${verdict(
      allOk((r) => r.nodesOk && r.nodesMs <= 30_000),
      nodesWorst,
      30_000,
    )} |`,
    `| pods rescheduled | ${rows.map((r) => r.podsRescheduled + r.podsMissing).join(', ') || '—'} | 0 | ${allOk((r) => r.podsRescheduled + r.podsMissing === 0) ? 'met' : 'MISSED'} |`,
    `| containers restarted (hollow agents: the real Agent on a MemoryRuntime) | ${rows.map((r) => r.containersRestarted + r.containersMissing).join(', ') || '—'} | 0 | ${allOk((r) => r.containersRestarted + r.containersMissing === 0) ? 'met' : 'MISSED'} |`,
    '',
    `etcd members at the end: ${out.etcd.map((m) => `${m.name} db ${(m.dbSize / 2 ** 20).toFixed(1)} MiB (in use ${(m.dbSizeInUse / 2 ** 20).toFixed(1)}), revision ${m.revision}`).join('; ') || '—'}`,
    '',
    'Pure scheduler (calibration, scripts/bench/scheduler.ts):',
    out.scheduler.length > 0 ? schedulerTable(out.scheduler) : '(not run)',
    ...(out.errors.length > 0 ? ['', `Errors: ${out.errors.join('; ')}`] : []),
    '',
  ].join('\n');
}

function finish(partial: boolean, code: number): never {
  cleanup();
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
process.on('exit', () => cleanup());

interface HubSlot {
  name: string;
  cfg: HubChildConfig;
  launch: ReturnType<typeof HubProcess.launch> | undefined;
  proc: HubProcess | undefined;
  apiUrl: string;
  mqttUrl: string;
}

/** First time (ms after `since`) that `probe` succeeds against any of `targets`, polling every 100 ms; undefined at the deadline. */
async function firstSuccess(targets: () => HubSlot[], probe: (h: HubSlot) => Promise<boolean>, since: number, deadline: number): Promise<number | undefined> {
  for (;;) {
    const hits = await Promise.all(targets().map((h) => probe(h).catch(() => false)));
    if (hits.some((x) => x)) return Date.now() - since;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The new LEADER serves the API: its /healthz says role leader and an authenticated read answers
 * 200. (A standby answers reads too since standbys serve them from etcd, so a read alone would
 * measure the standby, 0.0-0.2 s after the kill, not the failover.)
 */
async function apiOk(h: HubSlot, token: string, ca: string): Promise<boolean> {
  const within = <T>(p: Promise<T>): Promise<T> => Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 2_000))]);
  const health = await within(apiRequest('GET', `${h.apiUrl}/healthz`, token, ca));
  if (health.status !== 200 || (JSON.parse(health.text) as { role?: string }).role !== 'leader') return false;
  const r = await within(apiRequest('GET', `${h.apiUrl}/api/v1/deployments`, token, ca));
  return r.status === 200;
}

function mqttOk(h: HubSlot, token: string, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = mqtt.connect(h.mqttUrl, {
      clientId: userClientId(apiTokenId(token) ?? '', `failover-probe-${h.name}`),
      username: 'token',
      password: token,
      ca,
      rejectUnauthorized: true,
      reconnectPeriod: 0,
      connectTimeout: 2_000,
      protocolVersion: 4,
    });
    const done = (ok: boolean): void => {
      c.end(true);
      resolve(ok);
    };
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
    c.once('close', () => done(false));
  });
}

async function main(): Promise<void> {
  if (!values['no-scheduler']) {
    log('pure scheduler micro-benchmark (calibration)…');
    // 1,000 nodes only: the calibration figure (the 5,000-node rows took > 5 min at load 17).
    out.scheduler = parseSchedulerTable(await runSchedulerBench(int('scheduler-pods'), [1000]));
    log(`scheduler: ${out.scheduler.map((r) => `${r.nodes} nodes ${r.mode}: ${r.podsPerSec} pods/s`).join('; ')}`);
  }
  log('3 etcd members…');
  // etcd's own raft timings (100 ms / 1 s), not the tests' fast ones: a member election is not what is measured.
  etcd = await EtcdCluster.start(3, { heartbeatMs: 100, electionMs: 1000 });
  dirs.push(etcd.dir);
  const root = mkdtempSync(join(os.tmpdir(), 'orchard-failover-'));
  dirs.push(root);
  const agentRoot = mkdtempSync(join('/dev/shm', 'orchard-failover-agents-'));
  dirs.push(agentRoot);

  const slots: HubSlot[] = [];
  for (let i = 0; i < HUBS; i++) {
    const [httpPort, mqttPort] = [await freePort(), await freePort()];
    const name = String.fromCharCode(97 + i);
    slots.push({
      name,
      cfg: {
        dataDir: join(root, name),
        httpPort,
        mqttPort,
        heartbeatGraceMs: 4 * USAGE,
        etcd: { endpoints: etcd.endpoints, ...(TTL_FLAG !== undefined ? { leaderTtl: TTL_FLAG } : {}) },
      },
      launch: undefined,
      proc: undefined,
      apiUrl: `https://127.0.0.1:${httpPort}`,
      mqttUrl: `mqtts://127.0.0.1:${mqttPort}`,
    });
  }
  const env = { ORCHARD_HA_SECRET: HA_SECRET };
  const launch = (s: HubSlot): void => {
    s.proc = undefined;
    s.launch = HubProcess.launch(s.cfg, [], env, `hub-${s.name}`);
  };

  // The first leader, alone, so it is `a`; then the standbys.
  const first = slots[0]!;
  launch(first);
  first.proc = await first.launch!.ready(120_000);
  const token = first.proc.ready.adminToken;
  if (token === undefined) throw new Error('the first leader did not create an admin token');
  const ca = first.proc.ready.caPem;
  log(`hub a leads (pid ${first.proc.pid}), up in ${first.proc.ready.startMs} ms`);
  const creds = await first.proc.rpc.call<Array<[string, string]>>('issue', { prefix: 'hollow-', count: N }, 300_000);
  for (const s of slots.slice(1)) launch(s);
  await Promise.all(slots.slice(1).map((s) => s.launch!.campaigning(60_000)));
  // Each standby reads the leader key and watches it; give that a moment before anything else.
  await new Promise((r) => setTimeout(r, 2_000));
  for (const s of slots.slice(1)) if (s.launch!.child.exitCode !== null) throw new Error(`standby ${s.name} exited (${s.launch!.child.exitCode})`);

  const nodes: HollowNode[] = creds.map(([name, credential]) => ({ name, credential }));
  const fleetOpts: HollowFleetOptions = {
    mqttUrl: first.mqttUrl,
    mqttUrls: slots.map((s) => s.mqttUrl),
    ...(OLD_BACKOFF ? { refusedFastForMs: 0 } : {}),
    caPem: ca,
    nodes,
    dataRoot: agentRoot,
    usageIntervalMs: USAGE,
  };
  const t0 = Date.now();
  const fleet: FleetHandle = await startWorkerFleet(int('procs'), fleetOpts);
  const lead0 = first.proc;
  const reg = await pollUntil(
    t0,
    t0 + SETUP_MS,
    1000,
    () => lead0.snapshot(),
    (s) => s.nodesReady >= N && s.nodesHeard >= N,
    (s) => progress('register', s),
  );
  out.setup.registerMs = reg.ms;
  log(`register: ${reg.last?.nodesReady ?? 0}/${N} Ready in ${reg.ms} ms`);
  if (!reg.ok) throw new Error(`only ${reg.last?.nodesReady ?? 0}/${N} nodes Ready on the first leader`);
  const t1 = Date.now();
  // Many attempts: on a loaded box an apply can time out waiting for etcd behind the controllers' writes (ERR_TIMEOUT, 504); it is idempotent.
  const { retries } = await applyAll(first.apiUrl, token, ca, benchDeployments(M, 100), 30);
  out.setup.applyRetries = retries;
  out.setup.applyMs = Date.now() - t1;
  const dep = await pollUntil(
    t1,
    t1 + SETUP_MS,
    1000,
    () => lead0.snapshot(),
    (s) => s.pods >= M && s.podsRunning >= M && s.podsReportedRunning >= M,
    (s) => progress('deploy', s),
  );
  out.setup.deployMs = dep.ms;
  out.setup.load1 = os.loadavg()[0] ?? 0;
  log(`deploy: ${dep.last?.podsRunning ?? 0}/${M} Running in ${dep.ms} ms`);
  if (!dep.ok) throw new Error(`only ${dep.last?.podsRunning ?? 0}/${M} pods Running on the first leader`);

  const containers = async (): Promise<Map<string, string>> => {
    const all = await fleet.each<Record<string, string>>('containers', {}, 60_000);
    return new Map(all.flatMap((o) => Object.entries(o)));
  };

  let leader = first;
  for (let run = 1; run <= RUNS; run++) {
    const lp = leader.proc!;
    // Quiet before the kill: the leader's queues drained, its writes in etcd (the barrier is the API's; wait for both).
    const quiet = await pollUntil(
      Date.now(),
      Date.now() + 60_000,
      500,
      () => lp.snapshot(),
      (s) => s.queues.deployments + s.queues.scheduling + s.queues.desired === 0 && s.ingest.queued === 0,
    );
    await new Promise((r) => setTimeout(r, 3_000));
    const podsBefore = new Map((await lp.rpc.call<Array<[string, string, string]>>('pods', {}, 60_000)).map(([n, uid, node]) => [n, `${uid}@${node}`]));
    const eventsBefore = await lp.rpc.call<Record<string, number>>('events', { since: 0 }, 60_000);
    const containersBefore = await containers();
    const statsBefore = await fleet.stats();
    const load1 = os.loadavg()[0] ?? 0;
    const others = slots.filter((s) => s !== leader);
    log(`run ${run}: kill -9 of hub ${leader.name} (pid ${lp.pid}); load ${load1.toFixed(1)}`);

    const tKill = Date.now();
    const deadline = tKill + DEADLINE;
    const apiP = firstSuccess(
      () => others,
      (h) => apiOk(h, token, ca),
      tKill,
      deadline,
    );
    const mqttP = firstSuccess(
      () => others,
      (h) => mqttOk(h, token, ca),
      tKill,
      deadline,
    );
    const readyP = Promise.any(others.map((s) => s.launch!.ready(DEADLINE).then((p) => ({ s, p }))));
    await lp.kill9();
    const killed = leader;
    killed.proc = undefined;
    killed.launch = undefined;
    const { s: next, p: np } = await readyP;
    next.proc = np;
    leader = next;
    const wonMs = (np.ready.wonAt ?? 0) - tKill;
    const electedMs = (np.ready.electedAt ?? 0) - tKill;
    const listeningMs = (np.ready.listeningAt ?? 0) - tKill;
    const from = np.ready.storeFrom;
    const fromText = from === undefined ? '' : from.source === 'standby-copy' ? ', store from its standby copy' : `, store loaded from etcd (${from.reason})`;
    log(`run ${run}: hub ${next.name} won after ${wonMs} ms, elected (store loaded) after ${electedMs} ms, listening after ${listeningMs} ms${fromText}`);
    let nodesMs = 0;
    let minReady = N;
    const conv = await pollUntil(
      tKill,
      deadline,
      250,
      async () => ({ s: await np.snapshot(), a: await fleet.stats(tKill) }),
      ({ s, a }) => {
        minReady = Math.min(minReady, s.nodesReady);
        const nodesOk = s.nodesHeard >= N && s.nodesReady >= N && a.desiredSince >= N;
        if (nodesOk && nodesMs === 0) nodesMs = Date.now() - tKill;
        return nodesOk && s.podsReportedRunning >= M;
      },
    );
    const apiMs = (await apiP) ?? DEADLINE;
    const mqttMs = (await mqttP) ?? DEADLINE;
    // Level-triggered controllers may act a little after convergence: look again after a pause.
    await new Promise((r) => setTimeout(r, 5_000));
    const podsAfter = new Map((await np.rpc.call<Array<[string, string, string]>>('pods', {}, 60_000)).map(([n, uid, node]) => [n, `${uid}@${node}`]));
    let podsRescheduled = 0;
    let podsMissing = 0;
    for (const [n, v] of podsBefore) {
      const a = podsAfter.get(n);
      if (a === undefined) podsMissing++;
      else if (a !== v) podsRescheduled++;
    }
    podsRescheduled += [...podsAfter.keys()].filter((n) => !podsBefore.has(n)).length;
    const containersAfter = await containers();
    let containersRestarted = 0;
    let containersMissing = 0;
    for (const [n, v] of containersBefore) {
      const a = containersAfter.get(n);
      if (a === undefined) containersMissing++;
      else if (a !== v) containersRestarted++;
    }
    const eventsAfter = await np.rpc.call<Record<string, number>>('events', { since: 0 }, 60_000);
    const nodeEvents: Record<string, number> = {};
    for (const [reason, n] of Object.entries(eventsAfter)) {
      const d = n - (eventsBefore[reason] ?? 0);
      if (d > 0 && /Node|Resched|Lost|Evict/i.test(reason)) nodeEvents[reason] = d;
    }
    const a = await fleet.stats(tKill);
    const r: RunResult = {
      run,
      load1,
      killed: killed.name,
      newLeader: next.name,
      wonMs,
      electedMs,
      listeningMs,
      apiMs,
      mqttMs,
      nodesOk: nodesMs > 0,
      nodesMs: nodesMs || conv.ms,
      podsOk: conv.ok,
      podsMs: conv.ms,
      podsRescheduled,
      podsMissing,
      containersRestarted,
      containersMissing,
      nodeEvents,
      minReady,
      agentLinkBuilds: a.linkBuilds - statsBefore.linkBuilds,
      agentLinkRefused: a.linkRefused - statsBefore.linkRefused,
      agentLinkFailed: a.linkFailed - statsBefore.linkFailed,
      oldLeaderStallMs: quiet.last?.eventLoopDelay.maxMs ?? 0,
      newLeaderStartStallMs: np.ready.startStallMs ?? 0,
      newLeaderStallMs: conv.last?.s.eventLoopDelay.maxMs ?? 0,
      ...(conv.ok
        ? {}
        : {
            detail:
              `heard ${conv.last?.s.nodesHeard ?? 0}/${N}, Ready ${conv.last?.s.nodesReady ?? 0}, agents with a new set ` +
              `${conv.last?.a.desiredSince ?? 0}, pods reported ${conv.last?.s.podsReportedRunning ?? 0}/${M}`,
          }),
    };
    out.runs.push(r);
    log(`run ${run}: ${JSON.stringify(r)}`);
    // The killed hub comes back as a standby (its supervisor would restart it).
    launch(killed);
    await killed.launch!.campaigning(60_000);
    await new Promise((res) => setTimeout(res, 2_000));
  }
  out.etcd = await etcd.status().catch(() => []);
  await fleet.stop();
  finish(false, 0);
}

main().catch((err: unknown) => {
  out.errors.push(err instanceof Error ? err.message : String(err));
  log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  finish(true, 1);
});
