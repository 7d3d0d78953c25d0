/**
 * Fleet-scale benchmark: a real hub process against thousands of hollow nodes (the real Agent
 * over a MemoryRuntime, real MQTT over TLS), plus the pure scheduler micro-benchmark.
 *
 * Run: npx tsx scripts/bench/fleet.ts --nodes 1000,5000,10000 [--pods-per-node 10] [--procs 2]
 *   [--replicas-per-deployment 100] [--usage-interval-ms 30000] [--steady-ms <usage interval + 2 s>]
 *   [--max-minutes 20] [--scheduler-pods 20000 | --no-scheduler] [--json out.json] [--md out.md]
 *   [--hub-cpu-prof DIR]   (hub .cpuprofile of register+deploy and of the recovery, per size)
 *   [--deploy-s S]   (deploy deadline; default 60 s + 2 ms per pod)
 *   [--recover-s S]   (deadline of the kill -9 storm, from the kill; default 180 s)
 *   [--store sqlite|etcd] [--leader-ttl 6s] [--etcd-members 3]   (etcd: a cluster of that many members started for each size, issue 19)
 *   [--hub-node-args=--max-old-space-size=768]   (extra node flags for the hub process; note the =)
 *   [--hub-env MALLOC_MMAP_THRESHOLD_=16384]   (extra environment of the hub process only, space-separated K=V)
 * FLEET_HUB_CGROUP=/sys/fs/cgroup/cpu/slowhub: the hub and etcd processes in that cgroup (a slower
 *   hub machine than the devices); the pure-scheduler calibration runs in it too.
 *   `kill -USR2 <hub pid>` writes a hub heap snapshot (FLEET_HEAP_DIR, default the temp dir)
 *
 * Every phase has a deadline; the whole run stops itself after --max-minutes, and every child
 * process is killed on any exit. Results: a Markdown table on stdout (and --md / --json).
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { killAll, runSchedulerBench } from './lib/processes.js';
import { fleetTable, parseSchedulerTable, schedulerTable, targetsTable, type SchedulerRow } from './lib/report.js';
import { runScenario, type ScenarioResult } from './lib/scenario.js';
import { wholeNumber } from './lib/flags.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000,5000,10000' },
    'pods-per-node': { type: 'string', default: '10' },
    procs: { type: 'string', default: '2' },
    'replicas-per-deployment': { type: 'string', default: '100' },
    'usage-interval-ms': { type: 'string', default: '30000' },
    'steady-ms': { type: 'string' },
    'max-minutes': { type: 'string', default: '20' },
    'scheduler-pods': { type: 'string', default: '20000' },
    'no-scheduler': { type: 'boolean', default: false },
    'hub-cpu-prof': { type: 'string' },
    'hub-node-args': { type: 'string' },
    'hub-env': { type: 'string' },
    store: { type: 'string', default: 'sqlite' },
    'leader-ttl': { type: 'string' },
    'etcd-members': { type: 'string', default: '3' },
    /** Deploy deadline in seconds (default 60 s + 2 ms per pod); a store that confirms writes slowly (etcd on a shared box) needs more. */
    'deploy-s': { type: 'string' },
    /** Deadline of the storm after the kill -9, in seconds (default 180 s): a slow return is watched to its end. */
    'recover-s': { type: 'string' },
    json: { type: 'string' },
    md: { type: 'string' },
  },
  strict: true,
});

const int = wholeNumber;

