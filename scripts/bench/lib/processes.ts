import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RpcClient } from './ipc.js';
import type { HubChildConfig, HubReady } from './hub-child.js';
import type { FleetStats, HollowFleetOptions } from './hollow-fleet.js';
import type { HubSnapshot } from './fleet-tracker.js';
import { readProcStats, type ProcStats } from './proc-stats.js';

/**
 * Spawning and controlling the bench's child processes. The workers are TypeScript run through
 * tsx's loader in the same process; the hub child is compiled first (tsc, 1–4 s) and runs on
 * plain node, as a user's hub does (`node dist/cli/main.js hub`): tsx's loader alone added
 * ≈ 50 MiB to an idle hub's RSS (76 → 128 MiB measured), which is not the hub's memory.
 * FLEET_HUB_TSX=1 runs the hub child through tsx as before. Either way a pid is the hub itself,
 * so `kill -9` kills exactly it. Every child is tracked in `live` and killed by killAll() on any
 * exit path.
 */

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = join(HERE, '..', '..', '..');

const live = new Set<ChildProcess>();

export function killAll(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  live.clear();
}

let hubChildJs: string | undefined;

/** Compiles the hub child (and what it imports) to dist-bench/ once per bench process; returns its entry. */
function compiledHubChild(): string {
  if (hubChildJs === undefined) {
    execFileSync(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(REPO, 'scripts', 'bench', 'tsconfig.hub-child.json')], {
      cwd: REPO,
      stdio: 'inherit',
    });
    hubChildJs = join(REPO, 'dist-bench', 'scripts', 'bench', 'lib', 'hub-child.js');
  }
  return hubChildJs;
}

/**
 * FLEET_HUB_CGROUP=<cgroup dir>: the hub's machine made slower than the devices. The hub process
 * (each one, the restarted too) and the etcd members go into that cgroup (e.g. a cgroup v1
 * `cpu` group with a CFS quota of half a core); the hollow agents and the bench stay outside,
 * as devices have CPUs of their own. Moved just after spawn: its first milliseconds run outside.
 */
export function intoHubCgroup(pid: number | undefined): void {
  const dir = process.env['FLEET_HUB_CGROUP'];
  if (dir === undefined || dir === '' || pid === undefined) return;
  appendFileSync(join(dir, 'cgroup.procs'), `${pid}\n`);
}

function spawnTs(file: string, env: Record<string, string>, nodeArgs: string[] = []): ChildProcess {
  return spawnNode([...nodeArgs, '--import', 'tsx', join(HERE, file)], env);
}

function spawnNode(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  live.add(child);
  child.on('exit', () => live.delete(child));
  // A spawn that fails says so instead of crashing the bench unexplained.
  child.on('error', (err) => {
    live.delete(child);
    process.stderr.write(`bench: could not start node ${args.slice(0, 3).join(' ')}…: ${err.message}\n`);
  });
  return child;
}

