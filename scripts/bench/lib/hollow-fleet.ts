import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../../agent/agent.js';
import type { Logger } from '../../../agent/clock.js';
import { EngineOnlyProbe } from '../../../agent/reporter.js';
import { MemoryRuntime } from '../../../agent/runtime/memory-runtime.js';
import type { DesiredSetMessage } from '../../../protocol/messages.js';
import { topics } from '../../../protocol/topics.js';
import { TimingDataPlane } from './timing-data-plane.js';

/**
 * Many hollow nodes in one process: the real Agent class (reconciler, cache, reporter, MQTT
 * link over TLS with its jittered back-off) over ONE shared MemoryRuntime, so nothing runs
 * but the agent's own logic. Kept light for a 2-core box: long usage and resync periods, and
 * EngineOnlyProbe (no host calls).
 */

export const HOLLOW_IMAGE = 'bench.local/pause:1';

export interface HollowNode {
  name: string;
  credential: string;
  /** Services on: the node's advertise address (reported only; the timing data plane opens nothing). */
  advertiseAddress?: string;
}

export interface HollowFleetOptions {
  mqttUrl: string;
  /**
   * Every hub's MQTT address (HA on etcd, the failover bench): each agent moves to the next one
   * when its link drops or is refused (the agent Link's own `hubs` rotation). Unset: `mqttUrl` only.
   */
  mqttUrls?: string[];
  /** The agents' link option (agent/link.ts); 0 = the back-off before refusals got their short window, for comparison. */
  refusedFastForMs?: number;
  caPem: string;
  nodes: readonly HollowNode[];
  /** Each agent gets `<dataRoot>/<node>` for its desired-set cache (use tmpfs for big fleets). */
  dataRoot: string;
  usageIntervalMs?: number;
  resyncMs?: number;
  observedRepublishMs?: number;
  /** Agents started per event-loop turn, so a worker answers IPC while it ramps up. */
  startBatch?: number;
  logger?: Logger;
  /** Services on (issue 15): every agent subscribes and applies its tables to a TimingDataPlane. */
  services?: { serviceCidr: string };
  /** Logs bench (issue 16): every container's log is endless chunks of this many bytes, written as fast as they are read. */
  logChunkBytes?: number;
}

/** Per node, in the worker's node order: when a watched endpoint appeared, service bytes received, applies. */
export interface ServiceProbe {
  nodes: string[];
  /** Date.now of the first apply at/after `since` whose table holds one of the keys; null = not yet. */
  seenAt: Array<number | null>;
  /** Bytes (topic + payload) of service and service-index messages received since start. */
  bytes: number[];
  applies: number[];
  /** Date.now of the latest message on `topic` that arrived at/after `since` and no later than seenAt (or now); null = none. */
  arrivedAt: Array<number | null>;
  lastApplyAt: number;
  endpoints: number[];
}

export interface FleetStats {
  agents: number;
  connected: number;
  /** MQTT clients built so far (1 per agent + every reconnect attempt). */
  linkBuilds: number;
  /** Link attempts that ended refused (no hub listening) and otherwise (agent/link.ts `failures`). */
  linkRefused: number;
  linkFailed: number;
  /** Agents that received a desired set at or after `since`. */
  desiredSince: number;
  podsObserved: number;
  podsRunning: number;
  containers: number;
  /** Agents' warnings (link errors, publish failures) by message, to tell why connects fail. */
  warnings: Record<string, number>;
}

export class HollowFleet {
  readonly runtime = new MemoryRuntime({ images: [HOLLOW_IMAGE], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
  readonly agents: Agent[] = [];
  private readonly lastDesiredAt = new Map<string, number>();
  private readonly planes = new Map<string, TimingDataPlane>();
  private readonly serviceBytes = new Map<string, number>();
  /** `node topic` → arrival times (Date.now, as the worker's event loop got to them) of its messages. */
  private readonly arrivals = new Map<string, number[]>();
  private readonly warnings = new Map<string, number>();
  /** Counts warnings instead of printing 10,000 agents' logs. */
  private readonly countingLogger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (msg, fields) => this.count(msg, fields),
    error: (msg, fields) => this.count(msg, fields),
  };

  constructor(private readonly opts: HollowFleetOptions) {
    const size = opts.logChunkBytes;
    if (size !== undefined) {
      const chunk = Buffer.alloc(size, 0x61);
      this.runtime.logBook.script = async function* () {
        for (;;) {
          yield { fd: 1 as const, data: chunk };
          await new Promise((r) => setImmediate(r));
        }
      };
    }
  }

  async start(): Promise<void> {
    const batch = this.opts.startBatch ?? 100;
    for (let i = 0; i < this.opts.nodes.length; i += batch) {
      await Promise.all(this.opts.nodes.slice(i, i + batch).map((n) => this.startOne(n)));
      await new Promise((r) => setImmediate(r));
    }
  }

  stats(since = 0): FleetStats {
    let connected = 0;
    let linkBuilds = 0;
    let linkRefused = 0;
    let linkFailed = 0;
    let desiredSince = 0;
    let podsObserved = 0;
    let podsRunning = 0;
    for (const a of this.agents) {
      if (a.link?.connected) connected++;
      linkBuilds += a.link?.connects ?? 0;
      linkRefused += a.link?.failures.refused ?? 0;
      linkFailed += a.link?.failures.failed ?? 0;
      if ((this.lastDesiredAt.get(a.node) ?? -1) >= since) desiredSince++;
      for (const p of a.observed) {
        podsObserved++;
        if (p.phase === 'Running') podsRunning++;
      }
    }
    return {
      agents: this.agents.length,
      connected,
      linkBuilds,
      linkRefused,
      linkFailed,
      desiredSince,
      podsObserved,
      podsRunning,
      containers: this.runtime.all().length,
      warnings: Object.fromEntries(this.warnings),
    };
  }

  /**
   * Every container of this worker: name → `id@startedAt@state`. A container re-created gets a
   * new id, one restarted in place a new startedAt: two snapshots compared tell "restarted" apart.
   */
  containers(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const c of this.runtime.all()) out[c.name] = `${c.id}@${c.startedAt ?? ''}@${c.state}`;
    return out;
  }

