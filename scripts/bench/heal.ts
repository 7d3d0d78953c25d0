/**
 * Heal benchmark: how fast a killed workload runs again.
 * Run: npm run build && npx tsx scripts/bench/heal.ts [--kills 20] [--swarm-kills 20] [--lost-runs 5] [--no-swarm]
 *
 * 1. Orchard, container killed: real hub + agent processes (dist/), a deployment with one pod per
 *    kill, each container `docker kill`ed once (a first restart has no back-off; later ones back
 *    off 1 s, 2 s … by design, which is not what this measures). Time = engine `die` event →
 *    engine `start` event of the same container (the agent restarts it in place).
 * 2. Docker Swarm, the same thing: `docker swarm init --advertise-addr 127.0.0.1`, a 1-replica
 *    service, its task container killed N times. Time = `die` → `start` of the replacement task's
 *    container. Swarm is left (`docker swarm leave --force`) in a finally and on SIGINT/SIGTERM.
 *    Skipped when this engine is already part of a swarm (never touch someone else's swarm).
 * 3. Orchard, node lost: two agents, a 1-replica deployment with onNodeLost reschedule
 *    afterSeconds 0; the agent running it is kill -9'd (the OS closes its socket, so the broker
 *    fires its last will at once). Time = kill → replacement pod Running on the other node in the
 *    API. The killed agent is then restarted and we also time until it removed the old copy (fencing).
 *
 * Prints a markdown table; docs/benchmarks-heal.md records a run.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cluster, TEST_IMAGE, ensureTestImage } from '../../test/helpers/cluster.js';
import { waitFor } from '../../test/helpers/http.js';
import { containersOf, docker } from '../../test/helpers/procs.js';

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '20' },
    'swarm-kills': { type: 'string', default: '20' },
    'lost-runs': { type: 'string', default: '5' },
    'no-swarm': { type: 'boolean', default: false },
  },
});
const KILLS = Math.max(1, Number(values.kills));
const SWARM_KILLS = Math.max(1, Number(values['swarm-kills']));
const LOST_RUNS = Math.max(1, Number(values['lost-runs']));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface EngineEvent {
  action: string;
  id: string;
  ms: number;
}

/** `docker events` as a stream of die/start events matching `filters`, with waiters. */
class EngineEvents {
  readonly seen: EngineEvent[] = [];
  private readonly child: ChildProcess;
  private buf = '';

  constructor(filters: string[]) {
    const args = ['events', '--format', '{{.Action}} {{.ID}} {{.TimeNano}}', '--filter', 'event=die', '--filter', 'event=start'];
    for (const f of filters) args.push('--filter', f);
    this.child = spawn('docker', args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child.stdout?.on('data', (d: Buffer) => {
      this.buf += d.toString();
      const lines = this.buf.split('\n');
      this.buf = lines.pop() ?? '';
      for (const l of lines) {
        const [action, id, ns] = l.trim().split(' ');
        if (action && id && ns) this.seen.push({ action, id, ms: Number(ns) / 1e6 });
      }
    });
  }

  async next(what: string, pred: (e: EngineEvent) => boolean, timeoutMs: number): Promise<EngineEvent> {
    return waitFor(what, () => this.seen.find(pred), timeoutMs, 10);
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

interface Row {
  what: string;
  samples: number[];
  target?: string;
  note?: string;
}

function table(rows: Row[]): string {
  const f = (ms: number): string => (Number.isNaN(ms) ? '—' : `${(ms / 1000).toFixed(2)} s`);
  const out = ['| measurement | n | p50 | p95 | min | max | target |', '|---|---:|---:|---:|---:|---:|---|'];
  for (const r of rows) {
    const n = r.samples.length;
    out.push(
      `| ${r.what} | ${n} | ${f(pct(r.samples, 50))} | ${f(pct(r.samples, 95))} | ${f(n ? Math.min(...r.samples) : NaN)} | ${f(n ? Math.max(...r.samples) : NaN)} | ${r.target ?? ''}${r.note ? ` ${r.note}` : ''} |`,
    );
  }
  return out.join('\n');
}

function deployment(name: string, replicas: number, spec: Record<string, unknown> = {}, podSpec: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'orchard/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas,
      ...spec,
      template: {
        spec: {
          terminationGracePeriodSeconds: 1,
          ...podSpec,
          containers: [{ name: 'main', image: TEST_IMAGE, command: ['sh', '-c', 'exec sleep 3600'], resources: { requests: { cpu: '5m', memory: '4Mi' } } }],
        },
      },
    },
  });
}

