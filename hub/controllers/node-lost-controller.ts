import type { DeploymentSpec } from '../../protocol/manifest.js';
import type { Deployment, NodeObject, Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import type { Logger } from '../log.js';
import { isNodeReady } from '../objects/node.js';
import { isTerminal } from '../objects/pod.js';
import type { Store, WatchEvent } from '../store/store.js';
import { NODE_LOST_REASON } from './node-lost-status.js';
import { WorkQueue } from './workqueue.js';

/**
 * "Partition is not death": what happens to the pods of a node that is NotReady.
 *
 * Per deployment, `spec.onNodeLost` decides: `keep` leaves the pods bound to the lost node
 * (its agent keeps running them; nothing is restarted), `reschedule` deletes the pod objects
 * bound to the lost node once it has been NotReady for `afterSeconds`. The DeploymentController
 * then creates replacements and the scheduler places them on Ready nodes only (the node-ready
 * filter). Fencing is the desired set: the lost node's retained set no longer lists the deleted
 * pods, so when its agent reconnects it removes them — no duplicate replicas.
 *
 * Level-triggered: the clock that decides is the node's Ready condition `lastTransitionTime`
 * (stored, so it survives a hub restart), never an in-memory timer; the queue only asks to be
 * woken when the next pod falls due.
 *
 * Startup grace (Kubernetes' node-lifecycle controller restarts its clocks when it starts, for
 * the same reason): after a hub restart thousands of agents reconnect at once, and one whose
 * CONNECT timed out on the overloaded hub fires its last will and backs off — NotReady *after*
 * the hub started, though the device is fine. So a transition before `startedAt + startupGraceMs`
 * is timed from `startedAt + startupGraceMs`: due = max(since, startedAt + grace) + afterSeconds.
 * A node lost after the grace is timed from its transition alone.
 *
 * The grace lasts as long as the reconnect storm (issue 19): a fixed 60 s was shorter than the
 * return of a large fleet, and a new leader at 10,000 nodes rescheduled the pods of nodes whose
 * CONNECT had timed out in the storm (their last will, then back-off) while half the fleet had not
 * come back yet. So the grace ends at the later of `start + startupGraceMs` and `returnQuietMs`
 * (120 s: two of an agent's worst retry cycles, AGENT_RETRY_CYCLE_MS) after the last node heard from for the
 * first time since the start (`lastReturnAt`), and at `start + maxStartupGraceMs` (10 min) at
 * the latest, so a fleet that keeps trickling in cannot hold it open for ever. Once over it stays
 * over: a reconcile that finds it past fixes the end, and so does a node heard for the first
 * time after it (NodeLiveness asks `graceOver` before that node moves `lastReturnAt`), so a late
 * or newly enrolled node never reopens it (review of 2026-12-03: before, such a node pushed the
 * end out to the cap when no reconcile had run in between).
 */

export type NodeLostPolicy = Required<NonNullable<DeploymentSpec['onNodeLost']>>;

export interface NodeLostControllerOptions {
  store: Store;
  log: Logger;
  now: () => Date;
  /**
   * Node startup grace: a NotReady transition before `start + startupGraceMs` (the node was lost
   * while the hub was down, or during the reconnect storm after its start, when a CONNECT that
   * timed out on a busy hub fires the agent's last will) counts as if it happened at
   * `start + startupGraceMs`; `afterSeconds` runs from there. Nodes lost later are timed from
   * the transition alone. Default 60 s (`orchard hub --node-startup-grace`).
   */
  startupGraceMs?: number;
  /**
   * When a node was last heard from for the first time since the hub started (NodeController.
   * lastReturnAt): the grace holds while nodes keep coming back. Absent: the grace is
   * `startupGraceMs` alone.
   */
  lastReturnAt?: () => number | undefined;
  /** The grace ends only once no node came back for the first time for this long (default 60 s). */
  returnQuietMs?: number;
  /** …and at start + this at the latest (default 10 min; never below startupGraceMs). */
  maxStartupGraceMs?: number;
}

/** The effective policy: the deployment's, else replicated → reschedule after 60 s, global → keep. */
export function nodeLostPolicy(spec: Pick<DeploymentSpec, 'mode' | 'onNodeLost'>): NodeLostPolicy {
  // A global pod belongs to its node (one per node): there is nowhere else for it to go.
  if (spec.mode === 'global') return { action: 'keep', afterSeconds: spec.onNodeLost?.afterSeconds ?? 60, startFresh: false };
  const o = spec.onNodeLost;
  if (!o) return { action: 'reschedule', afterSeconds: 60, startFresh: false };
  return { action: o.action, afterSeconds: o.afterSeconds ?? 60, startFresh: o.startFresh ?? false };
}

export const DEFAULT_NODE_STARTUP_GRACE_MS = 60_000;
/**
 * An agent's worst reconnect cycle on a busy hub (agent/link.ts defaults): its CONNECT waits up to
 * 30 s for the CONNACK, then it backs off up to 30 s before the next dial.
 */
export const AGENT_RETRY_CYCLE_MS = 30_000 + 30_000;
/**
 * Two whole retry cycles: a hub too busy to answer CONNECTs produces a minute without a first
 * return by itself (every agent in the middle of a cycle), and that alone must not end the grace.
 * It was 60 s (one cycle): at 10,000 nodes on etcd the returns stalled for 64 s, the grace ended,
 * and the new leader declared 8,558 nodes lost and rescheduled their pods (docs/benchmarks.md,
 * 2026-12-04). The cost: after a restart, pods of nodes that are really gone wait up to 60 s more.
 */
export const DEFAULT_RETURN_QUIET_MS = 2 * AGENT_RETRY_CYCLE_MS;
export const DEFAULT_MAX_STARTUP_GRACE_MS = 600_000;

/** When the node's Ready condition last turned False (ms), or undefined while it is Ready. */
export function lostSinceMs(n: NodeObject): number | undefined {
  if (isNodeReady(n)) return undefined;
  const c = n.status.conditions.find((x) => x.type === 'Ready');
  const t = c?.lastTransitionTime === undefined ? NaN : Date.parse(c.lastTransitionTime);
  return Number.isNaN(t) ? undefined : t;
}

export function hasPersistentVolume(p: Pod): boolean {
  return (p.spec.volumes ?? []).some((v) => v.persistent !== undefined);
}

export class NodeLostController {
  readonly queue: WorkQueue;
  private unwatch: (() => void) | undefined;
  private startedAt = 0;
  /** When the startup grace ended, once a reconcile found it over (it never reopens). */
  private graceEndedAt: number | undefined;
  /** Pinned pods already explained (pod uid @ lost-since), so repeated passes record one event. */
  private readonly explained = new Set<string>();
  /** Pod objects deleted for replacement (tests, metrics). */
  replaced = 0;
  /** Nodes last seen NotReady, kept from Node events so a policy change does not list the fleet. */
  private readonly notReady = new Set<string>();
  /** Deployment → metadata.generation last seen: only a spec (policy) change re-checks lost nodes. */
  private readonly generations = new Map<string, number>();

  constructor(private readonly o: NodeLostControllerOptions) {
    this.queue = new WorkQueue('node-lost', (node) => this.reconcile(node), o.log);
  }

  start(): void {
    const { store } = this.o;
    this.startedAt = this.o.now().getTime();
    this.graceEndedAt = undefined;
    this.unwatch = store.watch(
      (ev: WatchEvent) => {
        const obj = ev.object;
        if (obj.kind === 'Node') {
          if (ev.type !== 'DELETED' && !isNodeReady(obj)) this.notReady.add(obj.metadata.name);
          else this.notReady.delete(obj.metadata.name);
          // Every node write (cheap: a Ready node is a no-op pass that also forgets old notes).
          this.queue.add(obj.metadata.name);
        } else if (obj.kind === 'Deployment') {
          if (ev.type === 'DELETED') {
            this.generations.delete(obj.metadata.name);
            return;
          }
          // A changed policy may make pods on an already-lost node due now. Status-only writes
          // (thousands during a deploy) cannot change it, and do not bump the generation.
          if (this.generations.get(obj.metadata.name) === obj.metadata.generation) return;
          this.generations.set(obj.metadata.name, obj.metadata.generation);
          this.enqueueLost();
        }
      },
      ['Node', 'Deployment'],
    );
    for (const d of store.list('Deployment')) this.generations.set(d.metadata.name, d.metadata.generation);
    for (const n of store.list('Node')) if (!isNodeReady(n)) this.notReady.add(n.metadata.name);
    this.enqueueLost();
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
  }

  private enqueueLost(): void {
    for (const n of this.notReady) this.queue.add(n);
  }

  /**
   * Deletes the due `reschedule` pods on `node` and asks to be called again when the next one
   * falls due. Idempotent: re-reads the node, its pods and their deployments on every call.
   */
  reconcile(node: string): { requeueAfterMs?: number } | void {
    const { store, now, log } = this.o;
    const n = store.get('Node', node);
    const since = n === undefined ? undefined : lostSinceMs(n);
    if (since === undefined) {
      // Ready (or gone, or no transition time yet): nothing is lost; forget what was explained.
      for (const k of this.explained) if (k.startsWith(`${node}/`)) this.explained.delete(k);
      return;
    }
    const t = now().getTime();
    // Lost before or during the startup grace (hub down, or its reconnect storm): the clock starts
    // when the grace ends, as if the node had been lost then.
    const lostFrom = Math.max(since, this.graceEnd(t));
    let nextDue = Infinity;
    const due: Array<{ pod: Pod; policy: NodeLostPolicy }> = [];
    const pinned: Pod[] = [];
    const deployments = new Map<string, Deployment | undefined>();
    for (const pod of store.list('Pod', { nodeName: node })) {
      if (isTerminal(pod) || pod.metadata.deletionTimestamp !== undefined || pod.metadata.ownerName === undefined) continue;
      const owner = pod.metadata.ownerName;
      if (!deployments.has(owner)) deployments.set(owner, store.get('Deployment', owner));
      const d = deployments.get(owner);
      if (!d) continue; // the DeploymentController removes orphans
      const policy = nodeLostPolicy(d.spec);
      if (policy.action === 'keep') continue;
      if (hasPersistentVolume(pod) && !policy.startFresh) {
        pinned.push(pod);
        continue;
      }
      const at = lostFrom + policy.afterSeconds * 1000;
      if (at <= t) due.push({ pod, policy });
      else nextDue = Math.min(nextDue, at - t);
    }
    if (due.length > 0) {
      const lostFor = Math.round((t - since) / 1000);
      store.transaction(() => {
        for (const { pod } of due) {
          store.delete('Pod', pod.metadata.name);
          this.replaced++;
          recordEvent(store, now(), {
            kind: 'Pod',
            name: pod.metadata.name,
            type: 'Warning',
            reason: NODE_LOST_REASON,
            message: `node ${node} lost for ${lostFor}s: pod deleted so ${pod.metadata.ownerName ?? 'its deployment'} replaces it on a Ready node`,
          });
        }
        const byOwner = new Map<string, number>();
        for (const { pod } of due) byOwner.set(pod.metadata.ownerName ?? '', (byOwner.get(pod.metadata.ownerName ?? '') ?? 0) + 1);
        for (const [owner, count] of byOwner) {
          recordEvent(store, now(), {
            kind: 'Deployment',
            name: owner,
            type: 'Warning',
            reason: 'Rescheduling',
            message: `node ${node} lost: replacing ${count} pod(s) on other nodes (onNodeLost: reschedule)`,
          });
        }
      });
      log.info('replacing pods of a lost node', { node, pods: due.map((d) => d.pod.metadata.name), lostForS: lostFor });
    }
    for (const pod of pinned) {
      const key = `${node}/${pod.metadata.uid}@${since}`;
      if (this.explained.has(key)) continue;
      this.explained.add(key);
      recordEvent(store, now(), {
        kind: 'Pod',
        name: pod.metadata.name,
        type: 'Warning',
        reason: 'NodeLostPinned',
        message: `node ${node} lost; pod kept there because it has a persistent volume (set onNodeLost.startFresh: true to start it fresh elsewhere)`,
      });
    }
    return Number.isFinite(nextDue) ? { requeueAfterMs: Math.max(1, nextDue) } : undefined;
  }

  /**
   * When the startup grace ends, as known at `t` (class comment): start + startupGraceMs, pushed
   * on while nodes are still coming back for the first time since the start, capped at start +
   * maxStartupGraceMs. A reconcile that finds it past fixes it for good.
   */
  graceEnd(t: number): number {
    if (this.graceEndedAt !== undefined) return this.graceEndedAt;
    const grace = this.o.startupGraceMs ?? DEFAULT_NODE_STARTUP_GRACE_MS;
    let end = this.startedAt + grace;
    const last = this.o.lastReturnAt?.();
    if (grace > 0 && last !== undefined) {
      const cap = this.startedAt + Math.max(grace, this.o.maxStartupGraceMs ?? DEFAULT_MAX_STARTUP_GRACE_MS);
      end = Math.min(cap, Math.max(end, last + (this.o.returnQuietMs ?? DEFAULT_RETURN_QUIET_MS)));
    }
    if (t >= end) this.graceEndedAt = end;
    return end;
  }

  /**
   * Whether the startup grace is over at `t` (and then fixed for good). NodeLiveness asks this
   * before a node heard for the first time moves `lastReturnAt`, so the end is fixed by whichever
   * comes first, a reconcile or a late node, and a late node never pushes it out.
   */
  graceOver(t: number): boolean {
    return this.startedAt !== 0 && t >= this.graceEnd(t);
  }
}
