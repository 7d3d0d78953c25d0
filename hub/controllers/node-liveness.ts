import type { Clock, TimerHandle } from '../../protocol/clock.js';
import type { NodeCondition, NodeObject } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import type { Logger } from '../log.js';
import { setCondition } from '../objects/conditions.js';
import { hashString, mulberry32 } from '../scheduler/random.js';
import { isNodeReady as isReady } from '../objects/node.js';
import type { Store } from '../store/store.js';
import { markPodsNodeLost } from './node-lost-status.js';

export interface NodeLivenessOptions {
  store: Store;
  log: Logger;
  now: () => Date;
  /** Runs the sweep (start()). */
  clock: Clock;
  /** A node silent for this long is NotReady (default 40 s: four missed 10 s heartbeats). */
  heartbeatGraceMs?: number;
  /**
   * Heartbeats are kept in memory; the store gets them at most this often per node (SQLite/SD
   * wear). Default: 30 s, or longer in a large fleet so the whole fleet writes at most
   * PERSISTED_HEARTBEATS_PER_S node heartbeats per second (10,000 nodes: every 100 s).
   */
  persistHeartbeatEveryMs?: number;
  /**
   * When the latest message of `node` still waiting to be ingested arrived (NodeIntake), if any:
   * such a node counts as heard then, so the hub's own backlog never declares a node lost.
   */
  queuedSince?: (node: string) => number | undefined;
  /**
   * Nodes a sweep marks NotReady in one turn of the event loop (default 100); the rest follow in
   * later turns. Each mark is a store transaction (the node, an Event, its pods' status): 7,700 in
   * one turn stalled a 10,000-node leader on etcd for over 40 s, past its 15 s lease (issue 19).
   */
  maxMarksPerTurn?: number;
  /**
   * Whether the reconnect storm after the hub's start is over at `t` (NodeLostController.
   * graceOver): a node heard for the first time after that no longer moves `lastReturnAt`, so a
   * late or newly enrolled node cannot reopen a grace that already ended between two reconciles.
   * Until it is, a node marked NotReady keeps its pods' status (see `podMarksHeld`). Absent: no
   * grace, pods are marked with their node.
   */
  returnsOver?: (t: number) => boolean;
  /**
   * When the message being handled arrived (NodeIntake.arrivalOfCurrent), if known: a node's first
   * return counts from its arrival, not from when a backlog let the hub ingest it.
   */
  arrivedAt?: () => number | undefined;
}

/**
 * Fleet-wide budget of persisted heartbeats. Each is a whole Node write (JSON, structural
 * sharing, SQLite or etcd): at 10,000 nodes every 30 s they were ≈ 10 % of the hub's CPU in a
 * deploy's profile. kubelet likewise sends a node's status every 5 min when nothing changed
 * (nodeStatusReportFrequency) and proves life through a small Lease; here proof of life stays in
 * memory (lastSeen), and what the store loses is only the freshness of `lastHeartbeatTime` and
 * `status.usage`.
 */
export const PERSISTED_HEARTBEATS_PER_S = 100;

/**
 * Node lifecycle from proof of life: Ready on report, NotReady at once on last will or after a
 * silent grace (`sweep()`, every grace/4 on the clock), and then the node's pods are lost
 * (markPodsNodeLost). When a node was last heard lives in memory; the store gets a heartbeat at
 * most every `persistHeartbeatEveryMs`.
 */