function apply(c: Cluster, name: string, json: string): void {
  const file = join(c.dir, `${name}.json`);
  writeFileSync(file, json);
  const r = c.cli(['apply', '-f', file]);
  if (r.code !== 0) throw new Error(`apply ${name} failed: ${r.stderr}`);
}

async function orchardKills(c: Cluster): Promise<number[]> {
  const node = c.nodeName('heal');
  await c.startAgent('heal', { labels: 'bench=heal' });
  await c.waitNodeReady('heal');
  apply(c, 'bench-heal', deployment('bench-heal', KILLS, {}, { nodeSelector: { bench: 'heal' } }));
  await waitFor(`${KILLS} containers running`, () => containersOf(node).filter((x) => x.State.Running).length === KILLS, 180_000, 250);
  await sleep(2000); // let the agent's first observed sets settle
  const events = new EngineEvents([`label=orchard.node=${node}`]);
  await sleep(500); // subscribed
  const out: number[] = [];
  try {
    for (const ct of containersOf(node)) {
      docker(['kill', ct.Id]);
      const die = await events.next(`die of ${ct.Id.slice(0, 12)}`, (e) => e.action === 'die' && e.id === ct.Id, 10_000);
      const start = await events.next(`restart of ${ct.Id.slice(0, 12)}`, (e) => e.action === 'start' && e.id === ct.Id && e.ms > die.ms, 30_000);
      out.push(start.ms - die.ms);
      process.stderr.write(`  orchard kill ${out.length}/${KILLS}: ${(start.ms - die.ms).toFixed(0)} ms\n`);
      await sleep(300);
    }
  } finally {
    events.stop();
  }
  c.cli(['delete', 'deployment', 'bench-heal']);
  return out;
}

