import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdCluster, type EtcdMemberStatus } from '../../../test/helpers/etcd.js';
import { freePort } from '../../../test/helpers/procs.js';
import type { HubSnapshot, LagStats } from './fleet-tracker.js';
import { HollowFleet, type HollowFleetOptions, type HollowNode } from './hollow-fleet.js';
import type { HubChildConfig } from './hub-child.js';
import type { StoreFrom } from '../../../hub/main.js';
import { HubProcess, intoHubCgroup, killAll, startWorkerFleet, type FleetHandle } from './processes.js';
import { readProcStats } from './proc-stats.js';
import { applyAll, benchDeployments } from './workload.js';

/**
 * One fleet scenario, phase by phase, every phase bounded in time:
 *   1. hub process up (fresh data dir), N node credentials issued (not timed)
 *   2. register: N hollow agents connect over TLS → every node Ready in the store
 *   3. deploy: M pods as Deployments through the HTTPS API → every pod bound and Running
 *      in the store (i.e. reported Running by its agent)
 *   4. steady: heartbeat lag sampled over a quiet window
 *   5. crash: `kill -9` the hub, start it again on the same ports and data dir → every node
 *      heard by the new hub and Ready, every agent holding its set from the new hub, every pod
 *      reported Running to the new hub — with no pod renamed, re-created or moved.
 * A phase that misses its deadline is recorded (ok: false) and the scenario goes on.
 */

export interface ScenarioOptions {
  nodes: number;
  podsPerNode: number;
  /** Worker processes for the hollow agents; 0 runs them in this process (tests). */
  procs: number;
  replicasPerDeployment?: number;
  usageIntervalMs?: number;
  /** Quiet window over which steady-state heartbeat lag is sampled (default: one usage period + 2 s). */
  steadyMs?: number;
  pollMs?: number;
  timeouts?: Partial<{ hubStartMs: number; registerMs: number; deployMs: number; recoverMs: number }>;
  log?: (msg: string) => void;
  /** Keep the hub data dir (debugging). */
  keepData?: boolean;
  /** Writes hub CPU profiles of register+deploy and of the recovery here (.cpuprofile). */
  profileDir?: string;
  /** Extra node flags for the hub process (e.g. `--max-old-space-size=768`), both starts. */
  hubNodeArgs?: string[];
  /** Extra environment of the hub process only (e.g. glibc's `MALLOC_MMAP_THRESHOLD_`), both starts. */
  hubEnv?: Record<string, string>;
  /**
   * Where the hub keeps its objects: SQLite in its data dir (default), or an etcd cluster of
   * `members` (default 3) started for the scenario (issue 19), with `leaderTtl` as the hub's lease. On etcd the crash
   * phase restarts the hub on the same ports as on SQLite: the new process waits for the killed
   * one's lease to expire before it leads, and that wait is part of its recovery time.
   */
  store?: { kind: 'sqlite' } | { kind: 'etcd'; members?: 1 | 3; leaderTtl?: string };
}

export interface PhaseResult {
  ok: boolean;
  ms: number;
  detail?: string;
}

export interface ScenarioResult {
  nodes: number;
  pods: number;
  hubStartMs: number;
  register: PhaseResult;
  deploy: PhaseResult & { applyMs: number; applyRetries: number; boundMs: number; podsPerSec: number };
  lagUnderLoad: LagStats;
  lagSteady: LagStats;
  /** Longest wait of an agent message for the NodeController (arrival → ingest) while deploying / recovering. */
  ingestLagMaxMs: { deploy: number; recover: number };
  loopDelaySteady: LagStats;
  hub: { peakRssBytes: number; cpuSeconds: number };
  recover: PhaseResult & { hubUpMs: number; nodesMs: number; podsUnchanged: boolean; hubPeakRssBytes: number; hubCpuSeconds: number };
  agents: { peakRssBytes: number; cpuSeconds: number; linkBuilds: number };
  /** 1-minute load average at start and end: the box is shared, so say how busy it was. */
  load: { start: number; end: number };
  store: 'sqlite' | 'etcd';
  /** etcd only: the restarted hub's lead (election + store load) and listen times, and the members' backends at the end. */
  etcd?: { wonMs?: number; electedMs: number; listeningMs: number; storeFrom?: StoreFrom; members: EtcdMemberStatus[] };
  errors: string[];
}

