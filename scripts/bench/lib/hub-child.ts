/**
 * Entry of the bench's hub process: a real Hub (SQLite in `dataDir`, or etcd: see `etcd` below;
 * TLS broker and HTTPS API on loopback) plus the FleetTracker, driven by the bench over IPC. Run
 * compiled on plain node (processes.ts; FLEET_HUB_TSX=1: through tsx) with FLEET_HUB_CONFIG set
 * (see HubChildConfig); it emits "ready" once listening. Kept in its own process so its RSS and
 * CPU are measured alone.
 *
 * On etcd the process campaigns through `leadOnEtcd` of hub/main.ts (what `orchard hub --store
 * etcd://…` runs: election, the group's identity from etcd, the fenced EtcdStore, exit 75 on lost
 * leadership), emits "campaigning" at once and "ready" only once it leads and listens: a standby
 * keeps its ports closed, so its ports must be fixed in advance (not 0).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { applyHeapGrowth, DEFAULT_HEAP_GROWING_PERCENT } from '../../../hub/heap-growth.js';
import { Hub, type HubOptions } from '../../../hub/hub.js';
import { advertisedEndpoint, leadOnEtcd, parseHubArgs, type StoreFrom } from '../../../hub/main.js';
import { createLogger, type LogLevel } from '../../../hub/log.js';
import { FleetTracker } from './fleet-tracker.js';
import { emitEvent, serveRpc } from './ipc.js';
import { payloadText } from '../../../protocol/messages.js';

export interface HubChildConfig {
  dataDir: string;
  mqttPort: number;
  httpPort: number;
  logLevel?: LogLevel;
  /** Keep the design's ratio: NotReady after 4 missed heartbeats of the fleet's usage period. */
  heartbeatGraceMs?: number;
  /** Unset in the fleet bench on purpose: its restarted hub is the case the default grace (60 s) protects. */
  nodeStartupGraceMs?: number;
  /**
   * The store on etcd: client URLs of the members and the leader lease (`--leader-ttl`, e.g. `10s`).
   * The group's HA secret comes from ORCHARD_HA_SECRET in the environment, as for `orchard hub`.
   */
  etcd?: { endpoints: string[]; leaderTtl?: string };
  /**
   * Count the pods observed sets report Running (default true): the tracker inflates and parses every
   * observed set again inside the hub process (≈ 5.7 % of the hub's thread in a 10,000-node deploy,
   * docs/benchmarks.md 2026-12-05). Only a restart needs it (the store still says Running); the
   * scrape harness has none and turns it off.
   */
  reportedRunning?: boolean;
  /** HubOptions.metricsRenderAhead (default true): false for an A/B against lines started by the first scrape. */
  metricsRenderAhead?: boolean;
}

