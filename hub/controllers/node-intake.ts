import type { Clock, TimerHandle } from '../../protocol/clock.js';
import { decodeMessage } from '../../protocol/messages.js';
import {
  NodeStatusMessageSchema,
  NodeUsageMessageSchema,
  ObservedSetMessageSchema,
  PresenceMessageSchema,
  type NodeStatusMessage,
  type NodeUsageMessage,
  type NodeUsageReport,
  type ObservedSetMessage,
} from '../../protocol/reports.js';
import { parseTopic } from '../../protocol/topics.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';

/** What the intake hands on: one call per valid message, its node already checked against the topic. */
export interface NodeMessageHandlers {
  status(m: NodeStatusMessage): void;
  /**
   * `message` whole (per-pod usage rides along, issue 16 metrics), its node from the topic and its
   * usage filled in from the node's last when the short form (usage-delta) left it out.
   */
  usage(message: NodeUsageReport): void;
  /** What it throws is caught and logged like any failed ingest (writes of the message undone when batched). */
  observed(m: ObservedSetMessage): void;
  presence(node: string, online: boolean): void;
}

export interface NodeIntakeOptions {
  store: Store;
  log: Logger;
  /** Arrival times (heard-at, ingest lag). */
  now: () => Date;
  /** Runs the batch timers. */
  clock: Clock;
  /**
   * Coalesce the messages arriving within this window into ONE store transaction (one fsync
   * instead of one per message: at 10,000 nodes the commits were a third of the hub's CPU).
   * Each message still runs in its own nested transaction, so a bad one is dropped alone.
   * Unset or 0: every message is ingested at once, synchronously (tests assert right after).
   */
  batchMs?: number;
  handlers: NodeMessageHandlers;
}

/** Most messages one batched transaction takes (≈ 0.1–1 ms each). */
const MAX_BATCH = 200;
/** A timer-driven flush ingests chunks for up to this long before it yields to the event loop. */
const FLUSH_SLICE_MS = 20;

type Queued = { topic: string; parsed: ReturnType<typeof parseTopic>; payload: Buffer; at: number; node: string | undefined };

/**
 * MQTT intake of the node channels: topic parse, decode and validation (a bad message is counted,
 * logged and dropped — it never throws into the broker), batching into one store transaction,
 * and the backlog accounting liveness needs (`queuedSince`). Messages are handled in arrival order.
 */
export class NodeIntake {
  /** Queued messages, each with its topic parsed once (on arrival) and its arrival time. */
  private batch: Queued[] = [];
  /**
   * Nodes with messages waiting in the batch: how many, and when the latest arrived. Until they
   * are ingested the node counts as heard at that time; once ingested, only what was valid
   * counts (NodeLiveness), so an agent whose every report is rejected is still declared lost.
   */
  private readonly waiting = new Map<string, { count: number; at: number }>();
  /** `at` of the message whose handler runs now (arrivalOfCurrent). */
  private handling: number | undefined;
  /** Longest wait of a message between arrival and ingest since the last read (bench, metrics). */
  private maxIngestLag = 0;
  private batchTimer: TimerHandle | undefined;
  /** Messages dropped as invalid (for tests and metrics). */
  rejected = 0;
  /** Per node, the last usage it sent whole: the short form's heartbeats without usage repeat it. */
  private readonly lastUsage = new Map<string, NodeUsageMessage['usage'] & object>();