export interface Poll<T> {
  ok: boolean;
  ms: number;
  last: T | undefined;
}

export async function pollUntil<T>(
  start: number,
  deadline: number,
  everyMs: number,
  read: () => Promise<T>,
  done: (v: T) => boolean,
  onTick?: (v: T) => void,
): Promise<Poll<T>> {
  let last: T | undefined;
  for (;;) {
    try {
      last = await read();
      onTick?.(last);
      if (done(last)) return { ok: true, ms: Date.now() - start, last };
    } catch {
      // the hub may be busy or restarting: keep polling until the deadline
    }
    if (Date.now() >= deadline) return { ok: false, ms: Date.now() - start, last };
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * CPU each named process used since the previous call, in % of one core, and the machine's I/O wait
 * in % of all cores (from /proc/stat), e.g. `cpu hub 94% w0 12% w1 10% m0 19% iowait 18%`.
 */
export function cpuShares(procs: () => Array<[string, number | undefined]>): () => string {
  const last = new Map<string, number>();
  let lastAt = Date.now();
  let lastSys: number[] | undefined;
  const sys = (): number[] | undefined => {
    try {
      const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
      return line.trim().split(/\s+/).slice(1).map(Number);
    } catch {
      return undefined;
    }
  };
  return () => {
    const now = Date.now();
    const dt = Math.max(1, now - lastAt) / 1000;
    lastAt = now;
    const parts: string[] = [];
    for (const [name, pid] of procs()) {
      const cpu = pid === undefined ? undefined : readProcStats(pid)?.cpuSeconds;
      if (cpu === undefined) continue;
      const key = `${name}:${pid}`;
      const before = last.get(key);
      last.set(key, cpu);
      if (before !== undefined) parts.push(`${name} ${Math.round((100 * (cpu - before)) / dt)}%`);
    }
    const now2 = sys();
    if (now2 !== undefined && lastSys !== undefined) {
      const total = now2.reduce((a, x) => a + x, 0) - lastSys.reduce((a, x) => a + x, 0);
      const iowait = (now2[4] ?? 0) - (lastSys[4] ?? 0);
      if (total > 0) parts.push(`iowait ${Math.round((100 * iowait) / total)}%`);
    }
    lastSys = now2;
    return parts.length > 0 ? `cpu ${parts.join(' ')}` : '';
  };
}

function inProcessFleet(opts: HollowFleetOptions): FleetHandle & { start(): Promise<void> } {
  const fleet = new HollowFleet(opts);
  return {
    pids: [process.pid],
    start: () => fleet.start(),
    async stats(since = 0) {
      const p = readProcStats(process.pid);
      return { ...fleet.stats(since), peakRssBytes: p?.peakRssBytes ?? 0, cpuSeconds: p?.cpuSeconds ?? 0 };
    },
    stop: () => fleet.stop(),
    async each<T>(method: string, params: unknown = {}) {
      if (method !== 'serviceProbe') throw new Error(`in-process fleet: no ${method}`);
      const p = params as { keys: string[]; since: number; topic?: string };
      return [fleet.serviceProbe(p.keys, p.since, p.topic) as T];
    },
  };
}

export async function runScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const log = o.log ?? (() => undefined);
  const N = o.nodes;
  const M = o.nodes * o.podsPerNode;
  const every = o.pollMs ?? (N >= 2000 ? 1000 : 500);
  const to = {
    hubStartMs: 120_000,
    registerMs: 60_000 + 10 * N,
    deployMs: 60_000 + 2 * M,
    recoverMs: 180_000,
    ...o.timeouts,
  };
  const errors: string[] = [];
  const hubDir = mkdtempSync(join(tmpdir(), 'orchard-fleet-hub-'));
  // Agents' desired-set caches fsync on every change: tmpfs keeps 10k of them cheap.
  const agentRoot = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'orchard-fleet-agents-'));
  let hub: HubProcess | undefined;
  let fleet: FleetHandle | undefined;
  const result: ScenarioResult = {
    nodes: N,
    pods: M,
    hubStartMs: 0,
    register: { ok: false, ms: 0 },
    deploy: { ok: false, ms: 0, applyMs: 0, applyRetries: 0, boundMs: 0, podsPerSec: 0 },
    lagUnderLoad: { samples: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0 },
    lagSteady: { samples: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0 },
    ingestLagMaxMs: { deploy: 0, recover: 0 },
    loopDelaySteady: { samples: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0 },
    hub: { peakRssBytes: 0, cpuSeconds: 0 },
    recover: { ok: false, ms: 0, hubUpMs: 0, nodesMs: 0, podsUnchanged: false, hubPeakRssBytes: 0, hubCpuSeconds: 0 },
    agents: { peakRssBytes: 0, cpuSeconds: 0, linkBuilds: 0 },
    load: { start: loadavg()[0] ?? 0, end: 0 },
    store: o.store?.kind ?? 'sqlite',
    errors,
  };
  let etcd: EtcdCluster | undefined;
  const closeEtcd = (): void => {
    etcd?.close();
    etcd = undefined;
  };
  const sampleHub = (): void => {
    const p = hub?.procStats();
    if (!p) return;
    if (result.recover.hubUpMs === 0) result.hub = { peakRssBytes: Math.max(result.hub.peakRssBytes, p.peakRssBytes), cpuSeconds: p.cpuSeconds };
    else result.recover = { ...result.recover, hubPeakRssBytes: Math.max(result.recover.hubPeakRssBytes, p.peakRssBytes), hubCpuSeconds: p.cpuSeconds };
  };
  // Who had the CPU since the last progress line: the hub, the hollow agents' workers, etcd, and the
  // machine's I/O wait — a storm that does not converge while the hub idles is someone else's.
  const shares = cpuShares(() => [
    ['hub', hub?.pid],
    ...(fleet?.pids ?? []).map((pid, i): [string, number] => [`w${i}`, pid]),
    ...(etcd?.members ?? []).map((m): [string, number | undefined] => [m.name, m.proc?.pid]),
  ]);
  const progress =
    (phase: string) =>
    (s: HubSnapshot): void => {
      sampleHub();
      log(
        [
          `[${N}] ${phase}: ready ${s.nodesReady}/${N} heard ${s.nodesHeard} pods ${s.pods} bound ${s.podsBound}`,
          `running ${s.podsRunning} reported ${s.podsReportedRunning} queues ${JSON.stringify(s.queues)}`,
          `rss ${Math.round(s.rssBytes / 2 ** 20)}MiB heap ${Math.round(s.heapUsedBytes / 2 ** 20)}/${Math.round(s.heapTotalBytes / 2 ** 20)}MiB`,
          `ext ${Math.round(s.externalBytes / 2 ** 20)}MiB loop p99 ${s.eventLoopDelay.p99Ms.toFixed(0)}ms max ${s.eventLoopDelay.maxMs.toFixed(0)}ms`,
          `gate ${s.admission.inFlightNow}/${s.admission.queuedNow} admitted ${s.admission.admitted} expired ${s.admission.expired}`,
          `refused ${s.admission.refused} max wait ${(s.admission.maxWaitedMs / 1000).toFixed(1)}s keep-alive drops ${s.keepaliveTimeouts}`,
          `ingest ${s.ingest.queued} queued, lag ≤ ${(s.ingest.maxLagMs / 1000).toFixed(1)}s`,
          shares(),
        ].join(' '),
      );
    };

  // /proc is read on a timer too: polls stall while the hub is saturated, and a hub that dies
  // (e.g. out of memory) must still leave its peak behind.
  const sampler = setInterval(sampleHub, 1000);
  try {
    // 1. hub + credentials
    // The hub's default grace (40 s) is 4 × the agent's default 10 s heartbeat; hollow nodes beat
    // slower to stay light, so the grace follows (else a busy hub marks live nodes NotReady).
    let cfg: HubChildConfig = { dataDir: hubDir, mqttPort: 0, httpPort: 0, heartbeatGraceMs: 4 * (o.usageIntervalMs ?? 30_000) };
    let hubEnv: Record<string, string> = { ...o.hubEnv };
    if (o.store?.kind === 'etcd') {
      // etcd's own raft timings (100 ms / 1 s); the hub's ports fixed now (it listens only once it leads).
      etcd = await EtcdCluster.start(o.store.members ?? 3, { heartbeatMs: 100, electionMs: 1000 });
      for (const m of etcd.members) intoHubCgroup(m.proc?.pid);
      // fleet.ts ends with process.exit on its time limit or a signal: the members go with it.
      process.on('exit', closeEtcd);
      cfg = {
        ...cfg,
        mqttPort: await freePort(),
        httpPort: await freePort(),
        etcd: { endpoints: etcd.endpoints, ...(o.store.leaderTtl ? { leaderTtl: o.store.leaderTtl } : {}) },
      };
      hubEnv = { ...hubEnv, ORCHARD_HA_SECRET: `fleet-bench-${process.pid}-${Date.now()}` };
      log(`[${N}] store: etcd, ${etcd.endpoints.length} member(s) ${etcd.endpoints.join(' ')}`);
    }
    hub = await HubProcess.start(cfg, to.hubStartMs, o.hubNodeArgs ?? [], hubEnv);
    result.hubStartMs = hub.ready.startMs;
    const token = hub.ready.adminToken;
    if (token === undefined) throw new Error('fresh hub did not create an admin token');
    const tCred = Date.now();
    const creds = await hub.rpc.call<Array<[string, string]>>('issue', { prefix: 'hollow-', count: N }, 600_000);
    log(`[${N}] hub pid ${hub.pid} up in ${hub.ready.startMs} ms; ${N} credentials issued in ${Date.now() - tCred} ms`);
    const nodes: HollowNode[] = creds.map(([name, credential]) => ({ name, credential }));
    const fleetOpts: HollowFleetOptions = {
      mqttUrl: hub.ready.mqttUrl,
      caPem: hub.ready.caPem,
      nodes,
      dataRoot: agentRoot,
      usageIntervalMs: o.usageIntervalMs ?? 30_000,
    };

    // 2. register
    await hub.rpc.call('resetLag');
    if (o.profileDir) await hub.rpc.call('profileStart');
    const t0 = Date.now();
    if (o.procs > 0) {
      fleet = await startWorkerFleet(o.procs, fleetOpts);
    } else {
      const f = inProcessFleet(fleetOpts);
      fleet = f;
      void f.start().catch((err: unknown) => errors.push(`fleet start: ${String(err)}`));
    }
    const h1 = hub;
    const reg = await pollUntil(
      t0,
      t0 + to.registerMs,
      every,
      () => h1.snapshot(),
      (s) => s.nodesReady >= N,
      progress('register'),
    );
    result.register = { ok: reg.ok, ms: reg.ms, ...(reg.ok ? {} : { detail: `${reg.last?.nodesReady ?? 0}/${N} Ready at the deadline` }) };
    const fr = await fleet.stats().catch(() => undefined);
    log(
      `[${N}] register: ${reg.ok ? 'all Ready' : 'MISSED'} in ${reg.ms} ms; agents connected ${fr?.connected}, link builds ${fr?.linkBuilds}, warnings ${JSON.stringify(fr?.warnings ?? {})}`,
    );

    // 3. deploy
    const docs = benchDeployments(M, o.replicasPerDeployment ?? 100);
    const t1 = Date.now();
    const { retries: applyRetries, unconfirmed } = await applyAll(h1.ready.apiUrl, token, h1.ready.caPem, docs);
    if (unconfirmed > 0) log(`[${N}] apply: ${unconfirmed} request(s) answered 504 ERR_TIMEOUT (applied, etcd had not confirmed within the barrier)`);
    const applyMs = Date.now() - t1;
    result.deploy.applyRetries = applyRetries;
    let boundMs = 0;
    const dep = await pollUntil(
      t1,
      t1 + to.deployMs,
      every,
      async () => {
        const snap = await h1.snapshot();
        result.ingestLagMaxMs.deploy = Math.max(result.ingestLagMaxMs.deploy, snap.ingest.maxLagMs);
        return snap;
      },
      (s) => {
        if (boundMs === 0 && s.pods >= M && s.podsBound >= M) boundMs = Date.now() - t1;
        return s.pods >= M && s.podsBound >= M && s.podsRunning >= M;
      },
      progress('deploy'),
    );
    result.deploy = {
      ok: dep.ok,
      ms: dep.ms,
      applyMs,
      applyRetries,
      boundMs: boundMs || dep.ms,
      podsPerSec: dep.ok ? Math.round((M / dep.ms) * 1000) : Math.round(((dep.last?.podsRunning ?? 0) / dep.ms) * 1000),
      ...(dep.ok ? {} : { detail: `${dep.last?.podsBound ?? 0} bound, ${dep.last?.podsRunning ?? 0} Running of ${M} at the deadline` }),
    };
    result.lagUnderLoad = dep.last?.heartbeatLag ?? result.lagUnderLoad;
    log(`[${N}] deploy: ${dep.ok ? 'all Running' : 'MISSED'} in ${dep.ms} ms (apply ${applyMs} ms, bound ${boundMs} ms)`);

    // 4. steady-state heartbeat lag
    await h1.rpc.call('resetLag');
    // Default: one usage period, so every node contributes about one sample.
    await new Promise((r) => setTimeout(r, o.steadyMs ?? (o.usageIntervalMs ?? 30_000) + 2000));
    const steady = await h1.snapshot();
    result.lagSteady = steady.heartbeatLag;
    result.loopDelaySteady = steady.eventLoopDelay;
    const before = await h1.rpc.call<{ count: number; digest: string }>('digest');
    if (o.profileDir) await h1.rpc.call('profileStop', { file: join(o.profileDir, `hub-${N}-deploy.cpuprofile`) }, 120_000);
    const p1 = h1.procStats();
    result.hub = { peakRssBytes: p1?.peakRssBytes ?? 0, cpuSeconds: p1?.cpuSeconds ?? 0 };

    // 5. crash and recover
    const tKill = Date.now();
    await h1.kill9();
    hub = undefined;
    const h2 = await HubProcess.start({ ...cfg, mqttPort: h1.ready.mqttPort, httpPort: h1.ready.httpPort }, to.hubStartMs, o.hubNodeArgs ?? [], hubEnv);
    if (h2.ready.electedAt !== undefined && h2.ready.listeningAt !== undefined) {
      result.etcd = {
        ...(h2.ready.wonAt !== undefined ? { wonMs: h2.ready.wonAt - tKill } : {}),
        electedMs: h2.ready.electedAt - tKill,
        listeningMs: h2.ready.listeningAt - tKill,
        ...(h2.ready.storeFrom !== undefined ? { storeFrom: h2.ready.storeFrom } : {}),
        members: [],
      };
    }
    if (o.profileDir) await h2.rpc.call('profileStart');
    hub = h2;
    result.recover.hubUpMs = Date.now() - tKill;
    const r2 = h2.ready;
    const since = (t: number | undefined): string => (t === undefined ? '—' : `${t - tKill} ms`);
    log(
      r2.electedAt === undefined
        ? `[${N}] recover: hub killed and back in ${result.recover.hubUpMs} ms (store load + listen ${r2.startMs} ms)`
        : [
            `[${N}] recover: hub killed and back in ${result.recover.hubUpMs} ms; after the kill: won ${since(r2.wonAt)},`,
            `led (identity + store) ${since(r2.electedAt)}, listening ${since(r2.listeningAt)} (Hub.start ${r2.startMs} ms);`,
            `store from ${JSON.stringify(r2.storeFrom)}; longest stall after winning ${r2.startStallMs ?? 0} ms`,
          ].join(' '),
    );
    const f = fleet;
    let nodesMs = 0;
    const rec = await pollUntil(
      tKill,
      tKill + to.recoverMs,
      every,
      async () => {
        const snap = await h2.snapshot();
        result.ingestLagMaxMs.recover = Math.max(result.ingestLagMaxMs.recover, snap.ingest.maxLagMs);
        return { s: snap, a: await f.stats(tKill) };
      },
      ({ s, a }) => {
        const nodesOk = s.nodes >= N && s.nodesHeard >= N && s.nodesReady >= N && a.desiredSince >= N;
        if (nodesOk && nodesMs === 0) nodesMs = Date.now() - tKill;
        return nodesOk && s.pods >= M && s.podsReportedRunning >= M;
      },
      ({ s, a }) => {
        progress('recover')(s);
        const top = Object.entries(a.warnings)
          .sort((x, y) => y[1] - x[1])
          .slice(0, 3)
          .map(([k, v]) => `${v}× ${k}`)
          .join('; ');
        log(`[${N}] recover: agents connected ${a.connected}/${N} with new set ${a.desiredSince} link builds ${a.linkBuilds}${top ? ` warnings: ${top}` : ''}`);
      },
    );
    const after = await h2.rpc.call<{ count: number; digest: string }>('digest').catch(() => undefined);
    // What the restarted hub wrote about nodes and pods since the kill (NodeNotReady, NodeLost, Rescheduling, …).
    const evs = await h2.rpc.call<Record<string, number>>('events', { since: tKill }).catch(() => undefined);
    log(`[${N}] recover: events since the kill ${JSON.stringify(evs ?? {})}`);
    if (o.profileDir) await h2.rpc.call('profileStop', { file: join(o.profileDir, `hub-${N}-recover.cpuprofile`) }, 120_000);
    const p2 = h2.procStats();
    result.recover = {
      ok: rec.ok,
      ms: rec.ms,
      hubUpMs: result.recover.hubUpMs,
      nodesMs: nodesMs || rec.ms,
      podsUnchanged: after !== undefined && after.count === before.count && after.digest === before.digest,
      hubPeakRssBytes: p2?.peakRssBytes ?? 0,
      hubCpuSeconds: p2?.cpuSeconds ?? 0,
      ...(rec.ok
        ? {}
        : {
            detail: `heard ${rec.last?.s.nodesHeard ?? 0}/${N}, agents with new set ${rec.last?.a.desiredSince ?? 0}, pods reported ${rec.last?.s.podsReportedRunning ?? 0}/${M}`,
          }),
    };
    if (!result.recover.podsUnchanged) errors.push(`pods changed across the restart: before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
    log(`[${N}] recover: ${rec.ok ? 'reconverged' : 'MISSED'} in ${rec.ms} ms; pods unchanged: ${result.recover.podsUnchanged}`);
    if (etcd && result.etcd) result.etcd.members = await etcd.status().catch(() => []);
    const fs = await fleet.stats();
    result.agents = { peakRssBytes: fs.peakRssBytes, cpuSeconds: fs.cpuSeconds, linkBuilds: fs.linkBuilds };
  } catch (err) {
    sampleHub();
    errors.push(err instanceof Error ? err.message : String(err));
    log(`[${N}] aborted: ${errors[errors.length - 1]}`);
  } finally {
    clearInterval(sampler);
    result.load.end = loadavg()[0] ?? 0;
    await fleet?.stop().catch(() => undefined);
    await hub?.stop().catch(() => undefined);
    killAll();
    closeEtcd();
    process.off('exit', closeEtcd);
    if (!o.keepData) rmSync(hubDir, { recursive: true, force: true });
    rmSync(agentRoot, { recursive: true, force: true });
  }
  return result;
}