export class HubProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly rpc: RpcClient,
    readonly ready: HubReady,
  ) {}

  static async start(cfg: HubChildConfig, timeoutMs = 120_000, nodeArgs: string[] = [], env: Record<string, string> = {}): Promise<HubProcess> {
    return HubProcess.launch(cfg, nodeArgs, env, 'hub').ready(timeoutMs);
  }

  /**
   * Spawns a hub process and returns at once: on etcd a standby emits "campaigning" and only
   * emits "ready" once it leads (after a failover), so the bench waits for each when it wants.
   */
  static launch(
    cfg: HubChildConfig,
    nodeArgs: string[] = [],
    extraEnv: Record<string, string> = {},
    label = 'hub',
  ): { child: ChildProcess; campaigning(timeoutMs: number): Promise<void>; ready(timeoutMs: number): Promise<HubProcess> } {
    // FLEET_HUB_LD_PRELOAD: an allocator for the hub process alone (e.g. jemalloc), not the agents.
    const preload = process.env['FLEET_HUB_LD_PRELOAD'];
    const env = { ...extraEnv, FLEET_HUB_CONFIG: JSON.stringify(cfg), ...(preload ? { LD_PRELOAD: preload } : {}) };
    const child = process.env['FLEET_HUB_TSX'] === '1' ? spawnTs('hub-child.ts', env, nodeArgs) : spawnNode([...nodeArgs, compiledHubChild()], env);
    intoHubCgroup(child.pid);
    const rpc = new RpcClient(child, label);
    // Both waiters are registered now: an event that comes before the bench asks is not lost.
    const deadline = 24 * 3_600_000;
    const campaigning = rpc.event<unknown>('campaigning', deadline);
    const ready = rpc.event<HubReady>('ready', deadline);
    campaigning.catch(() => undefined);
    ready.catch(() => undefined);
    const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${label}: no "${what}" within ${ms} ms`)), ms);
        p.then(
          (v) => (clearTimeout(t), resolve(v)),
          (e: unknown) => (clearTimeout(t), reject(e instanceof Error ? e : new Error(String(e)))),
        );
      });
    return {
      child,
      campaigning: async (ms) => void (await within(campaigning, ms, 'campaigning')),
      ready: async (ms) => new HubProcess(child, rpc, await within(ready, ms, 'ready')),
    };
  }

  get pid(): number {
    return this.ready.pid;
  }

  snapshot(timeoutMs = 30_000): Promise<HubSnapshot> {
    return this.rpc.call<HubSnapshot>('snapshot', {}, timeoutMs);
  }

  /** Reads /proc for the hub process (works while its event loop is busy). */
  procStats(): ProcStats | undefined {
    return readProcStats(this.pid);
  }

  /** SIGKILL, like a crash or a power cut; resolves once the process is gone. */
  async kill9(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGKILL');
    await gone;
  }

  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    await this.rpc.call('stop', {}, timeoutMs).catch(() => this.child.kill('SIGKILL'));
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await gone;
    clearTimeout(t);
  }
}

export interface WorkerStats extends FleetStats {
  proc?: ProcStats;
}

/** A hollow fleet spread over `procs` worker processes (procs = 0: in this process). */
export interface FleetHandle {
  pids: number[];
  stats(since?: number): Promise<FleetStats & { peakRssBytes: number; cpuSeconds: number }>;
  stop(): Promise<void>;
  /** Asks every worker `method` (e.g. serviceProbe); one answer per worker, in order. */
  each<T>(method: string, params?: unknown, timeoutMs?: number): Promise<T[]>;
}

export async function startWorkerFleet(procs: number, opts: HollowFleetOptions): Promise<FleetHandle> {
  const rpcs: RpcClient[] = [];
  for (let i = 0; i < procs; i++) {
    // Thousands of TLS clients per process: give the heap room so GC is not what we measure.
    const child = spawnTs('fleet-worker.ts', {}, ['--max-old-space-size=8192']);
    rpcs.push(new RpcClient(child, `worker-${i}`));
  }
  await Promise.all(
    rpcs.map((rpc, i) =>
      rpc.call(
        'start',
        { ...opts, nodes: opts.nodes.filter((_, k) => k % procs === i), dataRoot: join(opts.dataRoot, `w${i}`) } satisfies HollowFleetOptions,
        60_000,
      ),
    ),
  );
  return {
    pids: rpcs.map((r) => r.child.pid ?? 0),
    async stats(since = 0) {
      const all = await Promise.all(rpcs.map((r) => r.call<WorkerStats>('stats', { since }, 30_000)));
      const sum = (k: Exclude<keyof FleetStats, 'warnings'>): number => all.reduce((a, s) => a + s[k], 0);
      const warnings: Record<string, number> = {};
      for (const s of all) for (const [k, v] of Object.entries(s.warnings ?? {})) warnings[k] = (warnings[k] ?? 0) + v;
      return {
        agents: sum('agents'),
        connected: sum('connected'),
        linkBuilds: sum('linkBuilds'),
        linkRefused: sum('linkRefused'),
        linkFailed: sum('linkFailed'),
        desiredSince: sum('desiredSince'),
        podsObserved: sum('podsObserved'),
        podsRunning: sum('podsRunning'),
        containers: sum('containers'),
        warnings,
        peakRssBytes: all.reduce((a, s) => a + (s.proc?.peakRssBytes ?? 0), 0),
        cpuSeconds: all.reduce((a, s) => a + (s.proc?.cpuSeconds ?? 0), 0),
      };
    },
    each<T>(method: string, params: unknown = {}, timeoutMs = 30_000) {
      return Promise.all(rpcs.map((r) => r.call<T>(method, params, timeoutMs)));
    },
    async stop() {
      // Hollow agents have nothing worth a graceful goodbye; the hub is measured, not them.
      for (const r of rpcs) r.child.kill('SIGKILL');
    },
  };
}

/** The pure scheduler micro-benchmark (scripts/bench/scheduler.ts) in a child; resolves with its stdout table. */
export function runSchedulerBench(pods: number, nodeCounts?: readonly number[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      ['--import', 'tsx', join(REPO, 'scripts', 'bench', 'scheduler.ts'), String(pods), ...(nodeCounts ? [nodeCounts.join(',')] : [])],
      { cwd: REPO, timeout: 300_000, maxBuffer: 1 << 20 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
    // The calibration is the hub's machine's: inside FLEET_HUB_CGROUP when one is set.
    intoHubCgroup(child.pid);
  });
}