/** `K=V K2=V2` → the hub's extra environment; a word without `=` or a bad name is refused. */
function hubEnvOf(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const word of text.split(' ').filter((w) => w !== '')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(word);
    if (m === null) throw new Error(`--hub-env: expected NAME=value, got ${JSON.stringify(word)}`);
    env[m[1] as string] = m[2] as string;
  }
  return env;
}
const sizes = (values.nodes ?? '').split(',').map((s) => int('nodes', s.trim()));
const podsPerNode = int('pods-per-node', values['pods-per-node']);
const procs = int('procs', values.procs);
if (values.store !== 'sqlite' && values.store !== 'etcd') {
  process.stderr.write(`--store must be sqlite or etcd (got ${JSON.stringify(values.store)})\n`);
  process.exit(2);
}
function etcdMembers(v: string | undefined): 1 | 3 {
  if (v === '1' || v === '3') return Number(v) as 1 | 3;
  process.stderr.write(`--etcd-members must be 1 or 3 (got ${JSON.stringify(v)})\n`);
  process.exit(2);
}
const store =
  values.store === 'etcd'
    ? {
        kind: 'etcd' as const,
        members: etcdMembers(values['etcd-members']),
        ...(values['leader-ttl'] ? { leaderTtl: values['leader-ttl'] } : {}),
      }
    : { kind: 'sqlite' as const };
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

const results: ScenarioResult[] = [];
let sched: SchedulerRow[] = [];
let schedRaw = '';

function report(partial: boolean): string {
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ${os.type()} ${os.release()}`;
  const cmd = `npx tsx scripts/bench/fleet.ts ${process.argv.slice(2).join(' ')}`.trim();
  return [
    `Machine: ${machine}`,
    `Command: \`${cmd}\`${partial ? ' (STOPPED EARLY: partial results)' : ''}`,
    '',
    '### Targets',
    targetsTable(results, sched),
    '',
    '### Fleet',
    fleetTable(results),
    '',
    '### Pure scheduler (scripts/bench/scheduler.ts)',
    sched.length > 0 ? schedulerTable(sched) : '(not run)',
    '',
  ].join('\n');
}

function finish(partial: boolean, code: number): never {
  killAll();
  const md = report(partial);
  process.stdout.write(`${md}\n`);
  if (values.md) writeFileSync(values.md, md);
  if (values.json) writeFileSync(values.json, JSON.stringify({ results, scheduler: sched, schedulerRaw: schedRaw }, null, 2));
  process.exit(code);
}

const maxMs = int('max-minutes', values['max-minutes']) * 60_000;
setTimeout(() => {
  log(`time limit of ${values['max-minutes']} min reached: stopping`);
  finish(true, 3);
}, maxMs).unref();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => finish(true, 130));
process.on('exit', () => killAll());

async function main(): Promise<void> {
  if (!values['no-scheduler']) {
    log('pure scheduler micro-benchmark…');
    schedRaw = await runSchedulerBench(int('scheduler-pods', values['scheduler-pods']));
    sched = parseSchedulerTable(schedRaw);
    log(`scheduler: ${sched.map((r) => `${r.nodes} nodes ${r.mode}: ${r.podsPerSec} pods/s`).join('; ')}`);
  }
  const prof = values['hub-cpu-prof'];
  for (const n of sizes) {
    log(`=== ${n} nodes, ${n * podsPerNode} pods, ${procs} worker process(es), store ${store.kind} ===`);
    const r = await runScenario({
      nodes: n,
      podsPerNode,
      procs,
      replicasPerDeployment: int('replicas-per-deployment', values['replicas-per-deployment']),
      usageIntervalMs: int('usage-interval-ms', values['usage-interval-ms']),
      ...(values['steady-ms'] !== undefined ? { steadyMs: int('steady-ms', values['steady-ms']) } : {}),
      timeouts: {
        ...(values['deploy-s'] !== undefined ? { deployMs: int('deploy-s', values['deploy-s']) * 1000 } : {}),
        ...(values['recover-s'] !== undefined ? { recoverMs: int('recover-s', values['recover-s']) * 1000 } : {}),
      },
      log,
      ...(prof ? { profileDir: prof } : {}),
      ...(values['hub-node-args'] ? { hubNodeArgs: values['hub-node-args'].split(' ').filter((a) => a !== '') } : {}),
      ...(values['hub-env'] ? { hubEnv: hubEnvOf(values['hub-env']) } : {}),
      store,
    });
    results.push(r);
    process.stderr.write(`${fleetTable([r])}\n`);
  }
  finish(false, 0);
}

main().catch((err: unknown) => {
  log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  finish(true, 1);
});
