import type { DeviceGrant } from '../../protocol/devices.js';
import type { Deployment, Pod, RevisionObject, RolloutStatus } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import type { Logger } from '../log.js';
import { setCondition } from '../objects/conditions.js';
import { isNodeReady } from '../objects/node.js';
import { isPodReady, isTerminal, newPod, TEMPLATE_HASH_ANNOTATION } from '../objects/pod.js';
import type { Store } from '../store/store.js';
import { planRollout, type PlannerPod, type PlannerStrategy, type RolloutInput, type RolloutPlan } from './planner.js';
import { ensureRevision, PROMOTED_ANNOTATION, pruneRevisions, revisionName } from './revisions.js';
import { writeStatus, type StatusThrottle } from './rollout-status.js';
import { advancedRollout, imageChange, phaseEvent, rolloutAtStart, scalingMessage } from './rollout-transitions.js';

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
  statusThrottle?: StatusThrottle;
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
  /** Host devices (issue 18) for a pod of `spec` created on `node` now, picked as the scheduler would; absent/undefined = none. */
  deviceGrants?(node: string, spec: Pod['spec']): DeviceGrant[] | undefined;
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

/**
 * `updateHash` is the deployment's template hash as the controller computes it (template +
 * referenced config). One transaction: replace finished pods → record the revision and where the
 * rollout stands → plan → roll back, or apply the plan → advance the rollout → write status →
 * prune old revisions.
 */
export function reconcileRollout(ctx: RolloutContext, d: Deployment, allPods: readonly Pod[], updateHash: string, global?: GlobalRollout): RolloutResult {
  const { store, now } = ctx;
  return store.transaction(() => {
    const t = now();
    const pods = replaceTerminal(store, allPods);
    const updateRev = ensureRevision(store, d, updateHash);
    const stableHash = stableRevision(store, d, updateHash);
    const newRollout = d.status.updateRevision !== updateHash;
    const started = rolloutAtStart(d.status, updateHash, updateRev.revision, t);
    if (newRollout) recordRolloutStarted(store, d, updateRev, t);

    const strategy = strategyOf(d);
    const plan = planRollout(plannerInput(d, pods, nodeReadiness(store, pods), { updateHash, stableHash, strategy, rollout: started, newRollout, t, global }));

    const target = rollbackTarget(store, d, plan, updateHash, stableHash);
    if (target !== undefined) {
      rollBack(ctx, d, target, updateRev, plan.message);
      return { requeueAfterMs: 0 };
    }

    const unplaced = applyPlan(store, d, plan, { updateHash, updateRev, t, global });
    const rollout = advancedRollout(started, d.status.rollout, plan, updateRev.revision, t);
    if (rollout.phase !== d.status.rollout?.phase || newRollout) {
      const e = phaseEvent(plan, updateRev.revision, d.spec.autoRollback);
      if (e !== undefined) recordEvent(store, t, { kind: 'Deployment', name: d.metadata.name, ...e });
    }

    const stable = plan.complete ? updateHash : stableHash;
    const deferredMs = writeStatus(store, d, {
      counts: plan.counts,
      rollout,
      updateHash,
      stableHash: stable,
      t,
      strategy,
      ...(global !== undefined ? { unscheduled: unplaced.length } : {}),
      ...(ctx.statusThrottle ? { throttle: ctx.statusThrottle } : {}),
    });
    pruneRevisions(
      store,
      d,
      new Set<string>([updateHash, ...(stable !== undefined ? [stable] : []), ...pods.map((p) => p.metadata.annotations[TEMPLATE_HASH_ANNOTATION] ?? '')]),
    );
    const requeue = Math.min(plan.requeueAfterMs ?? Infinity, deferredMs ?? Infinity);
    const out: RolloutResult = Number.isFinite(requeue) ? { requeueAfterMs: requeue } : {};
    if (global !== undefined) out.unplaced = unplaced;
    return out;
  });
}