export interface HubReady {
  pid: number;
  mqttPort: number;
  httpPort: number;
  apiUrl: string;
  mqttUrl: string;
  caPem: string;
  /** Only on the first start of a data dir. */
  adminToken?: string;
  startMs: number;
  /**
   * etcd: Date.now when this process won the election, when it had the identity and the store
   * from etcd (`leadOnEtcd` returned), and when it listened.
   */
  wonAt?: number;
  electedAt?: number;
  listeningAt?: number;
  /** etcd: where the new leader's store came from (its standby copy, or a full load and why). */
  storeFrom?: StoreFrom;
  /**
   * etcd: the longest event-loop stall from winning to "ready" (ms, 20 ms resolution). Lease
   * keep-alives cannot go out meanwhile: a stall longer than TTL − keep-alive period makes the new
   * leader step down (exit 75).
   */
  startStallMs?: number;
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env['FLEET_HUB_CONFIG'] ?? '{}') as HubChildConfig;
  // As `orchard hub` does (its --heap-growth default); FLEET_HUB_HEAP_GROWTH=0 leaves V8's heuristic.
  applyHeapGrowth(Number(process.env['FLEET_HUB_HEAP_GROWTH'] ?? DEFAULT_HEAP_GROWING_PERCENT));
  const log = createLogger('hub', cfg.logLevel ?? (process.env['FLEET_HUB_LOG'] as LogLevel | undefined) ?? 'error');
  let ha:
    | {
        store: NonNullable<HubOptions['store']>;
        identityMirror: NonNullable<HubOptions['identityMirror']>;
        hubOptions: Pick<HubOptions, 'epoch' | 'agentVersionsMirror' | 'ha'>;
        upload: () => Promise<void>;
        resign: () => Promise<void>;
      }
    | undefined;
  let electedAt: number | undefined;
  let wonAt: number | undefined;
  let storeFrom: StoreFrom | undefined;
  // Event-loop stalls (a 20 ms tick arriving > 100 ms late), stamped with when they ended: the
  // ones that end after the win are the start's, whatever the standby did before.
  const stalls: Array<{ endedAt: number; ms: number }> = [];
  let lastTick = Date.now();
  const ticker = setInterval(() => {
    const now = Date.now();
    if (now - lastTick > 120) stalls.push({ endedAt: now, ms: now - lastTick - 20 });
    lastTick = now;
  }, 20);
  if (cfg.etcd) {
    const flags = parseHubArgs([
      '--data-dir',
      cfg.dataDir,
      '--host',
      '127.0.0.1',
      '--store',
      `etcd://${cfg.etcd.endpoints.map((e) => e.replace(/^https?:\/\//, '')).join(',')}`,
      ...(cfg.etcd.leaderTtl !== undefined ? ['--leader-ttl', cfg.etcd.leaderTtl] : []),
    ]);
    if (flags.store.kind !== 'etcd') throw new Error('hub-child: --store did not parse as etcd');
    emitEvent('campaigning', { pid: process.pid });
    // As runHub: each hub advertises its addresses (the standby answers /healthz on its HTTP port meanwhile).
    const self = advertisedEndpoint(flags, `127.0.0.1:${cfg.httpPort}`, cfg.httpPort, cfg.mqttPort);
    const local = { dataDir: cfg.dataDir, host: '127.0.0.1', httpPort: cfg.httpPort, pkiNames: { hostnames: [], ips: ['127.0.0.1'] } };
    const led = await leadOnEtcd(flags, flags.store.endpoints, self, local, log);
    electedAt = Date.now();
    wonAt = led.wonAt;
    storeFrom = led.storeFrom;
    ha = {
      store: led.store,
      identityMirror: led.identityMirror,
      hubOptions: { epoch: led.epoch, agentVersionsMirror: led.agentVersionsMirror, ha: { self: led.self, epoch: led.epoch, members: led.members } },
      upload: async () => {
        await led.uploadMissingIdentity();
        await led.uploadMissingAgentVersions();
      },
      resign: () => led.election.stop(),
    };
  }
  const t0 = Date.now();
  const hub = await Hub.start({
    dataDir: cfg.dataDir,
    host: '127.0.0.1',
    mqttPort: cfg.mqttPort,
    httpPort: cfg.httpPort,
    insecure: false,
    ...(cfg.heartbeatGraceMs !== undefined ? { heartbeatGraceMs: cfg.heartbeatGraceMs } : {}),
    ...(cfg.nodeStartupGraceMs !== undefined ? { nodeStartupGraceMs: cfg.nodeStartupGraceMs } : {}),
    ...(cfg.metricsRenderAhead !== undefined ? { metricsRenderAhead: cfg.metricsRenderAhead } : {}),
    ...(ha ? { store: ha.store, identityMirror: ha.identityMirror, ...ha.hubOptions } : {}),
    log,
  });
  const listeningAt = Date.now();
  // As runHub: the first leader of a group puts its identity in etcd for the standbys.
  // The tracker first: agents reconnect within milliseconds of the broker listening, and a status
  // published while the identity upload waited on etcd was never "heard" (in-process
  // subscriptions get no retained messages): a 20-node failover run counted 19/20 that way.
  const tracker = await FleetTracker.attach(hub, { reportedRunning: cfg.reportedRunning ?? true });
  if (ha) await ha.upload();
  // `kill -USR2 <hub pid>` writes a heap snapshot (to FLEET_HEAP_DIR or the temp dir) to see what holds memory.
  process.on('SIGUSR2', () => {
    const file = writeHeapSnapshot(join(process.env['FLEET_HEAP_DIR'] ?? tmpdir(), `hub-${process.pid}-${Date.now()}.heapsnapshot`));
    process.stderr.write(`hub-child: heap snapshot written to ${file}\n`);
  });
  if (!hub.pki) throw new Error('the bench hub must run with TLS');
  let profiler: Session | undefined;
  const fanout = serviceFanoutProbe(hub);

  serveRpc({
    /** Issues credentials for `<prefix>0 … <prefix>(count-1)`; returns [name, credential] pairs. */
    issue: (p) => {
      const { prefix, count } = p as { prefix: string; count: number };
      // One write of auth.json for the whole fleet (one by one was 39–70 s at 10,000).
      const names = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
      return [...hub.auth.issueNodeCredentials(names)];
    },
    snapshot: () => tracker.snapshot(),
    /** Services fleet bench: note every publish on `topic` and, after the latest, each client's first socket write. */
    trackService: (p) => fanout.track((p as { topic: string }).topic),
    serviceFanout: () => fanout.report(),
    digest: () => tracker.podDigest(),
    /** Failover bench: every pod as [name, uid, node], to tell rescheduled pods by name. */
    pods: () => hub.store.list('Pod').map((p) => [p.metadata.name, p.metadata.uid, p.spec.nodeName ?? '']),
    /** Failover bench: Events whose last occurrence is at/after `since` (ms), counted by reason (× their count). */
    events: (p) => {
      const since = (p as { since: number }).since;
      const out: Record<string, number> = {};
      for (const e of hub.store.list('Event')) {
        if (Date.parse(e.lastTimestamp) < since) continue;
        out[e.reason] = (out[e.reason] ?? 0) + e.count;
      }
      return out;
    },
    /** Scrape bench: pods the hub has usage for, and how many of their containers have a CPU rate yet. */
    usageStats: () => {
      let withRate = 0;
      for (const p of hub.store.list('Pod')) {
        const node = p.spec.nodeName;
        if (node === undefined) continue;
        for (const c of hub.metrics.usage.pod(node, p.metadata.name)?.values() ?? []) if (c.cpuCores !== undefined) withRate++;
      }
      return { ...hub.metrics.usage.stats(), containersWithRate: withRate };
    },
    /** Logs bench: open streams and the bytes the hub holds for their readers (StreamHub.stats). */
    streamStats: () => ({ ...hub.streams.stats(), bytesOut: hub.streams.bytesOut }),
    /** process.memoryUsage() after a full GC when the hub runs with --expose-gc (else as is). */
    memory: () => {
      (globalThis as { gc?: () => void }).gc?.();
      return process.memoryUsage();
    },
    resetLag: () => tracker.resetLag(),
    /** CPU profile of a phase (the bench's --hub-cpu-prof): start, then stop writes a .cpuprofile. */
    profileStart: async () => {
      profiler ??= new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 1000 });
      await profiler.post('Profiler.start');
      return true;
    },
    profileStop: async (p) => {
      if (!profiler) return false;
      const { profile } = await profiler.post('Profiler.stop');
      writeFileSync((p as { file: string }).file, JSON.stringify(profile));
      profiler.disconnect();
      profiler = undefined;
      return true;
    },
    stop: async () => {
      await tracker.detach();
      await hub.stop();
      await ha?.resign();
      setImmediate(() => process.exit(0));
      return true;
    },
  });
  const ready: HubReady = {
    pid: process.pid,
    mqttPort: hub.mqttPort,
    httpPort: hub.httpPort,
    apiUrl: hub.apiUrl,
    mqttUrl: hub.mqttUrl,
    caPem: hub.pki.caPem,
    ...(hub.newAdminToken !== undefined ? { adminToken: hub.newAdminToken } : {}),
    startMs: listeningAt - t0,
    ...(electedAt !== undefined
      ? {
          wonAt,
          electedAt,
          listeningAt,
          ...(storeFrom !== undefined ? { storeFrom } : {}),
          startStallMs: Math.max(0, ...stalls.filter((s) => s.endedAt > (wonAt ?? electedAt ?? 0)).map((s) => s.ms)),
        }
      : {}),
  };
  clearInterval(ticker);
  emitEvent('ready', ready);
}

