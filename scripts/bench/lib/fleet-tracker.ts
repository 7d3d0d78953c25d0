import type { ConnectGateStats } from '../../../hub/broker/connect-gate.js';
import { createHash } from 'node:crypto';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Hub } from '../../../hub/hub.js';
import type { WatchEvent } from '../../../hub/store/store.js';
import { isNodeReady as isReady } from '../../../hub/objects/node.js';
import { topics, parseTopic } from '../../../protocol/topics.js';
import { payloadText } from '../../../protocol/messages.js';

/**
 * Hub-side instrumentation for the fleet bench, attached in-process to a running Hub.
 *
 * It listens on the same node topics as the NodeController (in-process broker subscriptions,
 * delivered right after the controller's), so it can tell what the *new* hub has heard since it
 * started — the store alone cannot: after a `kill -9` it still says every node is Ready and
 * every pod Running, because that was the last thing written. It also samples heartbeat lag
 * (agent's usage `at` → hub handling) and the hub's event-loop delay.
 *
 * Cost: one JSON.parse per usage/observed message on top of the controller's own, and a watch
 * listener that keeps pod/node counts incrementally (so polling a snapshot is O(nodes), never
 * a sorted list of 100,000 pods).
 */

export interface LagStats {
  samples: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface HubSnapshot {
  at: number;
  startedAt: number;
  nodes: number;
  nodesReady: number;
  /** Nodes that sent status (registration facts) to this hub process. */
  nodesHeard: number;
  pods: number;
  podsBound: number;
  podsRunning: number;
  /** Pods that an observed set received by this hub process reports Running (same uid, same node). */
  podsReportedRunning: number;
  deployments: number;
  heartbeatLag: LagStats;
  eventLoopDelay: LagStats;
  queues: { deployments: number; scheduling: number; desired: number; storeUnflushed?: number };
  desiredPublished: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  /** Memory outside the JS heap that V8 knows of (Buffers); TLS state is in neither. */
  externalBytes: number;
  rssBytes: number;
  /** The broker's connection admission (hub/broker/connect-gate.ts). */
  admission: ConnectGateStats;
  /** Clients the broker dropped for keep-alive so far (orchard_mqtt_keepalive_timeouts_total). */
  keepaliveTimeouts: number;
  /** Agent messages waiting for the NodeController, and the longest wait since the last snapshot. */
  ingest: { queued: number; maxLagMs: number };
}

const MAX_LAG_SAMPLES = 20_000;

export class FleetTracker {
  readonly startedAt = Date.now();
  private readonly heard = new Set<string>();
  /**
   * node → how many pods its latest observed set reports Running that the store has bound to
   * it with the same uid (checked when the report arrives; pods do not move in this bench).
   */
  private readonly running = new Map<string, number>();
  private lag: number[] = [];
  private lagSeen = 0;
  private readonly loop: IntervalHistogram;
  private readonly unsubscribe: Array<() => Promise<void>> = [];
  /** Pod counts kept from watch events (their `old` state), so a snapshot is O(nodes) and holds no per-pod state. */
  private podCount = { pods: 0, bound: 0, running: 0 };
  private readonly nodeReady = new Map<string, boolean>();
  private unwatch: (() => void) | undefined;

  private constructor(private readonly hub: Hub) {
    this.loop = monitorEventLoopDelay({ resolution: 20 });
    this.loop.enable();
  }

  private onWatch(ev: WatchEvent): void {
    const o = ev.object;
    if (o.kind === 'Pod') {
      const c = this.podCount;
      const count = (p: typeof o, sign: 1 | -1): void => {
        c.pods += sign;
        if (p.spec.nodeName) c.bound += sign;
        if (p.spec.nodeName && p.status.phase === 'Running') c.running += sign;
      };
      if (ev.type === 'DELETED') count(o, -1);
      else {
        if (ev.type === 'MODIFIED' && ev.old?.kind === 'Pod') count(ev.old, -1);
        count(o, 1);
      }
    } else if (o.kind === 'Node') {
      if (ev.type === 'DELETED') this.nodeReady.delete(o.metadata.name);
      else this.nodeReady.set(o.metadata.name, isReady(o));
    }
  }

  /** `reportedRunning: false`: observed sets are not parsed again, and `podsReportedRunning` stays 0. */
  static async attach(hub: Hub, opts: { reportedRunning?: boolean } = {}): Promise<FleetTracker> {
    const t = new FleetTracker(hub);
    t.unwatch = hub.store.watch((ev) => t.onWatch(ev), ['Pod', 'Node']);
    for (const o of hub.store.list('Pod')) t.onWatch({ type: 'ADDED', object: o });
    for (const o of hub.store.list('Node')) t.onWatch({ type: 'ADDED', object: o });
    const channels = opts.reportedRunning === false ? (['status', 'usage'] as const) : (['status', 'usage', 'observed'] as const);
    for (const ch of channels) {
      t.unsubscribe.push(await hub.broker.subscribe(topics.allNodes(ch), (topic, payload) => t.onMessage(topic, payload)));
    }
    return t;
  }

