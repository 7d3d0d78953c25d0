import type { RolloutPhase } from '../../protocol/objects.js';

/**
 * The rollout planner: a pure function of one deployment's pods and policy (no store, no
 * clock — `now` comes in), so the arithmetic is table-tested (planner.test.ts) and both the
 * replicated DeploymentController and the global-mode controller can call it.
 *
 * Vocabulary (Kubernetes'): the *update revision* is the template the spec asks for; pods of
 * any other revision are *old*; a pod is *available* once Ready for minReadySeconds; the
 * *stable revision* is the last one that was fully available (the rollback target).
 *
 * Invariants the plan keeps, whatever the input:
 * - RollingUpdate: pods are created only while the total stays ≤ replicas + maxSurge, and old
 *   pods are deleted only while the available count stays ≥ replicas − maxUnavailable (old
 *   pods that are not available go first: deleting them costs no availability).
 * - Recreate: every old pod is deleted before any pod of the update revision is created.
 * - Canary N: at most N pods of the update revision until promoted, then a normal rolling update.
 * - Paused: a rollout neither creates update pods nor deletes old ones; missing pods are
 *   refilled from the stable revision (self-healing keeps working while paused).
 * - Global mode: one pod per node; offline nodes are skipped (their pods are left alone and
 *   they do not hold the rollout back; one with no pod at all gets its pod bound at once);
 *   maxSurge/maxUnavailable count online nodes.
 */

export interface PlannerPod {
  name: string;
  /** Template hash of the revision this pod runs. */
  hash: string;
  /** Bound node; undefined while unscheduled. */
  node?: string;
  ready: boolean;
  /** When Ready last became True (ms); undefined = unknown (then Ready counts as available). */
  readySince?: number;
  createdAt: number;
  /** Why the pod is not ready (ErrImagePull: …), for failure messages. */
  problem?: string;
}

export interface PlannerStrategy {
  type: 'RollingUpdate' | 'Recreate';
  maxSurge: number | string;
  maxUnavailable: number | string;
  /** Pods of the update revision to run before pausing for `promote`. */
  canary?: number;
}

export interface RolloutInput {
  mode: 'replicated' | 'global';
  /** replicated: the replica count. Ignored in global mode (one per node in `nodes`). */
  replicas: number;
  /** global mode: the nodes that should run one pod each. */
  nodes?: ReadonlyArray<{ name: string; online: boolean }>;
  updateHash: string;
  /** Last fully available revision; undefined before the first rollout completed. */
  stableHash?: string;
  strategy: PlannerStrategy;
  minReadySeconds: number;
  progressDeadlineSeconds: number;
  paused: boolean;
  /** The canary of this update revision was promoted. */
  promoted: boolean;
  now: number;
  /** From the last status: fingerprint of progress and when it last changed. */
  progressKey?: string;
  lastProgressAt?: number;
  pods: readonly PlannerPod[];
}

export interface RolloutCounts {
  /** Pods that should exist (replicas, or eligible nodes in global mode). */
  desired: number;
  total: number;
  updated: number;
  ready: number;
  available: number;
  updatedAvailable: number;
  old: number;
}

export interface RolloutPlan {
  /** Pods to create, of which revision, and (global mode) on which node. */
  create: Array<{ hash: string; node?: string }>;
  delete: Array<{ name: string; reason: string }>;
  counts: RolloutCounts;
  /** A rollout is something to report on: the update revision is not yet the stable one. */
  inRollout: boolean;
  /** The update revision is fully available: it becomes the stable revision. */
  complete: boolean;
  phase: RolloutPhase;
  progressKey: string;
  /** Progress happened in this pass (lastProgressAt := now). */
  progressed: boolean;
  deadlineExceeded: boolean;
  message: string;
  /** Come back then (minReadySeconds ripening, deadline). */
  requeueAfterMs?: number;
}

/** maxSurge (round up) / maxUnavailable (round down) of `total`, as Kubernetes resolves IntOrString. */
export function resolveIntOrPercent(v: number | string, total: number, roundUp: boolean): number {
  if (typeof v === 'number') return Math.max(0, Math.floor(v));
  const m = /^(\d{1,3})%$/.exec(v);
  if (!m) return 0;
  const exact = (Number(m[1]) * total) / 100;
  return Math.max(0, roundUp ? Math.ceil(exact) : Math.floor(exact));
}

