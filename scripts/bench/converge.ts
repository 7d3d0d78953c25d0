/**
 * Convergence benchmark (issue 2): on this machine's Docker Engine, in one run,
 *   1. Orchard: apply a 20-replica deployment to one node → all pods Running (hub + agent processes from dist/);
 *   2. the raw engine: the same 20 create+start calls in parallel through the Engine API;
 *   3. Docker Swarm: a 20-replica service of the same image converging;
 * plus single-pod apply→Running latency (p50/p99 over --samples runs). Prints a table.
 *
 *   npx tsx scripts/bench/converge.ts [--replicas 20] [--samples 30]
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Docker from 'dockerode';
import { Cluster, TEST_IMAGE } from '../../test/helpers/cluster.js';
import { waitFor } from '../../test/helpers/http.js';

const { values } = parseArgs({ options: { replicas: { type: 'string', default: '20' }, samples: { type: 'string', default: '30' } } });
const REPLICAS = Number(values.replicas);
const SAMPLES = Number(values.samples);
const docker = new Docker();
const COMMAND = ['sleep', '3600'];

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 120_000 }).trim();
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

const manifest = (name: string, replicas: number): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: ${replicas}
  template:
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{ name: c, image: ${TEST_IMAGE}, command: ${JSON.stringify(COMMAND)} }]
`;

async function orchard(c: Cluster): Promise<{ converge: number; single: number[] }> {
  const t0 = performance.now();
  const r = await c.api('POST', '/api/v1/apply', manifest('bench', REPLICAS));
  if (r.status !== 200) throw new Error(`apply failed: ${r.text}`);
  await waitFor(
    'all Running',
    async () => {
      const pods = await c.pods('bench');
      return pods.length === REPLICAS && pods.every((p) => p.status.phase === 'Running');
    },
    180_000,
    25,
  );
  const converge = (performance.now() - t0) / 1000;
  await c.api('DELETE', '/api/v1/deployments/bench');
  await waitFor('bench containers gone', () => sh('docker', ['ps', '-aq', '--filter', 'label=orchard.deployment=bench']) === '', 120_000, 200);

  const single: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const name = `single-${i}`;
    const s0 = performance.now();
    await c.api('POST', '/api/v1/apply', manifest(name, 1));
    await waitFor('single Running', async () => (await c.pods(name)).some((p) => p.status.phase === 'Running'), 30_000, 10);
    single.push((performance.now() - s0) / 1000);
    await c.api('DELETE', `/api/v1/deployments/${name}`);
  }
  await waitFor(
    'single containers gone',
    () => sh('docker', ['ps', '-aq', '--filter', 'label=orchard.deployment']).split('\n').filter(Boolean).length === 0,
    120_000,
    200,
  );
  return { converge, single };
}

async function rawEngine(): Promise<number> {
  const t0 = performance.now();
  const ids = await Promise.all(
    Array.from({ length: REPLICAS }, async (_, i) => {
      const ct = await docker.createContainer({
        name: `bench-raw-${process.pid}-${i}`,
        Image: TEST_IMAGE,
        Cmd: COMMAND,
        Labels: { 'orchard.bench': 'raw' },
        HostConfig: { RestartPolicy: { Name: 'no' } },
      });
      await ct.start();
      return ct.id;
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(ids.map((id) => docker.getContainer(id).remove({ force: true })));
  return seconds;
}

async function swarm(): Promise<number | string> {
  const state = sh('docker', ['info', '--format', '{{.Swarm.LocalNodeState}}']);
  if (state !== 'inactive') return `skipped (swarm already ${state})`;
  sh('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1']);
  try {
    const t0 = performance.now();
    sh('docker', [
      'service',
      'create',
      '--detach',
      '--no-resolve-image',
      '--name',
      'orchard-bench',
      '--replicas',
      String(REPLICAS),
      '--stop-grace-period',
      '1s',
      TEST_IMAGE,
      ...COMMAND,
    ]);
    await waitFor(
      'swarm converged',
      () => {
        const states = sh('docker', ['service', 'ps', 'orchard-bench', '--filter', 'desired-state=running', '--format', '{{.CurrentState}}'])
          .split('\n')
          .filter(Boolean);
        return states.length === REPLICAS && states.every((s) => s.startsWith('Running'));
      },
      300_000,
      50,
    );
    return (performance.now() - t0) / 1000;
  } finally {
    try {
      sh('docker', ['service', 'rm', 'orchard-bench']);
    } catch {
      // leaving the swarm removes it anyway
    }
    sh('docker', ['swarm', 'leave', '--force']);
  }
}

async function main(): Promise<void> {
  const c = new Cluster();
  let orch: { converge: number; single: number[] };
  try {
    await c.startHub();
    await c.startAgent('bench');
    await c.waitNodeReady('bench');
    orch = await orchard(c);
  } finally {
    await c.cleanup();
  }
  const raw = await rawEngine();
  const sw = await swarm();
  const f = (x: number): string => `${x.toFixed(2)} s`;
  const rows: Array<[string, string, string]> = [
    [`Orchard: ${REPLICAS}-replica deployment, apply → all Running`, f(orch.converge), `${(orch.converge / raw).toFixed(2)} × raw engine`],
    [`Raw engine: ${REPLICAS} create+start in parallel`, f(raw), '1.00 × raw engine'],
    [
      `Docker Swarm: ${REPLICAS}-replica service converged`,
      typeof sw === 'number' ? f(sw) : sw,
      typeof sw === 'number' ? `${(sw / raw).toFixed(2)} × raw engine; Orchard ${(sw / orch.converge).toFixed(2)} × faster` : '',
    ],
    [`Orchard: single pod apply → Running, p50 (n=${SAMPLES})`, f(pct(orch.single, 50)), ''],
    [`Orchard: single pod apply → Running, p99 (n=${SAMPLES})`, f(pct(orch.single, 99)), 'target ≤ 1.0 s'],
  ];
  const table = ['| measurement | time | ratio |', '|---|---|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
  process.stdout.write(`\n${table}\n`);
  const out = process.env['BENCH_OUT'];
  if (out) writeFileSync(join(out), table + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