  async detach(): Promise<void> {
    this.loop.disable();
    this.unwatch?.();
    for (const u of this.unsubscribe) await u().catch(() => undefined);
  }

  /** Forgets lag samples (start a fresh measuring window). */
  resetLag(): void {
    this.lag = [];
    this.lagSeen = 0;
    this.loop.reset();
  }

  snapshot(): HubSnapshot {
    let podsReportedRunning = 0;
    for (const n of this.running.values()) podsReportedRunning += n;
    let nodesReady = 0;
    let nodesHeard = 0;
    for (const [name, ready] of this.nodeReady) {
      if (ready) nodesReady++;
      if (this.heard.has(name)) nodesHeard++;
    }
    const c = this.hub.controllers;
    const mem = process.memoryUsage();
    return {
      at: Date.now(),
      startedAt: this.startedAt,
      nodes: this.nodeReady.size,
      nodesReady,
      nodesHeard,
      pods: this.podCount.pods,
      podsBound: this.podCount.bound,
      podsRunning: this.podCount.running,
      podsReportedRunning,
      deployments: this.hub.store.count('Deployment'),
      heartbeatLag: percentiles(this.lag),
      eventLoopDelay: {
        samples: this.loop.count,
        p50Ms: this.loop.percentile(50) / 1e6,
        p95Ms: this.loop.percentile(95) / 1e6,
        p99Ms: this.loop.percentile(99) / 1e6,
        maxMs: this.loop.max / 1e6,
      },
      queues: {
        deployments: c.deployments.queue.length,
        scheduling: c.scheduling.queue.length,
        desired: c.desired.queue.length,
        // Writes the etcd store has not had confirmed yet (0 on SQLite, which commits synchronously).
        ...(storeBacklog(this.hub.store) !== undefined ? { storeUnflushed: storeBacklog(this.hub.store)! } : {}),
      },
      desiredPublished: c.desired.published,
      heapUsedBytes: mem.heapUsed,
      heapTotalBytes: mem.heapTotal,
      externalBytes: mem.external,
      rssBytes: mem.rss,
      admission: this.hub.broker.admission(),
      keepaliveTimeouts: this.hub.broker.keepaliveTimeouts,
      ingest: c.nodes.backlog(),
    };
  }

  /** A digest of every pod's (name, uid, node): equal before and after a restart ⇔ nothing was rescheduled. */
  podDigest(): { count: number; digest: string } {
    const h = createHash('sha256');
    const pods = this.hub.store.list('Pod');
    for (const p of pods) h.update(`${p.metadata.name}\0${p.metadata.uid}\0${p.spec.nodeName ?? ''}\n`);
    return { count: pods.length, digest: h.digest('hex') };
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = parseTopic(topic);
    if (!t || t.type !== 'node') return;
    try {
      if (t.channel === 'status') {
        this.heard.add(t.node);
      } else if (t.channel === 'usage') {
        // The short form (usage-delta) carries `at` alone while the node's usage is unchanged.
        const m = JSON.parse(jsonText(payload)) as { usage?: { at?: string }; at?: string };
        const at = Date.parse(m.usage?.at ?? m.at ?? '');
        if (Number.isFinite(at)) this.addLag(Date.now() - at);
      } else if (t.channel === 'observed') {
        const m = JSON.parse(jsonText(payload)) as { pods?: Array<{ name?: string; uid?: string; phase?: string }> };
        let n = 0;
        for (const p of m.pods ?? []) {
          if (p.phase !== 'Running' || typeof p.name !== 'string') continue;
          const stored = this.hub.store.get('Pod', p.name);
          if (stored !== undefined && stored.metadata.uid === p.uid && stored.spec.nodeName === t.node) n++;
        }
        this.running.set(t.node, n);
      }
    } catch {
      // The controller logs and counts invalid messages; the tracker just ignores them.
    }
  }

  /** Reservoir sampling keeps memory bounded over long runs. */
  private addLag(ms: number): void {
    this.lagSeen++;
    if (this.lag.length < MAX_LAG_SAMPLES) this.lag.push(ms);
    else {
      const i = Math.floor(Math.random() * this.lagSeen);
      if (i < MAX_LAG_SAMPLES) this.lag[i] = ms;
    }
  }
}

export function percentiles(xs: readonly number[]): LagStats {
  if (xs.length === 0) return { samples: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return { samples: s.length, p50Ms: at(0.5), p95Ms: at(0.95), p99Ms: at(0.99), maxMs: s[s.length - 1] ?? 0 };
}

/** A report's JSON text (agents deflate large ones); throws on a bad payload, which onMessage ignores. */
function jsonText(payload: Buffer): string {
  const t = payloadText(payload);
  if (!t.ok) throw new Error(t.error);
  return t.text;
}

/** The etcd store's unconfirmed writes (`unflushed`), undefined for stores without a write-behind queue. */
function storeBacklog(store: object): number | undefined {
  const n = (store as { unflushed?: unknown }).unflushed;
  return typeof n === 'number' ? n : undefined;
}
