import { API_VERSION } from '../../protocol/manifest.js';
import {
  decodeMessage,
  NodeStatusMessageSchema,
  NodeUsageMessageSchema,
  ObservedSetMessageSchema,
  PresenceMessageSchema,
  type NodeStatusMessage,
  type ObservedPod,
  type ObservedSetMessage,
} from '../../protocol/messages.js';
import type { NodeCondition, NodeObject, Pod, PodStatus } from '../../protocol/objects.js';
import { parseTopic } from '../../protocol/topics.js';
import { recordEvent } from '../events.js';
import { deepEqual } from '../hash.js';
import { applyUserLabels, nodeReportedLabels, seedOverrides } from '../node-labels.js';
import type { Logger } from '../log.js';
import { setCondition } from '../objects/conditions.js';
import { isNodeReady as isReady } from '../objects/node.js';
import type { Store } from '../store/store.js';
import { markPodsNodeLost } from './node-lost-status.js';

export interface NodeControllerOptions {
  store: Store;
  log: Logger;
  now: () => Date;
  /** A node silent for this long is NotReady (default 40 s: four missed 10 s heartbeats). */
  heartbeatGraceMs?: number;
  /** Heartbeats are kept in memory; the store gets them at most this often per node (SQLite/SD wear). */
  persistHeartbeatEveryMs?: number;
  maxPodsPerNode?: number;
  /**
   * Coalesce the messages arriving within this window into ONE store transaction (one fsync
   * instead of one per message: at 10,000 nodes the commits were a third of the hub's CPU).
   * Each message still runs in its own nested transaction, so a bad one is dropped alone.
   * Unset or 0: every message is ingested at once, synchronously (tests assert right after).
   */
  batchMs?: number;
  /**
   * Also handed every valid observed set, after the controller's own ingest and in the same
   * transaction (the hub records volume status with it). One decode serves both: a second
   * broker subscriber had to parse, and inflate, every set again. An error it throws is logged
   * (the controller's own writes for the set stay).
   */
  onObservedSet?: (m: ObservedSetMessage) => void;
  /**
   * The authoritative labels a node was enrolled with (its join token's: AuthStore.enrolledLabels),
   * seeded as overrides when its Node is created, so its own reports can never change them.
   */
  enrolledLabels?: (node: string) => Readonly<Record<string, string>> | undefined;
}

/**
 * Ingests what agents report (status, usage, observed pods, presence) into the store and
 * runs node lifecycle: Ready on report, NotReady at once on last-will or after a silent grace.
 * Every message is validated; a bad one is logged and dropped — it never throws into the broker.
 */
/** Most messages one batched transaction takes (≈ 0.1–1 ms each). */
const MAX_BATCH = 200;
/** A timer-driven flush ingests chunks for up to this long before it yields to the event loop. */
const FLUSH_SLICE_MS = 20;

export class NodeController {
  private readonly lastSeen = new Map<string, number>();
  private readonly lastPersisted = new Map<string, number>();
  private sweepTimer: NodeJS.Timeout | undefined;
  /** Queued messages, each with its topic parsed once (on arrival) and its arrival time. */
  private batch: Array<{ topic: string; parsed: ReturnType<typeof parseTopic>; payload: Buffer; at: number; node: string | undefined }> = [];
  /**
   * Nodes with messages waiting in the batch: how many, and when the latest arrived. Until they
   * are ingested the node counts as heard at that time; once ingested, only what was valid
   * counts (lastSeen), so an agent whose every report is rejected is still declared lost.
   */
  private readonly waiting = new Map<string, { count: number; at: number }>();
  /** Longest wait of a message between arrival and ingest since the last read (bench, metrics). */
  private maxIngestLag = 0;
  private batchTimer: NodeJS.Timeout | undefined;
  /** Messages dropped as invalid (for tests and metrics). */
  rejected = 0;

  constructor(private readonly o: NodeControllerOptions) {}

