import type { Deployment, DeploymentCondition, DeploymentStatus, Pod, RevisionObject, RolloutStatus } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import { deepEqual } from '../hash.js';
import type { Logger } from '../log.js';
import { setCondition } from '../objects/conditions.js';
import { isNodeReady } from '../objects/node.js';
import { isPodReady, isTerminal, newPod, TEMPLATE_HASH_ANNOTATION } from '../objects/pod.js';
import type { Store } from '../store/store.js';
import { budgets, planRollout, type PlannerPod, type PlannerStrategy, type RolloutInput, type RolloutPlan } from './planner.js';
import { ensureRevision, PROMOTED_ANNOTATION, pruneRevisions, revisionName } from './revisions.js';

/**
 * One pass of a Deployment's rollout, called by the DeploymentController (replicated mode) or
 * the GlobalController (global mode, with `global`) inside its reconcile (level-triggered:
 * everything is re-read; idempotent; never concurrent for one deployment — the WorkQueue
 * contract). Revisions are recorded, planRollout() decides, this applies its plan in one store
 * transaction, writes status apart from spec, and rolls a failed rollout back to the stable
 * revision when autoRollback is on. Both modes write the same status fields and Revisions, so
 * `orchard rollout status/history/undo` work the same for both.
 */

export interface RolloutContext {
  store: Store;
  now: () => Date;
  log: Logger;
  /**
   * Status writes that change only counts (ready/available/updated replicas, messages) are spaced
   * at least this far apart per deployment; the pass asks to be requeued, so the final counts are
   * always written. Phase, revision, generation and condition-status changes are written at once.
   * Unset (tests): every change is written. At fleet scale a deploy turns thousands of pods
   * Running per second, and each status write is an fsync'd transaction.
   */
  statusThrottle?: { minIntervalMs: number; lastWrite: Map<string, number> };
}

/** Global mode: which nodes should run a pod, and where there is room. Placement stays the GlobalController's. */
export interface GlobalRollout {
  /** Nodes that should run one pod each, and whether each is online (Ready). */
  nodes: ReadonlyArray<{ name: string; online: boolean }>;
  /** `node: reason` for matching nodes left out of `nodes` for lack of room (counted as unscheduled). */
  waiting: readonly string[];
  /**
   * Why each of `nodes` has no room for one more pod (absent = room). Called inside the
   * transaction after the plan's deletions, so a pod replaced in place frees its room first.
   */
  noRoom(nodes: readonly string[]): ReadonlyMap<string, string>;
}

export interface RolloutResult {
  requeueAfterMs?: number;
  /** Global mode: `node: reason` for every node that should run a pod but has no room (waiting + planned creates that did not fit). */
  unplaced?: string[];
}

/** The deployment's strategy for the planner, with defaults per mode. */
export function strategyOf(d: Deployment): PlannerStrategy {
  const s = d.spec.strategy;
  // Without a strategy a global deployment updates one node at a time with no surge (a
  // DaemonSet's default): a second pod beside the old one would often clash on host ports.
  const global = d.spec.mode === 'global' && s === undefined;
  return {
    type: s?.type ?? 'RollingUpdate',
    maxSurge: s?.rollingUpdate.maxSurge ?? (global ? 0 : 1),
    maxUnavailable: s?.rollingUpdate.maxUnavailable ?? (global ? 1 : 0),
    ...(s?.canary ? { canary: s.canary.replicas } : {}),
  };
}