/** Failed/Succeeded pods are deleted, to be replaced as a ReplicaSet (or DaemonSet) does; returns the others. */
function replaceTerminal(store: Store, allPods: readonly Pod[]): Pod[] {
  for (const p of allPods.filter(isTerminal)) store.delete('Pod', p.metadata.name);
  return allPods.filter((p) => !isTerminal(p));
}

/** The last fully available revision (the rollback target), unless its Revision object is gone. */
function stableRevision(store: Store, d: Deployment, updateHash: string): string | undefined {
  const hash = d.status.currentRevision;
  if (hash !== undefined && hash !== updateHash && !store.get('Revision', revisionName(d.metadata.name, hash))) return undefined;
  return hash;
}

/** Event for a new update revision, when there was one before it. */
function recordRolloutStarted(store: Store, d: Deployment, updateRev: RevisionObject, t: Date): void {
  const prevHash = d.status.updateRevision;
  if (prevHash === undefined) return;
  const name = d.metadata.name;
  const from = store.get('Revision', revisionName(name, prevHash));
  recordEvent(store, t, {
    kind: 'Deployment',
    name,
    type: 'Normal',
    reason: 'RolloutStarted',
    message: `rolling out revision ${updateRev.revision}${from ? ` (from revision ${from.revision})` : ''}: ${imageChange(from, updateRev)}`,
  });
}

/**
 * Readiness of the nodes this deployment's pods are on, and only those (a full node list per
 * reconcile was O(fleet) on every pod status change: most of the hub's CPU at 5,000 nodes).
 */
function nodeReadiness(store: Store, pods: readonly Pod[]): Map<string, boolean> {
  const nodeReady = new Map<string, boolean>();
  for (const p of pods) {
    const nn = p.spec.nodeName;
    if (nn === undefined || nodeReady.has(nn)) continue;
    const n = store.get('Node', nn);
    if (n !== undefined) nodeReady.set(nn, isNodeReady(n));
  }
  return nodeReady;
}

interface PassState {
  updateHash: string;
  stableHash: string | undefined;
  strategy: PlannerStrategy;
  /** The rollout block the pass started from (rolloutAtStart). */
  rollout: RolloutStatus;
  newRollout: boolean;
  t: Date;
  global: GlobalRollout | undefined;
}

/** What planRollout() sees: the spec, the pods as planner pods, and (same rollout) the progress so far. */
function plannerInput(d: Deployment, pods: readonly Pod[], nodeReady: ReadonlyMap<string, boolean>, o: PassState): RolloutInput {
  const { rollout, newRollout } = o;
  return {
    mode: o.global === undefined ? 'replicated' : 'global',
    replicas: d.spec.replicas,
    ...(o.global !== undefined ? { nodes: o.global.nodes } : {}),
    updateHash: o.updateHash,
    strategy: o.strategy,
    minReadySeconds: d.spec.minReadySeconds,
    progressDeadlineSeconds: d.spec.progressDeadlineSeconds,
    paused: d.spec.paused,
    promoted: d.metadata.annotations[PROMOTED_ANNOTATION] === o.updateHash,
    now: o.t.getTime(),
    pods: pods.map((p) => plannerPod(p, nodeReady)),
    ...(o.stableHash !== undefined ? { stableHash: o.stableHash } : {}),
    ...(!newRollout && rollout.progressKey !== undefined ? { progressKey: rollout.progressKey } : {}),
    ...(!newRollout && rollout.lastProgressAt !== undefined ? { lastProgressAt: Date.parse(rollout.lastProgressAt) } : {}),
  };
}

/** A failed rollout with a stable revision to go back to (autoRollback on): that revision; else undefined (press on). */
function rollbackTarget(store: Store, d: Deployment, plan: RolloutPlan, updateHash: string, stableHash: string | undefined): RevisionObject | undefined {
  if (!plan.deadlineExceeded || !d.spec.autoRollback || stableHash === undefined || stableHash === updateHash) return undefined;
  return store.get('Revision', revisionName(d.metadata.name, stableHash)) ?? undefined;
}

/**
 * Deletes and creates the plan's pods (global mode: bound to their node, only where there is
 * room) and records what it did. Returns `node: reason` for every node that should run a pod but
 * has no room (global mode; empty otherwise).
 */
