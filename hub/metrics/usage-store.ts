import type { NodeUsageReport } from '../../protocol/messages.js';
import { type Ring, RingPool, type RingPoint } from './ring.js';

/**
 * The hub's in-memory view of usage (issue 16): per node its latest sample, per pod and
 * container the latest cumulative CPU and working set, a CPU rate from the last two samples, and
 * a bounded short history per node and per pod (Ring: fixed 720 bytes for the default hour).
 * Nothing here is persisted: usage is a stream, and SD cards wear.
 *
 * Bounds: only pods the store has bound to the reporting node are kept (`podOnNode`), so a node
 * cannot grow this map with made-up pod names across incremental reports, nor report usage for
 * another node's pods; at most MAX_PODS_PER_NODE per node. A pod leaves with the agent's `gone`
 * or a full refresh without it, a node with `forgetNode` (deleted).
 * Times are the hub's receive times (agents' clocks may be off), from the injected `now`.
 *
 * Also each node's service proxy counters (issue 15: `services` on the usage message), replaced
 * whole by each report that carries them; only services the store has (`serviceExists`), at most
 * SERVICE_COUNTERS_MAX (protocol/reports.ts) per node (the message's own cap).
 */
/** Pods kept per node (the usage message's own cap). */
export const MAX_PODS_PER_NODE = 1000;

export interface UsageStoreOptions {
  now: () => number;
  /** Whether `pod` is bound to `node` in the store; usage of any other pod is dropped. Default: all (unit tests). */
  podOnNode?: (node: string, pod: string) => boolean;
  /** Whether a service of this name exists in the store; counters of any other are dropped. Default: all (unit tests). */
  serviceExists?: (service: string) => boolean;
  /** History slots (default 60) of `historyStepMs` (default 60 s): the last hour. */
  historySize?: number;
  historyStepMs?: number;
}

export interface ContainerUsageView {
  cpuSeconds: number;
  memoryBytes: number;
  /** Cores over the last two samples; undefined until there are two (or after a counter reset). */
  cpuCores: number | undefined;
  at: number;
  /** Where `cpuCores`' window begins (the earlier of its two samples); the autoscaler's CPU-initialisation rule reads it. */
  windowStart?: number;
}

/**
 * One pod's usage on one node, as the scrape walks it: the store's own entry (allocated at ingest,
 * not per scrape). Its node and pod never change: a pod reported by another node gets a new entry.
 */
export interface PodUsage {
  readonly node: string;
  readonly pod: string;
  readonly containers: ReadonlyMap<string, ContainerUsageView>;
}

/** One node's proxy counters for one service, as last reported (allocated at ingest, not per scrape). */
export interface ServiceCountersView {
  readonly node: string;
  readonly service: string;
  readonly replays: number;
  /** Hub receive time of the report. */
  readonly at: number;
}

interface PodEntry extends PodUsage {
  readonly containers: Map<string, ContainerUsageView>;
  history: Ring;
}

interface NodeEntry {
  cpuPercent: number;
  memoryUsedBytes: number;
  at: number;
  pods: Map<string, PodEntry>;
  history: Ring;
  services: Map<string, ServiceCountersView>;
}

/** Removes a pod's entry and hands its history ring back to the pool. */
function dropPod(n: NodeEntry, pod: string): void {
  const e = n.pods.get(pod);
  if (e === undefined) return;
  e.history.release();
  n.pods.delete(pod);
}

export class UsageStore {
  private readonly nodes = new Map<string, NodeEntry>();
  /** Nodes whose last report had service counters (a scrape walks these, not every node). */
  private readonly withServices = new Set<string>();
  private readonly podListeners = new Set<(node: string) => void>();
  /** Every history ring of this store, in shared slabs (RingPool): a ring goes back when its series goes. */
  private readonly rings: RingPool;

  constructor(private readonly o: UsageStoreOptions) {
    this.rings = new RingPool(o.historySize ?? 60, o.historyStepMs ?? 60_000);
  }

  /** One valid usage message of `m.node` (already checked against its topic; the short form's usage filled in by NodeIntake). */
  ingest(m: NodeUsageReport): void {
    const at = this.o.now();
    let n = this.nodes.get(m.node);
    if (n === undefined) {
      n = { cpuPercent: 0, memoryUsedBytes: 0, at, pods: new Map(), history: this.rings.ring(), services: new Map() };
      this.nodes.set(m.node, n);
    }
    n.cpuPercent = m.usage.cpuPercent;
    n.memoryUsedBytes = m.usage.memoryUsedBytes;
    n.at = at;
    n.history.push(at, m.usage.cpuPercent / 100, m.usage.memoryUsedBytes);
    if (m.full === true) {
      for (const p of n.pods.keys()) if (m.pods === undefined || !Object.hasOwn(m.pods, p)) dropPod(n, p);
    }
    for (const p of m.gone ?? []) dropPod(n, p);
    if (m.services !== undefined) {
      const node = m.node;
      n.services = new Map();
      for (const [service, c] of Object.entries(m.services)) {
        if (this.o.serviceExists !== undefined && !this.o.serviceExists(service)) continue;
        n.services.set(service, { node, service, replays: c.replays, at });
      }
      if (n.services.size > 0) this.withServices.add(node);
      else this.withServices.delete(node);
    }
    for (const [pod, containers] of Object.entries(m.pods ?? {})) {
      let e = n.pods.get(pod);
      if (e === undefined) {
        if (this.o.podOnNode !== undefined && !this.o.podOnNode(m.node, pod)) continue;
        if (n.pods.size >= MAX_PODS_PER_NODE) continue;
        e = { node: m.node, pod, containers: new Map(), history: this.rings.ring() };
        n.pods.set(pod, e);
      }
      if (m.full === true) for (const c of e.containers.keys()) if (!Object.hasOwn(containers, c)) e.containers.delete(c);
      for (const [name, [cpuSeconds, memoryBytes]] of Object.entries(containers)) {
        const prev = e.containers.get(name);
        const dt = prev === undefined ? 0 : (at - prev.at) / 1000;
        let cpuCores: number | undefined;
        let windowStart: number | undefined;
        if (prev !== undefined && cpuSeconds >= prev.cpuSeconds) {
          cpuCores = dt > 0 ? (cpuSeconds - prev.cpuSeconds) / dt : prev.cpuCores;
          windowStart = dt > 0 ? prev.at : prev.windowStart;
        }
        e.containers.set(name, { cpuSeconds, memoryBytes, cpuCores, at, ...(windowStart !== undefined ? { windowStart } : {}) });
      }
      let cpu = 0;
      let mem = 0;
      for (const c of e.containers.values()) {
        cpu += c.cpuCores ?? 0;
        mem += c.memoryBytes;
      }
      e.history.push(at, cpu, mem);
    }
    if (m.full === true || (m.gone !== undefined && m.gone.length > 0) || (m.pods !== undefined && Object.keys(m.pods).length > 0)) this.podsChanged(m.node);
  }