/**
 * The hub's side of a service change in the services fleet bench: when the endpoints controller
 * published the message (the publisher call, and when aedes called back: fan-out handed to every
 * subscriber) and when the broker first wrote to each agent's TLS socket after it (node's TLS
 * encrypts in write(), so that is when the bytes reach the kernel). On loopback the rest, up to
 * the agent's handler, is the worker process getting to the socket: the harness's share.
 */
function serviceFanoutProbe(hub: Hub): { track(topic: string): boolean; report(): unknown } {
  let topic: string | undefined;
  let publishes: Array<{ startedAt: number; doneAt?: number; readyUids: string[] }> = [];
  let writes = new Map<string, number>();
  const broker = hub.broker;
  const publish = broker.publish.bind(broker);
  broker.publish = async (t, payload, opts) => {
    if (t !== topic) return publish(t, payload, opts);
    const text = payloadText(payload);
    let readyUids: string[] = [];
    try {
      const m = JSON.parse(text.ok ? text.text : '{}') as { endpoints?: Array<{ uid: string; ready: boolean }> };
      readyUids = (m.endpoints ?? []).filter((e) => e.ready).map((e) => e.uid);
    } catch {
      // an empty payload (a delete) is not JSON
    }
    const rec: (typeof publishes)[number] = { startedAt: Date.now(), readyUids };
    publishes.push(rec);
    writes = new Map();
    await publish(t, payload, opts);
    rec.doneAt = Date.now();
  };
  broker.aedes.on('client', (client) => {
    const conn = (client as unknown as { conn: { write: (...a: unknown[]) => boolean } }).conn;
    const write = conn.write;
    conn.write = function (this: unknown, ...a: unknown[]): boolean {
      if (topic !== undefined && publishes.length > 0 && !writes.has(client.id)) writes.set(client.id, Date.now());
      return write.apply(this, a);
    };
  });
  return {
    track: (t) => {
      topic = t;
      publishes = [];
      writes = new Map();
      return true;
    },
    report: () => ({ publishes, writes: [...writes.values()] }),
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`hub-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