/** `updateHash` is the deployment's template hash as the controller computes it (template + referenced config). */
export function reconcileRollout(ctx: RolloutContext, d: Deployment, allPods: readonly Pod[], updateHash: string, global?: GlobalRollout): RolloutResult {
  const { store, now } = ctx;
  return store.transaction(() => {
    const name = d.metadata.name;
    const t = now();
    // Failed/Succeeded pods are replaced, as a ReplicaSet (or DaemonSet) does.
    for (const p of allPods.filter(isTerminal)) store.delete('Pod', p.metadata.name);
    const pods = allPods.filter((p) => !isTerminal(p));

    const updateRev = ensureRevision(store, d, updateHash);
    const prev = d.status;
    let stableHash = prev.currentRevision;
    if (stableHash !== undefined && stableHash !== updateHash && !store.get('Revision', revisionName(name, stableHash))) stableHash = undefined;
    const newRollout = prev.updateRevision !== updateHash;
    const rollout: RolloutStatus = newRollout ? { phase: 'Progressing', revision: updateRev.revision, startedAt: t.toISOString() } : { ...(prev.rollout ?? { phase: 'Progressing' }) };
    // The rollback marker belongs to the rollout it ended; a later user change clears it.
    if (newRollout && prev.rollout?.rolledBackFrom !== undefined && prev.rollout.rolledBackFrom.hash !== prev.updateRevision) delete rollout.rolledBackFrom;
    if (newRollout && prev.rollout?.rolledBackFrom !== undefined && prev.rollout.rolledBackFrom.hash === prev.updateRevision) rollout.rolledBackFrom = prev.rollout.rolledBackFrom;
    if (newRollout && prev.updateRevision !== undefined) {
      const from = store.get('Revision', revisionName(name, prev.updateRevision));
      recordEvent(store, t, { kind: 'Deployment', name, type: 'Normal', reason: 'RolloutStarted', message: `rolling out revision ${updateRev.revision}${from ? ` (from revision ${from.revision})` : ''}: ${imageChange(from, updateRev)}` });
    }

    // Only the nodes this deployment's pods are on (a full node list per reconcile was O(fleet)
    // on every pod status change: most of the hub's CPU at 5,000 nodes).
    const nodeReady = new Map<string, boolean>();
    for (const p of pods) {
      const nn = p.spec.nodeName;
      if (nn === undefined || nodeReady.has(nn)) continue;
      const n = store.get('Node', nn);
      if (n !== undefined) nodeReady.set(nn, isNodeReady(n));
    }
    const strategy = strategyOf(d);
    const input: RolloutInput = {
      mode: global === undefined ? 'replicated' : 'global',
      replicas: d.spec.replicas,
      ...(global !== undefined ? { nodes: global.nodes } : {}),
      updateHash,
      strategy,
      minReadySeconds: d.spec.minReadySeconds,
      progressDeadlineSeconds: d.spec.progressDeadlineSeconds,
      paused: d.spec.paused,
      promoted: d.metadata.annotations[PROMOTED_ANNOTATION] === updateHash,
      now: t.getTime(),
      pods: pods.map((p) => plannerPod(p, nodeReady)),
      ...(stableHash !== undefined ? { stableHash } : {}),
      ...(!newRollout && rollout.progressKey !== undefined ? { progressKey: rollout.progressKey } : {}),
      ...(!newRollout && rollout.lastProgressAt !== undefined ? { lastProgressAt: Date.parse(rollout.lastProgressAt) } : {}),
    };
    const plan = planRollout(input);

    // A failed rollout with a stable revision to go back to: roll back instead of pressing on.
    if (plan.deadlineExceeded && d.spec.autoRollback && stableHash !== undefined && stableHash !== updateHash) {
      const target = store.get('Revision', revisionName(name, stableHash));
      if (target) {
        rollBack(ctx, d, target, updateRev, plan.message);
        return { requeueAfterMs: 0 };
      }
    }

    for (const del of plan.delete) store.delete('Pod', del.name);
    const created = new Map<string, number>();
    // Global mode: pods are created bound to their node, only where there is room.
    const unplaced = [...(global?.waiting ?? [])];
    const bound = plan.create.flatMap((c) => (c.node !== undefined ? [c.node] : []));
    const noRoom = global !== undefined && bound.length > 0 ? global.noRoom(bound) : new Map<string, string>();
    for (const c of plan.create) {
      const why = c.node === undefined ? undefined : noRoom.get(c.node);
      if (why !== undefined) {
        unplaced.push(`${c.node ?? ''}: ${why}`);
        continue;
      }
      const template = c.hash === updateHash ? d : withTemplate(d, store.get('Revision', revisionName(name, c.hash))?.template);
      const pod = newPod(template, c.hash, c.node);
      if (c.node !== undefined) pod.status.conditions = setCondition(pod.status.conditions, { type: 'PodScheduled', status: 'True' }, t.toISOString());
      store.create(pod);
      created.set(c.hash, (created.get(c.hash) ?? 0) + 1);
    }
    if (plan.delete.length > 0 || created.size > 0) {
      const parts = [...created].map(([h, n]) => `created ${n} pod(s) of revision ${h === updateHash ? updateRev.revision : h}`);
      if (plan.delete.length > 0) parts.push(`deleted ${plan.delete.length} (${[...new Set(plan.delete.map((x) => x.reason))].join('; ')})`);
      recordEvent(store, t, { kind: 'Deployment', name, type: 'Normal', reason: 'ScalingPods', message: parts.join(', ') });
    }

    if (plan.progressed) {
      rollout.progressKey = plan.progressKey;
      rollout.lastProgressAt = t.toISOString();
    }
    const wasPhase = prev.rollout?.phase;
    rollout.phase = prev.rollout?.rolledBackFrom !== undefined && rollout.rolledBackFrom !== undefined && plan.phase === 'Complete' ? 'RolledBack' : plan.phase;
    rollout.message = rollout.phase === 'RolledBack' ? `rolled back to revision ${updateRev.revision}: ${rollout.rolledBackFrom?.reason ?? ''}` : plan.message;
    rollout.revision = updateRev.revision;
    if (rollout.phase !== wasPhase || newRollout) {
      if (plan.phase === 'Complete' && plan.inRollout) recordEvent(store, t, { kind: 'Deployment', name, type: 'Normal', reason: 'RolloutComplete', message: `revision ${updateRev.revision} is fully available (${plan.counts.updatedAvailable}/${plan.counts.desired})` });
      if (plan.phase === 'Failed') recordEvent(store, t, { kind: 'Deployment', name, type: 'Warning', reason: 'ProgressDeadlineExceeded', message: `revision ${updateRev.revision}: ${plan.message}${d.spec.autoRollback ? ' (no fully available revision to roll back to)' : ' (autoRollback is off)'}` });
      if (plan.phase === 'CanaryPaused') recordEvent(store, t, { kind: 'Deployment', name, type: 'Normal', reason: 'CanaryPaused', message: plan.message });
    }

    const stable = plan.complete ? updateHash : stableHash;
    const deferredMs = writeStatus(store, d, plan, rollout, { updateHash, stableHash: stable, t, strategy, ...(global !== undefined ? { unscheduled: unplaced.length } : {}), ...(ctx.statusThrottle ? { throttle: ctx.statusThrottle } : {}) });
    const protect = new Set<string>([updateHash, ...(stable !== undefined ? [stable] : []), ...pods.map((p) => p.metadata.annotations[TEMPLATE_HASH_ANNOTATION] ?? '')]);
    pruneRevisions(store, d, protect);
    const requeue = Math.min(plan.requeueAfterMs ?? Infinity, deferredMs ?? Infinity);
    const out: RolloutResult = Number.isFinite(requeue) ? { requeueAfterMs: requeue } : {};
    if (global !== undefined) out.unplaced = unplaced;
    return out;
  });
}