  forgetNode(node: string): void {
    this.withServices.delete(node);
    const n = this.nodes.get(node);
    if (n === undefined) return;
    for (const e of n.pods.values()) e.history.release();
    n.history.release();
    this.nodes.delete(node);
    this.podsChanged(node);
  }

  /**
   * Calls `fn(node)` after every change to a node's pod entries (an ingest with pods, `gone` or a
   * full refresh; `forgetNode`), synchronously. Returns the unsubscribe.
   */
  onPodsChanged(fn: (node: string) => void): () => void {
    this.podListeners.add(fn);
    return () => void this.podListeners.delete(fn);
  }

  /** Names of the nodes with usage, in the order they first reported (the scrape's order). */
  nodeNames(): IterableIterator<string> {
    return this.nodes.keys();
  }

  /** One node's pod entries (in the order they first reported), or undefined for a node without usage. */
  podsOf(node: string): Iterable<PodUsage> | undefined {
    return this.nodes.get(node)?.pods.values();
  }

  private podsChanged(node: string): void {
    for (const fn of this.podListeners) fn(node);
  }

  /** Every node's usage as it last reported, in the order they first reported (the scrape: no walk of the store's nodes). */
  nodeUsages(): IterableIterator<[string, Readonly<{ cpuPercent: number; memoryUsedBytes: number }>]> {
    return this.nodes.entries();
  }

  node(name: string): { cpuPercent: number; memoryUsedBytes: number; at: number } | undefined {
    const n = this.nodes.get(name);
    return n === undefined ? undefined : { cpuPercent: n.cpuPercent, memoryUsedBytes: n.memoryUsedBytes, at: n.at };
  }

  /** Containers of `pod` on `node` as last reported, or undefined. */
  pod(node: string, pod: string): ReadonlyMap<string, ContainerUsageView> | undefined {
    return this.nodes.get(node)?.pods.get(pod)?.containers;
  }

  /**
   * Every node's counters for `service` (or for every service), node by node. A service deleted
   * since a node's last report is dropped here, at read time: the node's next report (which
   * comes only when its counters change) would otherwise leave its series on /metrics.
   */
  *serviceCounters(service?: string): Generator<ServiceCountersView> {
    const exists = this.o.serviceExists;
    // Only the nodes with counters: a walk of every node cost ≈ 10 ms a scrape at 10,000 nodes.
    for (const name of this.withServices) {
      const n = this.nodes.get(name);
      if (n === undefined) {
        this.withServices.delete(name);
        continue;
      }
      if (service === undefined) {
        for (const [name, c] of n.services) {
          if (exists !== undefined && !exists(name)) n.services.delete(name);
          else yield c;
        }
      } else {
        const c = n.services.get(service);
        if (c === undefined) continue;
        if (exists !== undefined && !exists(service)) n.services.delete(service);
        else yield c;
      }
      if (n.services.size === 0) this.withServices.delete(name);
    }
  }

  nodeHistory(node: string): RingPoint[] {
    return this.nodes.get(node)?.history.points(this.o.now()) ?? [];
  }

  podHistory(node: string, pod: string): RingPoint[] {
    return this.nodes.get(node)?.pods.get(pod)?.history.points(this.o.now()) ?? [];
  }

  /**
   * Series held and the bytes of their history rings (bounded: tests and /metrics); `rings` counts
   * the rings handed out and not released (one per series, or one leaked), `slabBytes` what their
   * slabs hold, free places included.
   */
  stats(): { nodes: number; pods: number; historyBytes: number; rings: number; slabBytes: number } {
    let pods = 0;
    for (const n of this.nodes.values()) pods += n.pods.size;
    // Every ring has this store's size and step, so the same bytes (each scrape reads this: no walk over 100,000 pods).
    return {
      nodes: this.nodes.size,
      pods,
      historyBytes: (this.nodes.size + pods) * this.rings.ringBytes,
      rings: this.rings.rings,
      slabBytes: this.rings.slabBytes,
    };
  }
}