  constructor(private readonly o: NodeIntakeOptions) {}

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
    this.batchTimer ??= this.o.clock.setTimeout(() => this.flush(false), batchMs);
  }

  /** Drops every message of `node` still waiting to be ingested (the node was deleted); returns how many. */
  drop(node: string): number {
    this.lastUsage.delete(node);
    const before = this.batch.length;
    this.batch = this.batch.filter((m) => !(m.parsed?.type === 'node' && m.parsed.node === node));
    this.waiting.delete(node);
    return before - this.batch.length;
  }

  /** Arrival time of `node`'s latest message still waiting to be ingested (a presence never counts). */
  queuedSince(node: string): number | undefined {
    return this.waiting.get(node)?.at;
  }

  /** Messages waiting to be ingested, and the longest wait since the last call (ms). */
  /** Messages waiting to be ingested (no side effect, unlike backlog()). */
  get queued(): number {
    return this.batch.length;
  }

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
    if (this.batchTimer !== undefined) this.o.clock.clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    // One chunk per turn fell behind while other work held the loop between turns (a 10,000-node
    // deploy queued tens of thousands of messages); a time slice keeps up and still yields.
    // The slice measures work done, not the time of day: performance.now(), not the clock.
    const t0 = performance.now();
    do this.flushChunk();
    while (this.batch.length > 0 && (all || performance.now() - t0 < FLUSH_SLICE_MS));
    if (this.batch.length > 0) this.batchTimer = this.o.clock.setTimeout(() => this.flush(false), 0);
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
        for (const m of batch) {
          this.handling = m.at;
          this.ingest(m.topic, m.parsed, m.payload);
        }
      });
    } catch (err) {
      // The commit itself failed (disk full, I/O): nothing of the batch was stored. Agents
      // report again (heartbeats, observed republish), so the next batch repairs it.
      this.o.log.error('failed to commit a batch of node messages', { messages: batch.length, err });
    } finally {
      this.handling = undefined;
      // Processed (stored, dropped as invalid, or lost with a failed commit): from now on only
      // what was valid counts as heard.
      for (const m of batch) if (m.node !== undefined) this.ingested(m.node);
    }
  }

  /**
   * When the message being handled arrived (its handler runs inside the batch, possibly long after
   * under a backlog); undefined outside a handler.
   */
  arrivalOfCurrent(): number | undefined {
    return this.handling;
  }

  private ingested(node: string): void {
    const w = this.waiting.get(node);
    if (w === undefined) return;
    if (--w.count <= 0) this.waiting.delete(node);
  }

  /**
   * The message with its node and its node usage: as sent, or (short form, usage unchanged) the
   * node's last usage at this message's time; a usage sent without `diskFreeBytes` keeps the last.
   */
  private withUsage(node: string, m: NodeUsageMessage): NodeUsageReport | undefined {
    const last = this.lastUsage.get(node);
    let usage = m.usage;
    if (usage === undefined) {
      if (last === undefined) return undefined;
      usage = { ...last, at: m.at ?? last.at };
    } else if (usage.diskFreeBytes === undefined && last?.diskFreeBytes !== undefined) usage = { ...usage, diskFreeBytes: last.diskFreeBytes };
    this.lastUsage.set(node, usage);
    return { ...m, node, usage };
  }

  private ingest(topic: string, t: ReturnType<typeof parseTopic>, payload: Buffer): void {
    if (!t || t.type !== 'node') return;
    const h = this.o.handlers;
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
          return h.status(r.value);
        }
        case 'usage': {
          const r = decodeMessage(NodeUsageMessageSchema, payload);
          if (!r.ok) return drop(r.error);
          if (r.value.node !== undefined && r.value.node !== t.node) return drop(`node "${r.value.node}" does not match topic`);
          const report = this.withUsage(t.node, r.value);
          // A short heartbeat from a node whose usage this hub never got (a lost full report): proof of life only.
          if (report === undefined) return h.presence(t.node, true);
          return h.usage(report);
        }
        case 'observed': {
          const r = decodeMessage(ObservedSetMessageSchema, payload);
          if (!r.ok) return drop(r.error);
          if (r.value.node !== t.node) return drop(`node "${r.value.node}" does not match topic`);
          return h.observed(r.value);
        }
        case 'presence': {
          if (payload.length === 0) return; // a cleared retained message
          const r = decodeMessage(PresenceMessageSchema, payload);
          if (!r.ok) return drop(r.error);
          if (r.value.node !== t.node) return drop(`node "${r.value.node}" does not match topic`);
          return h.presence(t.node, r.value.online);
        }
        default:
          return;
      }
    } catch (err) {
      // A store conflict or fault must not take the broker down; the next report retries.
      this.o.log.error('failed to ingest node message', { topic, err });
    }
  }
}