/** Surge and unavailability budgets; both 0 would deadlock, so unavailability becomes 1 (as Kubernetes requires). */
export function budgets(strategy: PlannerStrategy, total: number): { surge: number; unavailable: number } {
  const surge = resolveIntOrPercent(strategy.maxSurge, total, true);
  let unavailable = resolveIntOrPercent(strategy.maxUnavailable, total, false);
  if (surge === 0 && unavailable === 0) unavailable = 1;
  return { surge, unavailable: Math.min(unavailable, total) };
}

export function isAvailable(p: PlannerPod, minReadySeconds: number, now: number): boolean {
  if (!p.ready) return false;
  if (minReadySeconds <= 0 || p.readySince === undefined) return true;
  return now - p.readySince >= minReadySeconds * 1000;
}

/** Cheapest pods to lose first: unscheduled, then not available, then newest. */
function byDeletionCost(avail: (p: PlannerPod) => boolean) {
  return (a: PlannerPod, b: PlannerPod): number => {
    const rank = (p: PlannerPod): number => (p.node === undefined ? 0 : !p.ready ? 1 : !avail(p) ? 2 : 3);
    const r = rank(a) - rank(b);
    if (r !== 0) return r;
    if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
    return a.name < b.name ? -1 : 1;
  };
}

export function planRollout(input: RolloutInput): RolloutPlan {
  return input.mode === 'global' ? planGlobal(input) : planReplicated(input);
}

function planReplicated(input: RolloutInput): RolloutPlan {
  const { now, updateHash, strategy } = input;
  const R = Math.max(0, input.replicas);
  const avail = (p: PlannerPod): boolean => isAvailable(p, input.minReadySeconds, now);
  const cost = byDeletionCost(avail);
  const upd = input.pods.filter((p) => p.hash === updateHash);
  const old = input.pods.filter((p) => p.hash !== updateHash);
  const create: RolloutPlan['create'] = [];
  const del: RolloutPlan['delete'] = [];
  // A revision that never was fully available is being rolled out; one that was (e.g. after a
  // rollback to it) is still "in rollout" while pods of other revisions remain.
  const fresh = input.stableHash !== updateHash;
  const inRollout = fresh || old.length > 0;
  const canaryCap = strategy.type === 'RollingUpdate' && strategy.canary !== undefined && !input.promoted && fresh ? Math.min(strategy.canary, R) : R;

  if (old.length === 0) {
    // One revision: plain replica keeping.
    for (let i = upd.length; i < R; i++) create.push({ hash: updateHash });
    if (upd.length > R) for (const p of [...upd].sort(cost).slice(0, upd.length - R)) del.push({ name: p.name, reason: `scaled down to ${R} replicas` });
  } else if (input.paused) {
    // No rollout steps while paused; keep the pod count with the stable revision.
    const refill = input.stableHash ?? updateHash;
    for (let i = input.pods.length; i < R; i++) create.push({ hash: refill });
  } else if (strategy.type === 'Recreate') {
    for (const p of old) del.push({ name: p.name, reason: 'Recreate: old revision stops before the new one starts' });
  } else {
    const { surge, unavailable } = budgets(strategy, R);
    const total = upd.length + old.length;
    // Scale the update revision up within the surge budget.
    if (upd.length < canaryCap) {
      const room = Math.max(0, R + surge - total);
      for (let i = 0; i < Math.min(canaryCap - upd.length, room); i++) create.push({ hash: updateHash });
    } else if (upd.length > canaryCap) {
      for (const p of [...upd].sort(cost).slice(0, upd.length - canaryCap)) del.push({ name: p.name, reason: 'more canary pods than asked for' });
    }
    // Scale old revisions down within the availability budget (Kubernetes' reconcileOldReplicaSets).
    const minAvailable = R - unavailable;
    const updUnavailable = upd.filter((p) => !avail(p)).length;
    let budget = total - minAvailable - updUnavailable;
    // A canary keeps replicas − N old pods serving until it is promoted.
    let oldCap = Math.max(0, old.length - Math.max(0, R - canaryCap));
    if (budget > 0 && oldCap > 0) {
      const sorted = [...old].sort(cost);
      const unhealthy = sorted.filter((p) => !avail(p));
      for (const p of unhealthy) {
        if (budget <= 0 || oldCap <= 0) break;
        del.push({ name: p.name, reason: 'old revision, not available' });
        budget--;
        oldCap--;
      }
      let canLose = input.pods.filter(avail).length - minAvailable;
      for (const p of sorted.filter(avail)) {
        if (budget <= 0 || oldCap <= 0 || canLose <= 0) break;
        del.push({ name: p.name, reason: 'old revision, replaced' });
        budget--;
        oldCap--;
        canLose--;
      }
    }
  }

  const counts: RolloutCounts = {
    desired: R,
    total: input.pods.length,
    updated: upd.length,
    ready: input.pods.filter((p) => p.ready).length,
    available: input.pods.filter(avail).length,
    updatedAvailable: upd.filter(avail).length,
    old: old.length,
  };
  const complete = old.length === 0 && upd.length >= R && counts.updatedAvailable >= R;
  const canaryHeld = canaryCap < R && counts.updatedAvailable >= canaryCap && old.length <= R - canaryCap;
  return finish(input, { create, delete: del, counts, inRollout, complete, canaryHeld, canaryCap, pods: upd });
}