function plannerPod(p: Pod, nodeReady: ReadonlyMap<string, boolean>): PlannerPod {
  // A pod on a node that stopped reporting cannot be counted on.
  const nodeOk = p.spec.nodeName === undefined || nodeReady.get(p.spec.nodeName) !== false;
  const ready = nodeOk && isPodReady(p);
  const out: PlannerPod = { name: p.metadata.name, hash: p.metadata.annotations[TEMPLATE_HASH_ANNOTATION] ?? '', ready, createdAt: Date.parse(p.metadata.creationTimestamp) || 0 };
  if (p.spec.nodeName !== undefined) out.node = p.spec.nodeName;
  const since = p.status.conditions.find((c) => c.type === 'Ready' && c.status === 'True')?.lastTransitionTime;
  if (ready && since !== undefined && Number.isFinite(Date.parse(since))) out.readySince = Date.parse(since);
  if (!ready) out.problem = podProblem(p, nodeOk);
  return out;
}

/** The most telling reason a pod is not Ready, for rollout failure messages. */
export function podProblem(p: Pod, nodeOk = true): string {
  if (!nodeOk) return `node ${p.spec.nodeName ?? ''} is not ready`;
  if (p.spec.nodeName === undefined) return p.status.unschedulable?.summary ?? 'not scheduled yet';
  const waiting = p.status.containerStatuses.find((c) => c.state === 'waiting' && c.reason !== undefined && c.reason !== 'ContainerCreating');
  if (waiting) return `${waiting.reason ?? ''}${waiting.message ? `: ${waiting.message.slice(0, 200)}` : ''}`;
  if (p.status.pull) return `pulling ${p.status.pull.image}`;
  if (p.status.phase === 'Running') {
    const unready = p.status.containerStatuses.filter((c) => !c.ready).map((c) => c.name);
    return `readiness probe not passing${unready.length ? ` (${unready.join(', ')})` : ''}`;
  }
  if (p.status.containerStatuses.some((c) => c.reason === 'ContainerCreating')) return 'ContainerCreating';
  return p.status.reason ?? `phase ${p.status.phase}`;
}

function withTemplate(d: Deployment, template: RevisionObject['template'] | undefined): Deployment {
  if (template === undefined) return d;
  const copy = structuredClone(d) as Deployment;
  copy.spec.template = template;
  return copy;
}

function imageChange(from: RevisionObject | undefined, to: RevisionObject): string {
  const before = from?.images.join(',') ?? '';
  const after = to.images.join(',');
  return before === '' || before === after ? `images ${after}` : `${before} → ${after}`;
}

