import { systemClock, type Clock } from '../../protocol/clock.js';
import type { NodeUsageReport, ObservedSetMessage } from '../../protocol/messages.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { NodeIntake } from './node-intake.js';
import { NodeLiveness } from './node-liveness.js';
import { ingestObservedSet } from './node-observed.js';
import { registerNodeStatus } from './node-registration.js';

export interface NodeControllerOptions {
  store: Store;
  log: Logger;
  now: () => Date;
  /** Runs the liveness sweep and the batch timers (default the system clock). */
  clock?: Clock;
  /** A node silent for this long is NotReady (default 40 s: four missed 10 s heartbeats). */
  heartbeatGraceMs?: number;
  /** Heartbeats are kept in memory; the store gets them at most this often per node (SQLite/SD wear). */
  persistHeartbeatEveryMs?: number;
  /** NodeLivenessOptions.returnsOver: the startup grace is over (hub.ts wires NodeLostController.graceOver). */
  returnsOver?: (t: number) => boolean;
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
  /** Also handed every valid usage message (the hub's UsageStore, issue 16 metrics); must not throw. */
  onUsage?: (m: NodeUsageReport) => void;
  /**
   * The authoritative labels a node was enrolled with (its join token's: AuthStore.enrolledLabels),
   * seeded as overrides when its Node is created, so its own reports can never change them.
   */
  enrolledLabels?: (node: string) => Readonly<Record<string, string>> | undefined;
  /**
   * Whether `node` holds a credential now (the hub wires AuthStore.hasNode): a status for a name
   * without a Node and without a credential is dropped, never registered (node-registration.ts).
   */
  isEnrolled?: (node: string) => boolean;
}

/**
 * Ingests what agents report (status, usage, observed pods, presence) into the store and runs
 * node lifecycle. It only wires its parts: NodeIntake (arrival, validation, batching),
 * registerNodeStatus (status → Node), ingestObservedSet (observed set → pod status, through the
 * pure podStatusFromReport) and NodeLiveness (heartbeats, Ready/NotReady, the sweep).
 */
export class NodeController {
  private readonly intake: NodeIntake;
  private readonly liveness: NodeLiveness;

  constructor(o: NodeControllerOptions) {
    const clock = o.clock ?? systemClock;
    this.liveness = new NodeLiveness({
      ...o,
      clock,
      queuedSince: (node) => this.intake.queuedSince(node),
      arrivedAt: () => this.intake.arrivalOfCurrent(),
    });
    this.intake = new NodeIntake({
      ...o,
      clock,
      handlers: {
        status: (m) => {
          if (registerNodeStatus(o, m)) this.liveness.reported(m.node);
        },
        usage: (m) => {
          this.liveness.heartbeat(m.node, m.usage);
          o.onUsage?.(m);
        },
        observed: (m) => {
          this.liveness.seen(m.node);
          ingestObservedSet(o.store, m, o.now);
          o.onObservedSet?.(m);
        },
        presence: (node, online) => (online ? this.liveness.heartbeat(node) : this.liveness.disconnected(node)),
      },
    });
  }

  /** Messages dropped as invalid (for tests and metrics). */
  get rejected(): number {
    return this.intake.rejected;
  }

  start(): void {
    this.liveness.start();
  }

  /** Stops the sweep and ingests what is still queued. */
  stop(): void {
    this.liveness.stop();
    this.intake.flush();
  }

  /** Entry point for every message on `orchard/v1/nodes/+/{status,usage,observed,presence}` (NodeIntake.handle). */
  handle(topic: string, payload: Buffer): void {
    this.intake.handle(topic, payload);
  }

  /** Messages waiting to be ingested, and the longest wait since the last call (ms). */
  /** Messages waiting to be ingested (no side effect: /metrics reads it). */
  get queued(): number {
    return this.intake.queued;
  }

  backlog(): { queued: number; maxLagMs: number } {
    return this.intake.backlog();
  }

  /**
   * Forgets `node` (call after its credential was revoked and its Node deleted): drops its
   * messages still waiting in the batch, so none of them is ingested after the delete, and what
   * liveness remembers of it. Reports already past the broker that arrive later are dropped by
   * `isEnrolled`.
   */
  forget(node: string): number {
    this.liveness.forget(node);
    return this.intake.drop(node);
  }

  /** Ingests the queued messages now (NodeIntake.flush). */
  flush(all = true): void {
    this.intake.flush(all);
  }

  /** When a node was first heard from since this hub started, the latest such time (NodeLiveness.lastReturnAt). */
  lastReturnAt(): number | undefined {
    return this.liveness.lastReturnAt();
  }

  /** Marks nodes NotReady whose heartbeats stopped. Also called by tests with fake clocks. */
  sweep(): void {
    this.liveness.sweep();
  }
}