function planGlobal(input: RolloutInput): RolloutPlan {
  const { now, updateHash, strategy } = input;
  const avail = (p: PlannerPod): boolean => isAvailable(p, input.minReadySeconds, now);
  const nodes = input.nodes ?? [];
  const online = nodes.filter((n) => n.online);
  const eligible = new Set(nodes.map((n) => n.name));
  const create: RolloutPlan['create'] = [];
  const del: RolloutPlan['delete'] = [];
  const fresh = input.stableHash !== updateHash;
  const byNode = new Map<string, PlannerPod[]>();
  for (const p of input.pods) {
    if (p.node === undefined || !eligible.has(p.node)) {
      del.push({ name: p.name, reason: p.node === undefined ? 'global pods are bound to their node' : `node ${p.node} no longer matches` });
      continue;
    }
    const list = byNode.get(p.node) ?? [];
    list.push(p);
    byNode.set(p.node, list);
  }
  // An offline node with no pod at all gets one bound now: nothing to disrupt, and its agent
  // starts it when it comes back (its old pod, if any, is left alone until then).
  for (const n of nodes) if (!n.online && !byNode.has(n.name)) create.push({ hash: updateHash, node: n.name });
  const { surge, unavailable } = budgets(strategy, online.length);
  const canaryCap =
    strategy.type === 'RollingUpdate' && strategy.canary !== undefined && !input.promoted && fresh ? Math.min(strategy.canary, online.length) : Infinity;

  // Per online node: which state is it in?
  let unavailableNow = 0;
  let surging = 0;
  let updatedNodes = 0;
  const toUpdate: Array<{ node: string; old: PlannerPod[]; oldAvailable: boolean }> = [];
  for (const n of online) {
    const pods = byNode.get(n.name) ?? [];
    const upd = pods
      .filter((p) => p.hash === updateHash)
      .sort(byDeletionCost(avail))
      .reverse();
    const old = pods.filter((p) => p.hash !== updateHash);
    const newest = upd[0];
    for (const extra of upd.slice(1)) del.push({ name: extra.name, reason: 'one pod per node' });
    const nodeAvailable = pods.some(avail);
    if (!nodeAvailable) unavailableNow++;
    if (newest !== undefined) {
      updatedNodes++;
      if (old.length > 0) {
        if (avail(newest)) for (const p of old) del.push({ name: p.name, reason: 'old revision, replaced on its node' });
        else surging++;
      }
      continue;
    }
    if (old.length === 0) {
      create.push({ hash: updateHash, node: n.name }); // a node with nothing: just run it
      continue;
    }
    toUpdate.push({ node: n.name, old, oldAvailable: old.some(avail) });
  }
  if (!input.paused) {
    // Nodes whose old pod is down anyway go first: updating them costs no availability.
    toUpdate.sort((a, b) => Number(a.oldAvailable) - Number(b.oldAvailable) || (a.node < b.node ? -1 : 1));
    let canaryRoom = canaryCap - updatedNodes;
    let unavailableRoom = unavailable - unavailableNow;
    let surgeRoom = surge - surging;
    for (const t of toUpdate) {
      if (canaryRoom <= 0) break;
      const replaceInPlace = (): void => {
        for (const p of t.old) del.push({ name: p.name, reason: 'old revision' });
        // Recreate: the node is empty on the next pass and gets its new pod then.
        if (strategy.type !== 'Recreate') create.push({ hash: updateHash, node: t.node });
        canaryRoom--;
      };
      if (strategy.type === 'Recreate' || !t.oldAvailable) {
        replaceInPlace(); // costs no availability budget (or Recreate ignores it)
      } else if (surgeRoom > 0) {
        // Surge: the new pod starts beside the old one, which goes once the new one is available.
        create.push({ hash: updateHash, node: t.node });
        surgeRoom--;
        canaryRoom--;
      } else if (unavailableRoom > 0) {
        unavailableRoom--;
        replaceInPlace();
      }
    }
  }

  const all = input.pods.filter((p) => p.node !== undefined && online.some((n) => n.name === p.node));
  const upd = all.filter((p) => p.hash === updateHash);
  const counts: RolloutCounts = {
    desired: online.length,
    total: all.length,
    updated: upd.length,
    ready: all.filter((p) => p.ready).length,
    available: all.filter(avail).length,
    updatedAvailable: upd.filter(avail).length,
    old: all.length - upd.length,
  };
  // Offline nodes are skipped: they are updated when they come back, not waited for.
  const complete = counts.old === 0 && counts.updatedAvailable >= online.length;
  const inRollout = fresh || counts.old > 0;
  const cap = Number.isFinite(canaryCap) ? canaryCap : online.length;
  const canaryHeld = cap < online.length && counts.updatedAvailable >= cap;
  return finish(input, { create, delete: del, counts, inRollout, complete, canaryHeld, canaryCap: cap, pods: upd });
}