  start(): void {
    const every = Math.max(250, Math.floor((this.o.heartbeatGraceMs ?? 40_000) / 4));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  stop(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.flush();
  }

  /**
   * Entry point for every message on `orchard/v1/nodes/+/{status,usage,observed,presence}`.
   * With `batchMs` the message is queued and ingested by the next flush(); without, at once.
   */
  handle(topic: string, payload: Buffer): void {
    const batchMs = this.o.batchMs ?? 0;
    const parsed = parseTopic(topic);
    if (batchMs <= 0) return this.ingest(topic, parsed, payload);
    const at = this.o.now().getTime();
    // Heard from = alive, whether or not the message has been ingested yet: under load the
    // batch can lag, and a node must not be declared lost for the hub's own backlog (fleet
    // bench: 3,400 of 10,000 nodes went NotReady mid-deploy while they kept reporting). Not for
    // presence: an offline presence is the broker publishing the node's last will.
    const node = parsed?.type === 'node' && parsed.channel !== 'presence' ? parsed.node : undefined;
    if (node !== undefined) {
      const w = this.waiting.get(node);
      if (w === undefined) this.waiting.set(node, { count: 1, at });
      else {
        w.count++;
        w.at = at;
      }
    }
    this.batch.push({ topic, parsed, payload, at, node });
    this.batchTimer ??= setTimeout(() => this.flush(false), batchMs);
  }

  /** Messages waiting to be ingested, and the longest wait since the last call (ms). */
  backlog(): { queued: number; maxLagMs: number } {
    const r = { queued: this.batch.length, maxLagMs: this.maxIngestLag };
    this.maxIngestLag = 0;
    return r;
  }

  /**
   * Ingests the queued messages in arrival order, one store transaction per MAX_BATCH of them;
   * `all` (the default: tests, stop) takes every chunk at once, the timer only one, leaving the
   * event loop a turn between chunks (a reconnect storm queues thousands). Never throws.
   */
  flush(all = true): void {
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    // One chunk per turn fell behind while other work held the loop between turns (a 10,000-node
    // deploy queued tens of thousands of messages); a time slice keeps up and still yields.
    const t0 = performance.now();
    do this.flushChunk();
    while (this.batch.length > 0 && (all || performance.now() - t0 < FLUSH_SLICE_MS));
    if (this.batch.length > 0) this.batchTimer = setTimeout(() => this.flush(false), 0);
  }

  private flushChunk(): void {
    const batch = this.batch.length <= MAX_BATCH ? this.batch : this.batch.slice(0, MAX_BATCH);
    this.batch = this.batch.length <= MAX_BATCH ? [] : this.batch.slice(MAX_BATCH);
    if (batch.length === 0) return;
    const { store } = this.o;
    const lag = this.o.now().getTime() - (batch[0]?.at ?? 0);
    if (lag > this.maxIngestLag) this.maxIngestLag = lag;
    try {
      store.transaction(() => {
        // Each handler writes inside its own (here: nested, a savepoint) transaction and ingest()
        // catches what it throws, so a message that fails undoes only its own writes.
        for (const m of batch) this.ingest(m.topic, m.parsed, m.payload);
      });
    } catch (err) {
      // The commit itself failed (disk full, I/O): nothing of the batch was stored. Agents
      // report again (heartbeats, observed republish), so the next batch repairs it.
      this.o.log.error('failed to commit a batch of node messages', { messages: batch.length, err });
    } finally {
      // Processed (stored, dropped as invalid, or lost with a failed commit): from now on only
      // what was valid counts as heard.
      for (const m of batch) if (m.node !== undefined) this.ingested(m.node);
    }
  }

  private ingest(topic: string, t: ReturnType<typeof parseTopic>, payload: Buffer): void {
    if (!t || t.type !== 'node') return;
    const drop = (error: string): void => {
      this.rejected++;
      this.o.log.warn('dropped invalid node message', { topic, error });
    };
    try {
      switch (t.channel) {
        case 'status': {
          const r = decodeMessage(NodeStatusMessageSchema, payload);
          if (!r.ok) return drop(r.error);
          if (r.value.node !== t.node) return drop(`node "${r.value.node}" does not match topic`);
          return this.onStatus(r.value);
        }
        case 'usage': {
          const r = decodeMessage(NodeUsageMessageSchema, payload);
          if (!r.ok) return drop(r.error);
          if (r.value.node !== t.node) return drop(`node "${r.value.node}" does not match topic`);
          return this.onHeartbeat(t.node, r.value.usage);
        }
        case 'observed': {
          const r = decodeMessage(ObservedSetMessageSchema, payload);
          if (!r.ok) return drop(r.error);
          if (r.value.node !== t.node) return drop(`node "${r.value.node}" does not match topic`);
          this.onObserved(r.value);
          // What it throws is caught and logged below, like any failed ingest.
          return this.o.onObservedSet?.(r.value);
        }
        case 'presence': {
          if (payload.length === 0) return; // a cleared retained message
          const r = decodeMessage(PresenceMessageSchema, payload);
          if (!r.ok) return drop(r.error);
          if (r.value.node !== t.node) return drop(`node "${r.value.node}" does not match topic`);
          if (!r.value.online) this.setReady(t.node, false, 'AgentDisconnected', 'the agent disconnected (MQTT last will)');
          else this.onHeartbeat(t.node);
          return;
        }
        default:
          return;
      }
    } catch (err) {
      // A store conflict or fault must not take the broker down; the next report retries.
      this.o.log.error('failed to ingest node message', { topic, err });
    }
  }

  private onStatus(m: NodeStatusMessage): void {
    const { store, now } = this.o;
    const ts = now().toISOString();
    const capacity = { cpuMillis: m.info.cpu.cores * 1000, memoryBytes: m.info.memoryBytes, pods: this.o.maxPodsPerNode ?? 110 };
    // What the node says about itself goes under node.orchard.dev/ only (hub/node-labels.ts).
    const own = nodeReportedLabels(m.labels);
    if (own.dropped.length > 0) this.o.log.warn('dropped node-reported labels outside node.orchard.dev/', { node: m.node, keys: own.dropped });
    const labels = { ...own.labels, 'orchard.dev/arch': m.info.arch, 'orchard.dev/hostname': m.node };
    const memCond: NodeCondition = m.info.engine.memoryLimit
      ? { type: 'MemoryLimitUnsupported', status: 'False', lastTransitionTime: ts }
      : { type: 'MemoryLimitUnsupported', status: 'True', reason: 'NoMemoryCgroup', message: 'the engine cannot enforce memory limits (memory cgroup disabled; add cgroup_enable=memory to the kernel command line)', lastTransitionTime: ts };
    store.transaction(() => {
      const existing = store.get('Node', m.node);
      if (!existing) {
        const annotations = seedOverrides({}, this.o.enrolledLabels?.(m.node) ?? {});
        store.create({
          apiVersion: API_VERSION,
          kind: 'Node',
          metadata: { name: m.node, labels: applyUserLabels(labels, annotations), annotations },
          spec: { unschedulable: false, taints: [] },
          status: { info: m.info, capacity, conditions: agentConditions(m, [readyCondition(true, ts), memCond], ts), lastHeartbeatTime: ts },
        });
        recordEvent(store, now(), { kind: 'Node', name: m.node, type: 'Normal', reason: 'Registered', message: `node registered (${m.info.arch}, ${m.info.cpu.cores} cpu, engine ${m.info.engine.name} ${m.info.engine.version})` });
      } else {
        const next = structuredClone(existing) as NodeObject;
        // Recomputed from this report, the hub's facts and the authoritative overrides (token,
        // users): a label the node stops reporting goes, one it never had a say in stays.
        next.metadata.labels = applyUserLabels(labels, existing.metadata.annotations);
        next.status.info = m.info;
        next.status.capacity = capacity;
        next.status.conditions = agentConditions(m, setCondition(next.status.conditions, memCond, ts), ts);
        // A node's hardware does not double overnight: flag it (a node may lie to attract pods).
        const sharp = existing.status.capacity !== undefined ? sharpCapacityChange(existing.status.capacity, capacity) : undefined;
        const prevChanged = existing.status.conditions.find((c) => c.type === 'CapacityChanged');
        if (sharp !== undefined) {
          const message = `capacity changed sharply between two reports: ${sharp}; check the device (a node may misreport to attract pods)`;
          // A new sharp change restarts the warning's window: drop the old condition, then set it anew.
          next.status.conditions = setCondition(next.status.conditions.filter((c) => c.type !== 'CapacityChanged'), { type: 'CapacityChanged' as const, status: 'True' as const, reason: 'SharpChange', message, lastTransitionTime: ts }, ts);
          recordEvent(store, now(), { kind: 'Node', name: m.node, type: 'Warning', reason: 'CapacityChanged', message });
          this.o.log.warn('node capacity changed sharply', { node: m.node, change: sharp });
        } else if (prevChanged?.status === 'True' && now().getTime() - Date.parse(prevChanged.lastTransitionTime ?? ts) >= CAPACITY_WARNING_MS) {
          next.status.conditions = setCondition(next.status.conditions, { type: 'CapacityChanged', status: 'False', reason: 'Stable', message: `no sharp change for ${CAPACITY_WARNING_MS / 3_600_000} h`, lastTransitionTime: ts }, ts);
        }
        next.status.lastHeartbeatTime = ts;
        const wasReady = isReady(existing);
        next.status.conditions = setCondition(next.status.conditions, readyCondition(true, ts), ts);
        if (!deepEqual(stripTimes(existing), stripTimes(next))) store.update(next);
        if (!wasReady) recordEvent(store, now(), { kind: 'Node', name: m.node, type: 'Normal', reason: 'NodeReady', message: 'node is Ready (agent reported status)' });
      }
    });
    this.lastSeen.set(m.node, now().getTime());
    this.lastPersisted.set(m.node, now().getTime());
  }

  private onHeartbeat(node: string, usage?: NodeObject['status']['usage']): void {
    const { store, now } = this.o;
    const t = now().getTime();
    this.lastSeen.set(node, t);
    const existing = store.get('Node', node);
    if (!existing) return; // status (with facts) registers a node; a heartbeat alone does not
    const ready = isReady(existing);
    const due = t - (this.lastPersisted.get(node) ?? 0) >= (this.o.persistHeartbeatEveryMs ?? 30_000);
    if (ready && !due) return;
    const next = structuredClone(existing) as NodeObject;
    const ts = now().toISOString();
    if (usage) next.status.usage = usage;
    next.status.lastHeartbeatTime = ts;
    if (!ready) next.status.conditions = setCondition(next.status.conditions, readyCondition(true, ts), ts);
    store.transaction(() => {
      store.update(next);
      if (!ready) recordEvent(store, now(), { kind: 'Node', name: node, type: 'Normal', reason: 'NodeReady', message: 'node is Ready again' });
    });
    this.lastPersisted.set(node, t);
  }

  private onObserved(m: ObservedSetMessage): void {
    const { store } = this.o;
    this.lastSeen.set(m.node, this.o.now().getTime());
    store.transaction(() => {
      const node = store.get('Node', m.node);
      if (node && node.status.observedGeneration !== m.generation) {
        const next = structuredClone(node) as NodeObject;
        next.status.observedGeneration = m.generation;
        store.update(next);
      }
      for (const op of m.pods) {
        const pod = store.get('Pod', op.name);
        // Only the pod this node was given: same uid, bound here. Anything else is stale news.
        if (!pod || pod.metadata.uid !== op.uid || pod.spec.nodeName !== m.node) continue;
        const status = toPodStatus(pod, op, node, this.o.now().toISOString());
        if (deepEqual(pod.status, status)) continue;
        const next = structuredClone(pod) as Pod;
        next.status = status;
        store.update(next);
        const prev = pod.status.containerStatuses;
        for (const c of status.containerStatuses) {
          const before = prev.find((x) => x.name === c.name);
          if (before && c.restartCount > before.restartCount) {
            recordEvent(store, this.o.now(), { kind: 'Pod', name: pod.metadata.name, type: 'Warning', reason: 'Restarted', message: `container ${c.name} restarted (exit code ${c.exitCode ?? 'unknown'}${c.reason ? `, ${c.reason}` : ''})` });
          }
          if (c.reason === 'ErrImagePull' && before?.reason !== 'ErrImagePull') {
            recordEvent(store, this.o.now(), { kind: 'Pod', name: pod.metadata.name, type: 'Warning', reason: 'ErrImagePull', message: c.message ?? `cannot pull ${c.image}` });
          }
          // The device refused a mount whose host path leads out of its volume (a symbolic link): worth an audit trail.
          if (c.reason === 'VolumePathEscape' && before?.reason !== 'VolumePathEscape') {
            recordEvent(store, this.o.now(), { kind: 'Pod', name: pod.metadata.name, type: 'Warning', reason: 'VolumePathEscape', message: c.message ?? `container ${c.name}: a volume path leads outside its volume` });
          }
          // The node refused the pod's security settings (device policy, runAsNonRoot): say so once.
          if ((c.reason === 'Forbidden' || c.reason === 'CreateContainerConfigError') && (before?.reason !== c.reason || before.message !== c.message)) {
            recordEvent(store, this.o.now(), { kind: 'Pod', name: pod.metadata.name, type: 'Warning', reason: c.reason, message: `container ${c.name} on ${m.node}: ${c.message ?? c.reason}` });
          }
        }
        // No Event for a pod turning Running: the pod's own status says it (with startTime), and at
        // fleet scale one Event per pod doubled the writes of a deploy and held 100,000 objects.
        if (pod.status.phase !== status.phase && (status.phase === 'Failed' || status.phase === 'Succeeded')) {
          recordEvent(store, this.o.now(), { kind: 'Pod', name: pod.metadata.name, type: status.phase === 'Failed' ? 'Warning' : 'Normal', reason: status.phase, message: `pod is ${status.phase} on ${m.node}` });
        }
      }
    });
  }

  private ingested(node: string): void {
    const w = this.waiting.get(node);
    if (w === undefined) return;
    if (--w.count <= 0) this.waiting.delete(node);
  }

  /** Marks nodes NotReady whose heartbeats stopped. Also exported for tests with fake clocks. */
  sweep(): void {
    const { store, now } = this.o;
    const t = now().getTime();
    const grace = this.o.heartbeatGraceMs ?? 40_000;
    for (const n of store.list('Node')) {
      if (!isReady(n)) continue;
      const seen = this.lastSeen.get(n.metadata.name);
      if (seen === undefined) {
        // Hub restarted: give every node one grace period to report in.
        this.lastSeen.set(n.metadata.name, t);
        continue;
      }
      const heard = Math.max(seen, this.waiting.get(n.metadata.name)?.at ?? seen);
      if (t - heard > grace) this.setReady(n.metadata.name, false, 'NodeStatusUnknown', `no heartbeat for ${Math.round((t - heard) / 1000)}s`);
    }
  }

  private setReady(node: string, ready: boolean, reason: string, message: string): void {
    const { store, now } = this.o;
    const existing = store.get('Node', node);
    if (!existing || isReady(existing) === ready) return;
    const ts = now().toISOString();
    const next = structuredClone(existing) as NodeObject;
    next.status.conditions = setCondition(next.status.conditions, { ...readyCondition(ready, ts), reason, message }, ts);
    store.transaction(() => {
      store.update(next);
      recordEvent(store, now(), { kind: 'Node', name: node, type: ready ? 'Normal' : 'Warning', reason: ready ? 'NodeReady' : 'NodeNotReady', message });
      // Pods there are Unknown / not Ready until the agent's next observed set says otherwise.
      if (!ready) markPodsNodeLost(store, node, now(), message);
    });
    this.o.log.info(`node ${node} is ${ready ? 'Ready' : 'NotReady'}`, { reason });
  }
}

/** How long CapacityChanged stays True after a sharp change (cleared by the first report after). */
export const CAPACITY_WARNING_MS = 24 * 3_600_000;

/**
 * "cpu 4 → 64" when CPU or memory more than doubled or fell below half between two reports,
 * else undefined. Pure.
 */
export function sharpCapacityChange(before: { cpuMillis: number; memoryBytes: number }, after: { cpuMillis: number; memoryBytes: number }): string | undefined {
  const sharp = (a: number, b: number): boolean => a > 0 && (b > 2 * a || b < a / 2);
  const gib = (n: number): string => `${Math.round((n / 1024 ** 3) * 10) / 10}Gi`;
  const parts: string[] = [];
  if (sharp(before.cpuMillis, after.cpuMillis)) parts.push(`cpu ${before.cpuMillis / 1000} → ${after.cpuMillis / 1000}`);
  if (sharp(before.memoryBytes, after.memoryBytes)) parts.push(`memory ${gib(before.memoryBytes)} → ${gib(after.memoryBytes)}`);
  return parts.length > 0 ? parts.join(', ') : undefined;
}

function readyCondition(ready: boolean, ts: string): NodeCondition {
  return ready
    ? { type: 'Ready', status: 'True', reason: 'AgentReporting', message: 'the agent is connected and reporting', lastTransitionTime: ts }
    : { type: 'Ready', status: 'False', lastTransitionTime: ts };
}

/** Merges the conditions the agent detects itself (DiskPressure from image GC) into the node's. */
function agentConditions(m: NodeStatusMessage, list: NodeCondition[], ts: string): NodeCondition[] {
  let out = list;
  for (const c of m.conditions ?? []) if (c.type === 'DiskPressure') out = setCondition(out, { ...c, lastTransitionTime: ts }, ts);
  return out;
}

function stripTimes(n: NodeObject): unknown {
  return { labels: n.metadata.labels, info: n.status.info, capacity: n.status.capacity, conditions: n.status.conditions.map((c) => ({ ...c, lastTransitionTime: undefined })) };
}

function toPodStatus(pod: Pod, op: ObservedPod, node: NodeObject | undefined, ts: string): PodStatus {
  // The agent's conditions replace the pod's, except PodScheduled (the hub's own); Ready from
  // `op.ready` when the agent sent none. Each keeps its lastTransitionTime while its status is
  // unchanged (rollouts count minReadySeconds from Ready's).
  const reported = op.conditions.filter((c) => c.type !== 'PodScheduled');
  if (!reported.some((c) => c.type === 'Ready')) reported.push({ type: 'Ready', status: op.ready ? 'True' : 'False' });
  let conditions = pod.status.conditions.filter((c) => c.type === 'PodScheduled' || reported.some((r) => r.type === c.type));
  for (const c of reported) conditions = setCondition(conditions, c, ts);
  const status: PodStatus = { phase: op.phase, conditions, containerStatuses: op.containers };
  if (op.pull !== undefined) status.pull = op.pull;
  if (op.reason !== undefined) status.reason = op.reason;
  if (op.message !== undefined) status.message = op.message;
  if (op.startTime !== undefined) status.startTime = op.startTime;
  const ip = node?.status.info?.addresses[0];
  if (ip !== undefined) status.hostIP = ip;
  return status;
}