  /** Services fleet bench: who has routed to `keys` since `since`, and service traffic so far. */
  serviceProbe(keys: readonly string[], since: number, topic = ''): ServiceProbe {
    const nodes = this.agents.map((a) => a.node);
    const planes = nodes.map((n) => this.planes.get(n));
    const seenAt = planes.map((p) => p?.seen(keys, since) ?? null);
    return {
      nodes,
      seenAt,
      arrivedAt: nodes.map((n, i) => {
        const until = seenAt[i] ?? Infinity;
        const ts = (this.arrivals.get(`${n} ${topic}`) ?? []).filter((t) => t >= since && t <= until);
        return ts.length > 0 ? Math.max(...ts) : null;
      }),
      bytes: nodes.map((n) => this.serviceBytes.get(n) ?? 0),
      applies: planes.map((p) => p?.applies ?? 0),
      lastApplyAt: Math.max(0, ...planes.map((p) => p?.lastApplyAt ?? 0)),
      endpoints: planes.map((p) => p?.endpoints ?? 0),
    };
  }

  private count(msg: string, fields?: Record<string, unknown>): void {
    const detail = typeof fields?.['error'] === 'string' ? `: ${fields['error'].replace(/\d+/g, 'N').slice(0, 80)}` : '';
    const key = `${msg}${detail}`;
    this.warnings.set(key, (this.warnings.get(key) ?? 0) + 1);
  }

  /** Stops every agent (workloads stay, as with a real agent) and removes the agents' data dirs. */
  async stop(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.stop().catch(() => undefined)));
    rmSync(this.opts.dataRoot, { recursive: true, force: true });
  }

  private async startOne(n: HollowNode): Promise<void> {
    const urls = this.opts.mqttUrls;
    const agent = new Agent({
      node: n.name,
      // Agent-reported: filed by the hub as node.orchard.dev/bench-hollow (a prefixed key would be dropped).
      labels: { 'bench-hollow': 'true', 'bench-node': n.name },
      dataDir: join(this.opts.dataRoot, n.name),
      runtime: this.runtime,
      probe: new EngineOnlyProbe(this.runtime),
      link: {
        url: this.opts.mqttUrl,
        username: n.name,
        password: n.credential,
        ca: this.opts.caPem,
        // Several hubs (failover bench): the Link's own rotation through the list, as a real agent's.
        ...(urls !== undefined && urls.length > 1 ? { hubs: { mqttUrls: () => urls, update: () => undefined } } : {}),
        ...(this.opts.refusedFastForMs !== undefined ? { refusedFastForMs: this.opts.refusedFastForMs } : {}),
      },
      usageIntervalMs: this.opts.usageIntervalMs ?? 30_000,
      resyncMs: this.opts.resyncMs ?? 60_000,
      observedRepublishMs: this.opts.observedRepublishMs ?? 120_000,
      logger: this.opts.logger ?? this.countingLogger,
      ...(this.opts.services ? { services: this.servicesFor(n) } : {}),
    });
    if (this.opts.services) this.countServiceBytes(agent);
    // The link calls agent.onDesired through a closure, so wrapping the instance method sees
    // every desired set (used to tell "got its set from the restarted hub").
    const onDesired = agent.onDesired.bind(agent);
    agent.onDesired = (m: DesiredSetMessage): void => {
      this.lastDesiredAt.set(n.name, Date.now());
      onDesired(m);
    };
    this.agents.push(agent);
    await agent.start();
  }

  private servicesFor(n: HollowNode): NonNullable<AgentOptions['services']> {
    const dataPlane = new TimingDataPlane();
    this.planes.set(n.name, dataPlane);
    return {
      dataPlane,
      serviceCidr: this.opts.services?.serviceCidr ?? '',
      ...(n.advertiseAddress !== undefined ? { advertiseAddress: n.advertiseAddress } : {}),
    };
  }

  /**
   * The link's MQTT client calls its private onMessage(topic, payload) through `this`, so an
   * instance override sees every message, raw, before decoding (the bench's byte count).
   */
  private countServiceBytes(agent: Agent): void {
    const link = agent.link as unknown as { onMessage(topic: string, payload: Buffer): void } | undefined;
    if (link === undefined) return;
    const inner = link.onMessage.bind(link);
    link.onMessage = (topic, payload) => {
      if (topic === topics.serviceIndex() || topic.startsWith(topics.service(''))) {
        this.serviceBytes.set(agent.node, (this.serviceBytes.get(agent.node) ?? 0) + Buffer.byteLength(topic) + payload.length);
        const k = `${agent.node} ${topic}`;
        const list = this.arrivals.get(k) ?? [];
        list.push(Date.now());
        if (list.length > 8) list.shift();
        this.arrivals.set(k, list);
      }
      inner(topic, payload);
    };
  }
}
