/**
 * Rollout benchmark: time to roll 10 replicas over 2 nodes from v1 to v2 (maxSurge 1,
 * maxUnavailable 1), Orchard (real hub + two agent processes on this Docker Engine) against
 * `docker service update --image` on a Docker Swarm service of the same size on the same engine.
 *
 * Run: npm run build && npx tsx scripts/bench/rollout.ts [--runs N] [--no-swarm]
 *
 * Both use local images (orchard-test/busybox:1 → :2, no pulls), so the numbers compare
 * orchestration, not the network. Swarm is initialised only for the benchmark
 * (`docker swarm init --advertise-addr 127.0.0.1`) and always left (`docker swarm leave
 * --force`), even on failure; if this engine is already part of a swarm the Swarm rows are
 * skipped rather than touching someone else's swarm. Prints a table and writes
 * docs/benchmarks-rollout.md.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Cluster, ensureTestImage } from '../../test/helpers/cluster.js';
import { REPO } from '../../test/helpers/procs.js';

const REPLICAS = 10;
const V1 = 'orchard-test/busybox:1';
const V2 = 'orchard-test/busybox:2';
const COMMAND = "trap 'exit 0' TERM; while true; do sleep 1; done";

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] ?? 0) > 0 && args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : 3;
const withSwarm = !args.includes('--no-swarm');

function docker(a: string[], timeout = 300_000): string {
  return execFileSync('docker', a, { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- Orchard ----

const manifest = (image: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: bench-roll }
spec:
  replicas: ${REPLICAS}
  progressDeadlineSeconds: 600
  strategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } }
  template:
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: app
          image: ${image}
          command: ["sh", "-c", "${COMMAND}"]
          resources: { requests: { cpu: 10m, memory: 8Mi } }
`;

interface StatusView {
  generation: number;
  observedGeneration: number;
  updatedReplicas: number;
  availableReplicas: number;
  rollout?: { phase: string };
  pods: Array<{ updated: boolean; ready: boolean }>;
}

async function orchardRun(c: Cluster): Promise<number> {
  const file = join(c.dir, 'bench.yaml');
  const done = async (): Promise<boolean> => {
    const s = (await c.api('GET', '/api/v1/deployments/bench-roll/rollout/status')).body as StatusView;
    return s.observedGeneration >= s.generation && s.rollout?.phase === 'Complete' && s.pods.length === REPLICAS && s.pods.every((p) => p.updated && p.ready);
  };
  const waitDone = async (what: string): Promise<void> => {
    const deadline = Date.now() + 300_000;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error(`orchard: ${what} did not finish in 300 s\n${c.logs()}`);
      await sleep(100);
    }
  };
  writeFileSync(file, manifest(V1));
  if (c.cli(['apply', '-f', file]).code !== 0) throw new Error('apply v1 failed');
  await waitDone('initial v1');
  writeFileSync(file, manifest(V2));
  const t0 = performance.now();
  if (c.cli(['apply', '-f', file]).code !== 0) throw new Error('apply v2 failed');
  await waitDone('v1 → v2');
  const ms = performance.now() - t0;
  c.cli(['delete', 'deployment', 'bench-roll']);
  await sleep(3000); // let the agents remove the containers before the next run
  return ms;
}

// ---- Swarm ----

async function swarmRun(name: string, parallelism: number): Promise<number> {
  docker([
    'service',
    'create',
    '--detach',
    '--name',
    name,
    '--replicas',
    String(REPLICAS),
    '--no-resolve-image',
    '--stop-grace-period',
    '2s',
    '--update-parallelism',
    String(parallelism),
    '--update-order',
    'start-first',
    '--update-delay',
    '0s',
    '--update-monitor',
    '100ms',
    '--update-failure-action',
    'pause',
    V1,
    'sh',
    '-c',
    COMMAND,
  ]);
  const deadline = Date.now() + 300_000;
  for (;;) {
    const running = docker(['service', 'ps', name, '--filter', 'desired-state=running', '--format', '{{.CurrentState}}'])
      .split('\n')
      .filter((l) => l.startsWith('Running')).length;
    if (running === REPLICAS) break;
    if (Date.now() > deadline) throw new Error('swarm: service did not converge');
    await sleep(200);
  }
  const t0 = performance.now();
  // --detach=false returns when the update has converged (or failed).
  docker(['service', 'update', '--detach=false', '--quiet', '--no-resolve-image', '--image', V2, name], 600_000);
  const ms = performance.now() - t0;
  const state = docker(['service', 'inspect', name, '--format', '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}']);
  docker(['service', 'rm', name]);
  if (state !== 'completed') throw new Error(`swarm: update ended in state "${state}"`);
  await sleep(3000);
  return ms;
}

function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)] ?? NaN, min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN };
}

async function main(): Promise<void> {
  ensureTestImage();
  docker(['image', 'inspect', V2]);
  const rows: Array<{ system: string; settings: string; times: number[]; note?: string }> = [];

  const c = new Cluster();
  try {
    await c.startHub();
    await c.startAgent('a');
    await c.startAgent('b');
    await c.waitNodeReady('a');
    await c.waitNodeReady('b');
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      times.push(await orchardRun(c));
      console.error(`orchard run ${i + 1}/${runs}: ${(times[i]! / 1000).toFixed(1)} s`);
    }
    rows.push({ system: 'Orchard', settings: 'maxSurge 1, maxUnavailable 1 (2 nodes)', times });
  } finally {
    await c.cleanup();
  }

  if (withSwarm) {
    const state = docker(['info', '--format', '{{.Swarm.LocalNodeState}}']);
    if (state !== 'inactive') {
      rows.push({ system: 'Docker Swarm', settings: '-', times: [], note: `skipped: this engine is already in a swarm (${state}); not touching it` });
    } else {
      docker(['swarm', 'init', '--advertise-addr', '127.0.0.1']);
      const leave = (): void => {
        try {
          docker(['swarm', 'leave', '--force']);
        } catch (err) {
          console.error(`docker swarm leave --force failed: ${String(err)}`);
        }
      };
      const onSignal = (): void => {
        leave();
        process.exit(130);
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        for (const p of [1, 2]) {
          const times: number[] = [];
          for (let i = 0; i < runs; i++) {
            times.push(await swarmRun(`orchard-bench-${process.pid}-${p}-${i}`, p));
            console.error(`swarm (parallelism ${p}) run ${i + 1}/${runs}: ${(times[i]! / 1000).toFixed(1)} s`);
          }
          rows.push({ system: 'Docker Swarm', settings: `update-parallelism ${p}, start-first, delay 0s, monitor 100ms (1 node)`, times });
        }
      } finally {
        leave();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }
  }

  const fmt = (ms: number): string => (Number.isFinite(ms) ? (ms / 1000).toFixed(1) : '-');
  const table = [
    '| system | settings | median (s) | min (s) | max (s) | runs |',
    '|---|---|---:|---:|---:|---:|',
    ...rows.map((r) => {
      const s = stats(r.times);
      return `| ${r.system} | ${r.note ?? r.settings} | ${fmt(s.median)} | ${fmt(s.min)} | ${fmt(s.max)} | ${r.times.length} |`;
    }),
  ].join('\n');
  console.log(`\nRolling ${REPLICAS} replicas from ${V1} to ${V2}\n\n${table}\n`);
  const doc = `# Rollout benchmark

Time to roll ${REPLICAS} replicas from \`${V1}\` to \`${V2}\` on one Docker Engine ${docker(['version', '--format', '{{.Server.Version}}'])}
(${os.cpus().length} cores, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, ${os.platform()} ${os.arch()}), measured ${new Date().toISOString().slice(0, 10)} with
\`npx tsx scripts/bench/rollout.ts --runs ${runs}\`. Both images are local (no pull), so this compares orchestration.

- **Orchard**: a real hub and two agent processes on the same engine; \`orchard apply\` of the v2
  manifest until the rollout is Complete with all ${REPLICAS} updated pods Ready (hub view).
  RollingUpdate with maxSurge 1, maxUnavailable 1, minReadySeconds 0, no readiness probe.
- **Docker Swarm**: single-node swarm on the same engine; \`docker service update --detach=false
  --image\` until the update converges. Swarm's closest settings: start-first updates with
  parallelism 1 (one surge task at a time) and 2 (two tasks in flight, as Orchard's surge 1 +
  unavailable 1 allows).

${table}

Notes: containers stop within 2 s (a TERM trap; grace period 2 s on both). Swarm's default
update monitor (5 s per batch) is lowered to 100 ms to make the comparison about scheduling,
not waiting. The agents report readiness over MQTT and the hub reacts to each report, so
Orchard's time includes one agent → hub → agent round trip per step.
`;
  writeFileSync(join(REPO, 'docs', 'benchmarks-rollout.md'), doc);
  console.log('wrote docs/benchmarks-rollout.md');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