/** Puts the stable revision's template back into the spec; the next pass rolls it out. */
function rollBack(ctx: RolloutContext, d: Deployment, target: RevisionObject, failed: RevisionObject, why: string): void {
  const { store, now, log } = ctx;
  const fresh = store.get('Deployment', d.metadata.name);
  if (!fresh) return;
  const next = structuredClone(fresh) as Deployment;
  next.spec.template = structuredClone(target.template) as Deployment['spec']['template'];
  const reason = why.length > 1500 ? `${why.slice(0, 1500)}…` : why;
  next.status.rollout = { ...(next.status.rollout ?? { phase: 'Failed' }), phase: 'Failed', message: reason, rolledBackFrom: { revision: failed.revision, hash: failed.templateHash, reason } };
  store.update(next);
  const message = `rollout of revision ${failed.revision} failed (${reason}); rolled back to revision ${target.revision} (${target.images.join(',')})`;
  recordEvent(store, now(), { kind: 'Deployment', name: d.metadata.name, type: 'Warning', reason: 'RolledBack', message });
  log.warn(`deployment ${d.metadata.name}: ${message}`);
}

/**
 * `unscheduled` (global mode): nodes without room; replicated mode counts pods not yet bound.
 * Returns the ms after which to pass again when the throttle deferred a counts-only change.
 */
function writeStatus(store: Store, d: Deployment, plan: RolloutPlan, rollout: RolloutStatus, o: { updateHash: string; stableHash: string | undefined; t: Date; strategy: PlannerStrategy; unscheduled?: number; throttle?: NonNullable<RolloutContext['statusThrottle']> }): number | undefined {
  const fresh = store.get('Deployment', d.metadata.name);
  if (!fresh) return undefined;
  const c = plan.counts;
  // Replicas, or (global mode) the online nodes that should run a pod.
  const desired = c.desired;
  const pods = store.list('Pod', { ownerName: d.metadata.name }).filter((p) => !isTerminal(p));
  const { unavailable } = budgets(o.strategy, desired);
  const ts = o.t.toISOString();
  const progressing: DeploymentCondition =
    rollout.phase === 'Failed'
      ? { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: rollout.message ?? '' }
      : rollout.phase === 'Paused'
        ? { type: 'Progressing', status: 'Unknown', reason: 'DeploymentPaused', message: 'deployment is paused' }
        : rollout.phase === 'CanaryPaused'
          ? { type: 'Progressing', status: 'Unknown', reason: 'CanaryPaused', message: rollout.message ?? '' }
          : rollout.phase === 'RolledBack'
            ? { type: 'Progressing', status: 'True', reason: 'RolledBack', message: rollout.message ?? '' }
            : rollout.phase === 'Complete'
              ? { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: `revision ${rollout.revision ?? ''} is available` }
              : { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: rollout.message ?? '' };
  const availableOk = c.available >= desired - unavailable;
  const available: DeploymentCondition = availableOk
    ? { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' }
    : { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: `${c.available} of ${desired} pods available (needs ${desired - unavailable})` };
  const status: DeploymentStatus = {
    observedGeneration: fresh.metadata.generation,
    replicas: pods.length,
    readyReplicas: pods.filter(isPodReady).length,
    availableReplicas: c.available,
    unscheduledReplicas: o.unscheduled ?? pods.filter((p) => !p.spec.nodeName).length,
    updatedReplicas: pods.filter((p) => p.metadata.annotations[TEMPLATE_HASH_ANNOTATION] === o.updateHash).length,
    updateRevision: o.updateHash,
    conditions: setCondition(setCondition(fresh.status.conditions, available, ts, { updateTime: true }), progressing, ts, { updateTime: true }),
    rollout,
  };
  if (o.stableHash !== undefined) status.currentRevision = o.stableHash;
  if (deepEqual(fresh.status, status)) return undefined;
  if (o.throttle !== undefined) {
    const last = o.throttle.lastWrite.get(d.metadata.name);
    const wait = last === undefined ? 0 : last + o.throttle.minIntervalMs - o.t.getTime();
    if (wait > 0 && deepEqual(statusShape(fresh.status), statusShape(status))) return wait;
    o.throttle.lastWrite.set(d.metadata.name, o.t.getTime());
  }
  const next = structuredClone(fresh) as Deployment;
  next.status = status;
  store.update(next);
  return undefined;
}

/** What a status says apart from its counts and messages: a change here is never deferred. */
function statusShape(s: DeploymentStatus): unknown {
  return {
    observedGeneration: s.observedGeneration,
    updateRevision: s.updateRevision,
    currentRevision: s.currentRevision,
    phase: s.rollout?.phase,
    revision: s.rollout?.revision,
    rolledBackFrom: s.rollout?.rolledBackFrom,
    conditions: (s.conditions ?? []).map((c) => [c.type, c.status, c.reason]),
  };
}
