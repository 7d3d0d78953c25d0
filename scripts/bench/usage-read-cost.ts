/**
 * What one usage sample of N containers costs (issue 16: "cgroup files or the engine's one-shot
 * stats, whichever costs less on a Pi; measure both"). On the real Docker Engine it starts
 * `--containers` busybox containers (`sleep 3600`), then over `--rounds` rounds takes one sample of
 * all of them each way, interleaved so both see the same machine:
 *   cgroup files    the agent's own CgroupUsageReader (one long-lived reader, as DockerRuntime
 *                   holds it, so the layout is found once)
 *   one-shot stats  GET /containers/{id}/stats?stream=false&one-shot=true through the agent's
 *                   EngineApi, all ids in parallel with a 5 s bound each — the call DockerRuntime
 *                   falls back to (containerUsage) for ids whose cgroup it cannot see
 * Per method: wall time per sample, this process's CPU per sample (process.cpuUsage) and dockerd's
 * (utime + stime from /proc/<dockerd's pid>/stat, 10 ms ticks, so summed over all samples; its
 * background rate, read during the pauses between samples, is subtracted). One warm-up sample of
 * each is left out. A fixed-work calibration (SHA-256 of 64 MiB), the load average and the core
 * count are printed: the machine is shared.
 *
 * The containers are named `orchard-usage-cost-<pid>-<i>` and labelled `orchard.bench=usage-cost-<pid>`;
 * they are removed at the end, on error and on SIGINT/SIGTERM. The run stops taking rounds after
 * --max-seconds (setup included).
 *
 * Run: npx tsx scripts/bench/usage-read-cost.ts [--containers 10] [--rounds 20] [--pause-ms 250]
 *        [--max-seconds 120] [--image orchard-test/busybox:1]
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { CgroupUsageReader } from '../../agent/runtime/cgroup-usage.js';
import { EngineApi, engineEndpoint, pathName } from '../../agent/runtime/engine-api.js';
import { withDeadline, type ContainerUsage } from '../../agent/runtime/runtime.js';
import { wholeNumber } from './lib/flags.js';
import { markdownTable, percentile } from './lib/stats.js';

const { values } = parseArgs({
  options: {
    containers: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '20' },
    'pause-ms': { type: 'string', default: '250' },
    'max-seconds': { type: 'string', default: '120' },
    image: { type: 'string', default: 'orchard-test/busybox:1' },
  },
  strict: true,
});
const N = wholeNumber('containers', values.containers);
const ROUNDS = wholeNumber('rounds', values.rounds);
const PAUSE_MS = wholeNumber('pause-ms', values['pause-ms']);
const DEADLINE = Date.now() + wholeNumber('max-seconds', values['max-seconds']) * 1000;
const RUN = `usage-cost-${process.pid}`;
const NAME_PREFIX = `orchard-${RUN}-`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ');

/** Synchronous, so it also runs from a signal handler; idempotent. */
function removeContainers(): void {
  try {
    const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=orchard.bench=${RUN}`], { encoding: 'utf8', timeout: 30_000 })
      .trim()
      .split('\n')
      .filter(Boolean);
    if (ids.length > 0) execFileSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore', timeout: 60_000 });
  } catch {
    // the engine is gone or nothing to remove
  }
}
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    log(`${sig}: removing the containers`);
    removeContainers();
    process.exit(130);
  });

/** USER_HZ: 100 on every mainstream Linux build. */
const CLK_TCK = 100;
/** dockerd's pid, from /proc (no `pidof`: not every machine has it). */
function dockerdPid(): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'dockerd') return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}
/** A process's utime + stime in ms (10 ms resolution), or NaN when /proc cannot be read. */
function cpuMsOf(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: utime is field 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[11]) + Number(rest[12])) / CLK_TCK) * 1000;
  } catch {
    return NaN;
  }
}
const selfCpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Machine speed at the time of the run: ms to hash 64 MiB (median of 3). */
function calibrate(): number {
  const buf = Buffer.alloc(64 * 1024 * 1024, 0x61);
  const ms: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    createHash('sha256').update(buf).digest();
    ms.push(performance.now() - t0);
  }
  return percentile(ms, 0.5);
}

type Sampler = (ids: readonly string[]) => Promise<Map<string, ContainerUsage>>;

interface Samples {
  wallMs: number[];
  selfCpuMs: number[];
  dockerdMs: number;
  /** Ids a sample left out, over all samples. */
  missing: number;
}

const engine = new EngineApi(engineEndpoint(undefined));
const cgroups = new CgroupUsageReader();
const METHODS: Array<{ name: string; sample: Sampler }> = [
  { name: 'cgroup files (CgroupUsageReader)', sample: (ids) => cgroups.read(ids) },
  {
    name: 'engine one-shot stats (`stats?stream=false&one-shot=true`, all in parallel)',
    // The same call and bound as DockerRuntime.containerUsage's fallback.
    sample: async (ids) => {
      const out = new Map<string, ContainerUsage>();
      await Promise.all(
        ids.map(async (id) => {
          try {
            const st = await withDeadline(undefined, 5_000, (signal) =>
              engine.json<{ cpu_stats: { cpu_usage: { total_usage: number } }; memory_stats: { usage?: number } }>('GET', `/containers/${pathName(id)}/stats`, {
                query: { stream: false, 'one-shot': true },
                signal,
              }),
            );
            out.set(id, { cpuSeconds: st.cpu_stats.cpu_usage.total_usage / 1e9, memoryBytes: st.memory_stats.usage ?? 0 });
          } catch {
            // gone or timed out: left out, counted as missing
          }
        }),
      );
      return out;
    },
  },
];

async function main(): Promise<void> {
  const cores = availableParallelism();
  const engineInfo = execFileSync('docker', ['info', '--format', '{{.ServerVersion}}, cgroup v{{.CgroupVersion}}, {{.CgroupDriver}} driver'], {
    encoding: 'utf8',
    timeout: 30_000,
  }).trim();
  const dpid = dockerdPid();
  if (dpid === undefined) log('dockerd not found in /proc: its CPU is not measured');
  log(`calibration: SHA-256 of 64 MiB (load ${load()})`);
  const calibrationMs = calibrate();

  log(`starting ${N} containers from ${values.image}`);
  const ids: string[] = [];
  for (let i = 0; i < N; i++) {
    if (Date.now() > DEADLINE) throw new Error(`--max-seconds passed while starting containers (${ids.length} of ${N} up)`);
    const id = execFileSync(
      'docker',
      ['run', '-d', '--name', `${NAME_PREFIX}${i}`, '--label', `orchard.bench=${RUN}`, '--pull', 'never', values.image, 'sleep', '3600'],
      { encoding: 'utf8', timeout: 60_000 },
    ).trim();
    ids.push(id);
  }
  const loadBefore = load();

  // Warm-up: the reader finds its cgroup layout, the client its socket path, the JIT its code.
  for (const m of METHODS) {
    const got = await m.sample(ids);
    if (got.size !== ids.length) log(`warm-up: ${m.name} read ${got.size} of ${ids.length}`);
  }

  const results = METHODS.map((): Samples => ({ wallMs: [], selfCpuMs: [], dockerdMs: 0, missing: 0 }));
  let idleDockerdMs = 0;
  let idleWallMs = 0;
  let rounds = 0;
  while (rounds < ROUNDS && Date.now() < DEADLINE) {
    // Alternate which method goes first, so neither always follows the other's leftovers.
    const order = rounds % 2 === 0 ? [0, 1] : [1, 0];
    for (const k of order) {
      const m = METHODS[k];
      const r = results[k];
      if (m === undefined || r === undefined) continue;
      const p0 = performance.now();
      const d0 = cpuMsOf(dpid);
      await sleep(PAUSE_MS);
      const d1 = cpuMsOf(dpid);
      idleWallMs += performance.now() - p0;
      idleDockerdMs += d1 - d0;
      const c0 = selfCpuMs();
      const t0 = performance.now();
      const got = await m.sample(ids);
      const wall = performance.now() - t0;
      const c1 = selfCpuMs();
      const d2 = cpuMsOf(dpid);
      r.wallMs.push(wall);
      r.selfCpuMs.push(c1 - c0);
      r.dockerdMs += d2 - d1;
      r.missing += ids.length - got.size;
    }
    rounds++;
  }
  if (rounds < ROUNDS) log(`--max-seconds reached after ${rounds} of ${ROUNDS} rounds`);

  const idleRate = idleWallMs > 0 ? idleDockerdMs / idleWallMs : 0;
  const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a');
  const rows = METHODS.map((m, k) => {
    const r = results[k] ?? { wallMs: [], selfCpuMs: [], dockerdMs: NaN, missing: 0 };
    const n = r.wallMs.length;
    const wallSum = r.wallMs.reduce((a, b) => a + b, 0);
    const selfSum = r.selfCpuMs.reduce((a, b) => a + b, 0);
    const dockerdPer = n > 0 ? (r.dockerdMs - idleRate * wallSum) / n : NaN;
    return [
      m.name,
      String(n),
      `${f(percentile(r.wallMs, 0.5))} ms`,
      `${f(percentile(r.wallMs, 0.9))} ms`,
      `${f(Math.min(...r.wallMs))}–${f(Math.max(...r.wallMs))} ms`,
      `${f(percentile(r.selfCpuMs, 0.5))} ms (mean ${f(n > 0 ? selfSum / n : NaN)})`,
      `${f(dockerdPer)} ms (raw ${f(n > 0 ? r.dockerdMs / n : NaN)})`,
      String(r.missing),
    ];
  });
  process.stdout.write(
    [
      `Command: \`${['npx tsx scripts/bench/usage-read-cost.ts', ...process.argv.slice(2)].join(' ')}\``,
      `Engine ${engineInfo}; ${N} running containers (${values.image}, sleep); ${rounds} rounds, ${PAUSE_MS} ms pause before each sample`,
      `Cores: ${cores}. Load average (1/5/15 min): before the rounds ${loadBefore}; after ${load()}`,
      `Calibration: SHA-256 of 64 MiB in ${f(calibrationMs, 0)} ms`,
      `dockerd (pid ${dpid ?? 'n/a'}) background: ${f(idleRate * 1000)} ms CPU per s, read during the pauses and subtracted below`,
      '',
      markdownTable(
        [
          'method',
          'samples',
          'wall per sample (median)',
          'wall p90',
          'wall min–max',
          'this process CPU per sample (median)',
          'dockerd CPU per sample (less background)',
          'ids left out',
        ],
        rows,
      ),
      '',
    ].join('\n'),
  );
}

try {
  await main();
} catch (err) {
  log(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  log('removing the containers');
  removeContainers();
  const left = execFileSync('docker', ['ps', '-aq', '--filter', `label=orchard.bench=${RUN}`], { encoding: 'utf8', timeout: 30_000 }).trim();
  if (left !== '') log(`containers left behind: ${left.split('\n').join(' ')}`);
}