/** Phase, progress and deadline, shared by both modes. */
function finish(
  input: RolloutInput,
  r: {
    create: RolloutPlan['create'];
    delete: RolloutPlan['delete'];
    counts: RolloutCounts;
    inRollout: boolean;
    complete: boolean;
    canaryHeld: boolean;
    canaryCap: number;
    pods: readonly PlannerPod[];
  },
): RolloutPlan {
  const counts = r.counts;
  const now = input.now;
  const progressKey = `${counts.updated}/${counts.updatedAvailable}/${counts.old}/${counts.desired}`;
  const progressed = input.progressKey !== progressKey;
  const lastProgressAt = progressed || input.lastProgressAt === undefined ? now : input.lastProgressAt;
  const deadlineMs = input.progressDeadlineSeconds * 1000;
  let phase: RolloutPhase;
  let message: string;
  let deadlineExceeded = false;
  let requeueAfterMs: number | undefined;
  const summary = `${counts.updatedAvailable} of ${counts.desired} updated pods available, ${counts.old} old pod(s) left`;
  if (r.complete) {
    phase = 'Complete';
    message = `rollout complete: ${counts.updatedAvailable} of ${counts.desired} updated pods available`;
  } else if (!r.inRollout) {
    // The update revision already was fully available: pod churn now is self-healing, not a rollout.
    phase = 'Complete';
    message = `${counts.available} of ${counts.desired} pods available`;
  } else if (input.paused) {
    phase = 'Paused';
    message = `rollout paused: ${summary}`;
  } else if (r.canaryHeld) {
    phase = 'CanaryPaused';
    message = `canary: ${counts.updatedAvailable} pod(s) of the new revision available; run \`orchard rollout promote\` to continue`;
  } else {
    phase = 'Progressing';
    message = `waiting for rollout: ${summary}`;
    const idle = now - lastProgressAt;
    if (idle > deadlineMs) {
      deadlineExceeded = true;
      phase = 'Failed';
      const problems = r.pods
        .filter((p) => !isAvailable(p, input.minReadySeconds, now))
        .map((p) => `${p.name}: ${p.problem ?? (p.node === undefined ? 'unscheduled' : p.ready ? 'not ready for minReadySeconds yet' : 'not ready')}`);
      // No elapsed-time number in the text: the status must not change on every pass.
      message = `ProgressDeadlineExceeded: no progress within progressDeadlineSeconds (${input.progressDeadlineSeconds}s): ${summary}${problems.length ? `; ${problems.slice(0, 3).join('; ')}` : ''}`;
    } else {
      requeueAfterMs = deadlineMs - idle + 50;
    }
  }
  // Pods that are Ready but not yet available ripen on their own: look again then.
  if (input.minReadySeconds > 0) {
    for (const p of input.pods) {
      if (!p.ready || p.readySince === undefined) continue;
      const at = p.readySince + input.minReadySeconds * 1000 - now;
      if (at > 0) requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, at + 50);
    }
  }
  const plan: RolloutPlan = {
    create: r.create,
    delete: r.delete,
    counts,
    inRollout: r.inRollout,
    complete: r.complete,
    phase,
    progressKey,
    progressed,
    deadlineExceeded,
    message,
  };
  if (requeueAfterMs !== undefined && Number.isFinite(requeueAfterMs)) plan.requeueAfterMs = Math.max(0, Math.ceil(requeueAfterMs));
  return plan;
}