/** Runs the Swarm part; always leaves the swarm it created. */
async function swarmKills(runId: string): Promise<number[] | string> {
  const state = execFileSync('docker', ['info', '--format', '{{.Swarm.LocalNodeState}}'], { encoding: 'utf8' }).trim();
  if (state !== 'inactive') return `skipped: this engine's swarm state is "${state}" (not ours to touch)`;
  // `swarm init` creates docker_gwbridge and `leave` keeps it: remove it only if we created it.
  const networkExists = (): boolean => docker(['network', 'ls', '--format', '{{.Name}}']).split('\n').includes('docker_gwbridge');
  const gwbridgeBefore = networkExists();
  const leave = (): void => {
    try {
      execFileSync('docker', ['swarm', 'leave', '--force'], { stdio: 'ignore', timeout: 60_000 });
    } catch {
      // already left
    }
    try {
      if (!gwbridgeBefore && networkExists()) execFileSync('docker', ['network', 'rm', 'docker_gwbridge'], { stdio: 'ignore', timeout: 30_000 });
    } catch {
      // still in use by something else: leave it
    }
  };
  const onSignal = (): void => {
    leave();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const service = `orchard-bench-${runId}`;
  const events = new EngineEvents([`label=com.docker.swarm.service.name=${service}`]);
  const out: number[] = [];
  try {
    execFileSync('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1'], { stdio: 'ignore', timeout: 60_000 });
    execFileSync(
      'docker',
      ['service', 'create', '--detach', '--name', service, '--replicas', '1', '--no-resolve-image', '--stop-grace-period', '1s', TEST_IMAGE, 'sleep', '3600'],
      { stdio: 'ignore', timeout: 60_000 },
    );
    const running = (): string[] =>
      docker(['ps', '-q', '--no-trunc', '--filter', `label=com.docker.swarm.service.name=${service}`, '--filter', 'status=running'])
        .split('\n')
        .filter(Boolean);
    await waitFor('swarm task running', () => running().length === 1, 120_000, 250);
    for (let i = 0; i < SWARM_KILLS; i++) {
      const [id] = running();
      if (!id) throw new Error('no running swarm task');
      docker(['kill', id]);
      const die = await events.next('swarm task die', (e) => e.action === 'die' && e.id === id, 10_000);
      const start = await events.next('swarm replacement start', (e) => e.action === 'start' && e.id !== id && e.ms > die.ms, 60_000);
      out.push(start.ms - die.ms);
      process.stderr.write(`  swarm kill ${i + 1}/${SWARM_KILLS}: ${(start.ms - die.ms).toFixed(0)} ms\n`);
      await waitFor('swarm task running', () => running().length === 1, 30_000, 100);
      await sleep(300);
    }
  } catch (err) {
    return `failed: ${err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err)}`;
  } finally {
    events.stop();
    try {
      execFileSync('docker', ['service', 'rm', service], { stdio: 'ignore', timeout: 60_000 });
    } catch {
      // gone with the swarm anyway
    }
    leave();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return out;
}

async function nodeLost(c: Cluster): Promise<{ replace: number[]; fence: number[] }> {
  const shorts = ['lost1', 'lost2'] as const;
  for (const s of shorts) await c.startAgent(s, { labels: 'bench=lost' });
  for (const s of shorts) await c.waitNodeReady(s);
  apply(c, 'bench-lost', deployment('bench-lost', 1, { onNodeLost: { action: 'reschedule', afterSeconds: 0 } }, { nodeSelector: { bench: 'lost' } }));
  const runningPod = async (): Promise<{ name: string; node: string } | undefined> => {
    const pods = await c.pods('bench-lost');
    const p = pods.find((x) => x.status.phase === 'Running');
    return pods.length === 1 && p?.spec.nodeName ? { name: p.metadata.name, node: p.spec.nodeName } : undefined;
  };
  await waitFor('bench-lost Running', runningPod, 60_000, 100);
  const replace: number[] = [];
  const fence: number[] = [];
  for (let i = 0; i < LOST_RUNS; i++) {
    const before = await waitFor('bench-lost Running', runningPod, 60_000, 100);
    const victim = shorts.find((s) => c.nodeName(s) === before.node);
    if (!victim) throw new Error(`pod on unexpected node ${before.node}`);
    const t0 = Date.now();
    await c.agents.get(victim)?.kill9();
    const after = await waitFor(
      'replacement Running on the other node',
      async () => {
        const p = await runningPod();
        return p && p.name !== before.name && p.node !== before.node ? p : undefined;
      },
      60_000,
      25,
    );
    replace.push(Date.now() - t0);
    process.stderr.write(`  node lost ${i + 1}/${LOST_RUNS}: replacement ${after.name} Running on ${after.node} after ${Date.now() - t0} ms\n`);
    // The lost node comes back (same identity): its old copy must go.
    const t1 = Date.now();
    await c.startAgent(victim, { token: 'unused-already-joined', labels: 'bench=lost' });
    await waitFor('old copy removed from the returning node', () => containersOf(before.node).length === 0, 120_000, 50);
    fence.push(Date.now() - t1);
    await c.waitNodeReady(victim);
  }
  c.cli(['delete', 'deployment', 'bench-lost']);
  return { replace, fence };
}

function machine(): string {
  const cpus = os.cpus();
  let engine = 'unknown';
  try {
    engine = execFileSync('docker', ['version', '--format', '{{.Server.Version}} (API {{.Server.APIVersion}})'], { encoding: 'utf8' }).trim();
  } catch {
    // reported as unknown
  }
  return `${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, ${os.type()} ${os.release()} ${os.arch()}, Node ${process.version}, Docker Engine ${engine}`;
}

async function main(): Promise<void> {
  ensureTestImage();
  const c = new Cluster();
  const rows: Row[] = [];
  let swarm: number[] | string = 'skipped (--no-swarm)';
  try {
    // The node-lost scenario measures afterSeconds 0, not the node startup grace (60 s) of a fresh hub.
    await c.startHub({ extra: ['--node-startup-grace', '0'] });
    process.stderr.write('orchard: container kills\n');
    const kills = await orchardKills(c);
    rows.push({ what: 'Orchard: `docker kill` → container running again (agent restarts it in place)', samples: kills, target: 'p50 ≤ 1.0 s' });
    process.stderr.write('orchard: node lost\n');
    const lost = await nodeLost(c);
    rows.push({
      what: 'Orchard: agent `kill -9` → replacement pod Running on another node (onNodeLost reschedule, afterSeconds 0)',
      samples: lost.replace,
      target: '≤ 5 s',
    });
    rows.push({ what: 'Orchard: lost agent restarted → its old copy removed (fencing)', samples: lost.fence, target: '' });
  } finally {
    await c.cleanup();
  }
  if (!values['no-swarm']) {
    process.stderr.write('docker swarm: task kills\n');
    swarm = await swarmKills(c.runId);
  }
  if (Array.isArray(swarm))
    rows.splice(1, 0, { what: 'Docker Swarm: `docker kill` → replacement task container started (defaults)', samples: swarm, target: '(reference ≈ 8 s)' });
  else rows.splice(1, 0, { what: 'Docker Swarm: `docker kill` → replacement task running', samples: [], note: swarm });
  process.stdout.write(`\nMachine: ${machine()}\n\n${table(rows)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`heal bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