function applyPlan(
  store: Store,
  d: Deployment,
  plan: RolloutPlan,
  o: { updateHash: string; updateRev: RevisionObject; t: Date; global: GlobalRollout | undefined },
): string[] {
  for (const del of plan.delete) store.delete('Pod', del.name);
  const unplaced = [...(o.global?.waiting ?? [])];
  const bound = plan.create.flatMap((c) => (c.node !== undefined ? [c.node] : []));
  // Asked after the deletions, so a pod replaced in place frees its room first.
  const noRoom = o.global !== undefined && bound.length > 0 ? o.global.noRoom(bound) : new Map<string, string>();
  const created = new Map<string, number>();
  for (const c of plan.create) {
    const why = c.node === undefined ? undefined : noRoom.get(c.node);
    if (why !== undefined) {
      unplaced.push(`${c.node ?? ''}: ${why}`);
      continue;
    }
    createPod(store, d, c, o.updateHash, o.t, o.global);
    created.set(c.hash, (created.get(c.hash) ?? 0) + 1);
  }
  const message = scalingMessage(created, plan.delete, o.updateHash, o.updateRev.revision);
  if (message !== undefined) recordEvent(store, o.t, { kind: 'Deployment', name: d.metadata.name, type: 'Normal', reason: 'ScalingPods', message });
  return unplaced;
}

/** One pod of revision `c.hash` (its template from the Revision when it is not the update revision), bound when `c.node` is set. */
function createPod(store: Store, d: Deployment, c: RolloutPlan['create'][number], updateHash: string, t: Date, global?: GlobalRollout): void {
  const template = c.hash === updateHash ? d : withTemplate(d, store.get('Revision', revisionName(d.metadata.name, c.hash))?.template);
  const pod = newPod(template, c.hash, c.node);
  if (c.node !== undefined && global?.deviceGrants !== undefined) {
    const grants = global.deviceGrants(c.node, pod.spec);
    if (grants !== undefined && grants.length > 0) pod.spec.deviceGrants = grants;
  }
  if (c.node !== undefined) pod.status.conditions = setCondition(pod.status.conditions, { type: 'PodScheduled', status: 'True' }, t.toISOString());
  store.create(pod);
}

function plannerPod(p: Pod, nodeReady: ReadonlyMap<string, boolean>): PlannerPod {
  // A pod on a node that stopped reporting cannot be counted on.
  const nodeOk = p.spec.nodeName === undefined || nodeReady.get(p.spec.nodeName) !== false;
  const ready = nodeOk && isPodReady(p);
  const out: PlannerPod = {
    name: p.metadata.name,
    hash: p.metadata.annotations[TEMPLATE_HASH_ANNOTATION] ?? '',
    ready,
    createdAt: Date.parse(p.metadata.creationTimestamp) || 0,
  };
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

/** Puts the stable revision's template back into the spec; the next pass rolls it out. */
function rollBack(ctx: RolloutContext, d: Deployment, target: RevisionObject, failed: RevisionObject, why: string): void {
  const { store, now, log } = ctx;
  const fresh = store.get('Deployment', d.metadata.name);
  if (!fresh) return;
  const next = structuredClone(fresh) as Deployment;
  next.spec.template = structuredClone(target.template) as Deployment['spec']['template'];
  const reason = why.length > 1500 ? `${why.slice(0, 1500)}…` : why;
  next.status.rollout = {
    ...(next.status.rollout ?? { phase: 'Failed' }),
    phase: 'Failed',
    message: reason,
    rolledBackFrom: { revision: failed.revision, hash: failed.templateHash, reason },
  };
  store.update(next);
  const message = `rollout of revision ${failed.revision} failed (${reason}); rolled back to revision ${target.revision} (${target.images.join(',')})`;
  recordEvent(store, now(), { kind: 'Deployment', name: d.metadata.name, type: 'Warning', reason: 'RolledBack', message });
  log.warn(`deployment ${d.metadata.name}: ${message}`);
}