export class NodeLiveness {
  private readonly lastSeen = new Map<string, number>();
  /** Nodes heard from (a message of their own, not a last will) since this hub started. */
  private readonly returned = new Set<string>();
  private lastReturn: number | undefined;
  /** When each node's heartbeat next goes to the store: the start of its next slot (nextSlot). */
  private readonly nextPersist = new Map<string, number>();
  private sweepTimer: TimerHandle | undefined;
  /** Silent nodes a sweep found but has not marked yet (more than one turn's worth), and the timer that goes on with them. */
  private silent: string[] = [];
  private drainTimer: TimerHandle | undefined;
  /**
   * Whether marking pods of NotReady nodes is held back: true from construction while the startup
   * grace holds (`returnsOver`). A node that goes NotReady then is marked, but its pods are left as
   * last reported. The first sweep that finds the grace over lets go: it queues every node that is
   * NotReady at that moment (in the store, so one a previous hub marked is included) in `podMarks`.
   *
   * Why (issue 19): after a hub restart or failover at 10,000 nodes thousands of agents are still
   * in their reconnect cycle when the 40 s silence runs out. Marking each one's pods is ten store
   * writes a node — on etcd 17 % of a new leader's CPU in the storm's profile — all undone by the
   * agent's next observed set, at the moment the hub needs its time for handshakes, and nothing can
   * use the marks yet: the grace holds every rescheduling, and endpoints, rollouts and the
   * scheduler read the node's own Ready condition. Kubernetes' node lifecycle controller likewise
   * marks nothing until its grace after its own start has passed.
   */
  private podMarksHeld: boolean;
  /** NotReady nodes whose pods are still to be marked now that the grace is over, a turn's worth at a time. */
  private podMarks: string[] = [];
  private podMarkTimer: TimerHandle | undefined;
  private running = false;

  constructor(private readonly o: NodeLivenessOptions) {
    this.podMarksHeld = o.returnsOver !== undefined;
  }

  /** Sweeps every grace/4 (at least every 250 ms) until stop(). */
  start(): void {
    const every = Math.max(250, Math.floor((this.o.heartbeatGraceMs ?? 40_000) / 4));
    this.running = true;
    // The Clock has no setInterval: re-arm first, so a sweep that throws still leaves the next one
    // scheduled (as an interval would).
    const tick = (): void => {
      if (!this.running) return;
      this.sweepTimer = this.o.clock.setTimeout(tick, every);
      this.sweep();
    };
    this.sweepTimer = this.o.clock.setTimeout(tick, every);
  }

  stop(): void {
    this.running = false;
    if (this.sweepTimer !== undefined) this.o.clock.clearTimeout(this.sweepTimer);
    if (this.drainTimer !== undefined) this.o.clock.clearTimeout(this.drainTimer);
    if (this.podMarkTimer !== undefined) this.o.clock.clearTimeout(this.podMarkTimer);
    this.sweepTimer = this.drainTimer = this.podMarkTimer = undefined;
    this.silent = [];
    this.podMarks = [];
  }

  /** A valid report that is proof of life only (an observed set). */
  seen(node: string): void {
    this.heard(node, this.o.now().getTime());
  }

  /** A status report was stored (the registration wrote a heartbeat and Ready with it). */
  reported(node: string): void {
    this.heard(node, this.o.now().getTime());
    this.nextPersist.set(node, this.nextSlot(node, this.o.now().getTime()));
  }

  /**
   * When a node was last heard from for the first time since this hub started (undefined: none
   * yet). While this keeps moving the fleet is still coming back (a reconnect storm after a
   * restart or a failover), and NodeLostController holds its startup grace.
   */
  lastReturnAt(): number | undefined {
    return this.lastReturn;
  }

  private heard(node: string, t: number): void {
    this.lastSeen.set(node, t);
    if (this.returned.has(node)) return;
    this.returned.add(node);
    // Whether the grace was over is asked for when the message arrived: a backlog must not make a
    // return of the storm look late. Asked before moving: the answer is the grace as known from the
    // returns before this one.
    if (this.o.returnsOver?.(Math.min(t, this.o.arrivedAt?.() ?? t))) return;
    // But the return moves the grace by when it is ingested: NodeLostController's graceEnd sees
    // only returns already ingested, so while a backlog still holds first returns the grace must
    // keep holding (dated by arrival, a 70 s backlog would end it with returns still queued).
    if (this.lastReturn === undefined || t > this.lastReturn) this.lastReturn = t;
  }

  /** A heartbeat (usage, or an online presence): Ready again if it was not, persisted when due. */
  heartbeat(node: string, usage?: NodeObject['status']['usage']): void {
    const { store, now } = this.o;
    const t = now().getTime();
    this.heard(node, t);
    const existing = store.get('Node', node);
    if (!existing) return; // status (with facts) registers a node; a heartbeat alone does not
    const ready = isReady(existing);
    const due = t >= (this.nextPersist.get(node) ?? 0);
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
    this.nextPersist.set(node, this.nextSlot(node, t));
  }

  /**
   * The start of `node`'s next slot after `t`: its heartbeat goes to the store once per period, in
   * its own slot of it (a phase from a hash of its name), so the fleet's writes spread evenly over
   * the period whenever the nodes registered. Timed from each node's last write instead (as before
   * 2026-12-04), a fleet that came back in a storm kept the storm's shape: every node due again one
   * period after its return, so 10,000 nodes back within 20 s would write in a 20 s burst every
   * period (≈ 500/s) instead of 100/s (found by reading; the unit test shows it). Each node keeps
   * the time of its next slot, computed when it writes: a period that changes with the fleet's
   * size moves every node's grid by the same amount, so comparing two times on the current grid
   * (the first version) made a whole fleet due at once when one node enrolled (review, 2026-12-04:
   * ≈ 9,200 writes in 10 s at 10,000 nodes); a kept time only moves each node's write after next.
   * A node's first slot after its registration may come sooner than a whole period. The period
   * moves in steps of 10 s, so a growing fleet changes it once per 1,000 nodes, not per node.
   */
  private nextSlot(node: string, t: number): number {
    const every = this.persistEveryMs();
    const phase = mulberry32(hashString(node))(); // FNV alone clusters on names like n1, n2, …
    const next = (Math.floor(t / every + phase) + 1 - phase) * every;
    // Right after a change of period the new grid can put a node's slot just after its last write:
    // then the one after it (the slots stay spread, and no node writes twice in half a period).
    return next - t < every / 2 ? next + every : next;
  }

  /** How often one node's heartbeat reaches the store (see PERSISTED_HEARTBEATS_PER_S). */
  persistEveryMs(): number {
    if (this.o.persistHeartbeatEveryMs !== undefined) return this.o.persistHeartbeatEveryMs;
    // Rounded up to 10 s: the fleet still writes ≤ PERSISTED_HEARTBEATS_PER_S, and the period
    // (each node's slot grid, nextSlot) changes once per 1,000 nodes enrolled or deleted.
    return Math.max(30_000, Math.ceil((this.o.store.count('Node') * 1000) / PERSISTED_HEARTBEATS_PER_S / 10_000) * 10_000);
  }

  /** The node was deleted: nothing of it is remembered (a later heartbeat alone never registers it). */
  forget(node: string): void {
    this.lastSeen.delete(node);
    this.returned.delete(node);
    this.nextPersist.delete(node);
  }

  /** The broker published the node's last will (an offline presence): NotReady at once. */
  disconnected(node: string): void {
    this.setReady(node, false, 'AgentDisconnected', 'the agent disconnected (MQTT last will)');
  }

  /**
   * Marks nodes NotReady whose heartbeats stopped: up to `maxMarksPerTurn` now, the rest in later
   * turns of the event loop (each checked again then), so lease keep-alives, the broker and the
   * API run in between. Also called by tests with fake clocks.
   */
  sweep(): void {
    const { store, now } = this.o;
    const t = now().getTime();
    const silent: string[] = [];
    const release = this.podMarksHeld && this.o.returnsOver?.(t) === true;
    if (release) this.podMarksHeld = false;
    for (const n of store.list('Node')) {
      if (!isReady(n)) {
        if (release) this.podMarks.push(n.metadata.name);
        continue;
      }
      const seen = this.lastSeen.get(n.metadata.name);
      if (seen === undefined) {
        // Hub restarted: give every node one grace period to report in.
        this.lastSeen.set(n.metadata.name, t);
        continue;
      }
      if (this.silentFor(n.metadata.name, t) !== undefined) silent.push(n.metadata.name);
    }
    this.silent = silent;
    this.markSilent();
    if (release && this.podMarks.length > 0) {
      this.o.log.info('node startup grace over: marking the pods of NotReady nodes', { nodes: this.podMarks.length });
      this.markHeldPods();
    }
  }

  /**
   * Whether pods of a node going NotReady at `t` are left unmarked: the grace still holds. Asked
   * live (the flag itself drops at the next sweep, which then marks every NotReady node's pods).
   */
  private holdingPodMarks(t: number): boolean {
    return this.podMarksHeld && this.o.returnsOver?.(t) !== true;
  }

  /**
   * Marks the pods of one turn's worth of the nodes queued when the grace ended (each checked
   * again: still NotReady), and schedules the rest. markPodsNodeLost is idempotent, so a node whose
   * pods a previous hub marked costs a read and no write.
   */
  private markHeldPods(): void {
    this.podMarkTimer = undefined;
    const { store, now } = this.o;
    const batch = this.podMarks.splice(0, Math.max(1, this.o.maxMarksPerTurn ?? 100));
    for (const node of batch) {
      const n = store.get('Node', node);
      if (n === undefined || isReady(n)) continue;
      const why = n.status.conditions.find((c) => c.type === 'Ready')?.message ?? 'no heartbeat';
      store.transaction(() => markPodsNodeLost(store, node, now(), why));
    }
    if (this.podMarks.length > 0) this.podMarkTimer = this.o.clock.setTimeout(() => this.markHeldPods(), 0);
  }

  /** How long `node` has been silent past the grace at `t`, or undefined when it was heard within it. */
  private silentFor(node: string, t: number): number | undefined {
    const seen = this.lastSeen.get(node);
    if (seen === undefined) return undefined;
    const heard = Math.max(seen, this.o.queuedSince?.(node) ?? seen);
    return t - heard > (this.o.heartbeatGraceMs ?? 40_000) ? t - heard : undefined;
  }

  /** Marks one turn's worth of the silent nodes found by the last sweep, and schedules the rest. */
  private markSilent(): void {
    if (this.drainTimer !== undefined) this.o.clock.clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    const t = this.o.now().getTime();
    const batch = this.silent.splice(0, Math.max(1, this.o.maxMarksPerTurn ?? 100));
    for (const node of batch) {
      // Checked again: a report may have come in since the sweep found it silent.
      const n = this.o.store.get('Node', node);
      const silentFor = n !== undefined && isReady(n) ? this.silentFor(node, t) : undefined;
      if (silentFor !== undefined) this.setReady(node, false, 'NodeStatusUnknown', `no heartbeat for ${Math.round(silentFor / 1000)}s`);
    }
    if (this.silent.length > 0) this.drainTimer = this.o.clock.setTimeout(() => this.markSilent(), 0);
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
      // Pods there are Unknown / not Ready until the agent's next observed set says otherwise;
      // while the startup grace holds, not yet (podMarksHeld; the sweep marks them after it).
      if (!ready && !this.holdingPodMarks(now().getTime())) markPodsNodeLost(store, node, now(), message);
    });
    this.o.log.info(`node ${node} is ${ready ? 'Ready' : 'NotReady'}`, { reason });
  }
}

/** The Ready condition the hub writes: True while the agent reports, False (reason set by the caller) when not. */
export function readyCondition(ready: boolean, ts: string): NodeCondition {
  return ready
    ? { type: 'Ready', status: 'True', reason: 'AgentReporting', message: 'the agent is connected and reporting', lastTransitionTime: ts }
    : { type: 'Ready', status: 'False', lastTransitionTime: ts };
}
