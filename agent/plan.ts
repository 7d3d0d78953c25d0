import type { DesiredPod } from '../protocol/messages.js';
import { containerKey, joinsPodNetwork, specHash } from './container-spec.js';
import type { RuntimeContainer } from './runtime/runtime.js';
import { LABELS } from './runtime/runtime.js';

/**
 * The agent's pure core: given what is desired, what the engine shows and what the agent
 * remembers about restarts, decide what to do now and when to look again. No I/O, no clock
 * (time comes in as `now`), deterministic: table-tested in plan.test.ts.
 *
 * Rules:
 * - Containers of this node whose pod uid is not desired are removed (stray, replaced, deleted).
 * - A container whose spec hash differs from the desired one is removed and recreated.
 * - Missing containers are created in pod order; a container that joins the pod network
 *   namespace is only created/started while its first container runs (or is about to).
 * - Exited containers restart per restartPolicy with back-off: the first restart at once,
 *   then 1 s, 2 s, 4 s … capped at 300 s; a container that ran ≥ 10 min starts over at once.
 * - A joined container that started before its namespace owner's current run is restarted
 *   (its network namespace went away with the owner's previous run).
 * - A running container whose liveness/startup probe gave up (state.unhealthy, same run) is
 *   stopped; from then on it is an exited container like any other (restart, back-off, count).
 */

export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_CAP_MS = 300_000;
export const BACKOFF_RESET_AFTER_MS = 10 * 60_000;
const DEFAULT_GRACE_SECONDS = 10;

/** What the agent remembers per container id across passes (in memory; see README). */
export interface RestartEntry {
  /** Restarts done by the agent (reported as restartCount). */
  restarts: number;
  /** Restarts since the last back-off reset; the next delay is restartDelayMs(backoffStep). */
  backoffStep: number;
  lastRestartAt: number;
}

/**
 * VolumePathEscape: a host path the container binds leads outside its volume / the hostPath allow-list (storage/resolve-beneath.ts).
 * `Forbidden`: the device's policy refuses the pod (agent --deny-… flags); it waits until the pod changes.
 */
export type FailureReason =
  | 'ErrImagePull'
  | 'CreateContainerError'
  | 'RunContainerError'
  | 'CreateContainerConfigError'
  | 'VolumePathEscape'
  | 'Forbidden'
  /** A host device granted to the pod is not on the node (issue 18): it waits until the device is back. */
  | 'DeviceUnavailable';

/** A failed create/pull/start per pod container (key from containerKey), retried after retryAt. */
export interface ContainerFailure {
  reason: FailureReason;
  message: string;
  failures: number;
  retryAt: number;
}

/** A container run the probes gave up on (see probes/probe-manager.ts): stopped, then restarted per policy. */
export interface UnhealthyRun {
  /** Start time of the run that failed; a later run of the same container is not affected. */
  startedAt: string | undefined;
  /** "Unhealthy: liveness probe failed: …" */
  reason: string;
}

export interface RestartState {
  containers: ReadonlyMap<string, RestartEntry>;
  failures: ReadonlyMap<string, ContainerFailure>;
  /** Running containers (by id) whose liveness or startup probe failed. */
  unhealthy?: ReadonlyMap<string, UnhealthyRun>;
}

export type Action =
  | { type: 'create'; pod: DesiredPod; container: string; index: number }
  | { type: 'start'; id: string; pod: DesiredPod; container: string; index: number; crashRestart: boolean; resetBackoff: boolean }
  | { type: 'restart'; id: string; pod: DesiredPod; container: string; index: number; reason: string }
  /** Stop an unhealthy container; the exited-container rules then restart it (policy, back-off, count). */
  | { type: 'kill'; id: string; pod: DesiredPod; container: string; index: number; reason: string; graceSeconds: number }
  | { type: 'remove'; id: string; reason: string; graceSeconds: number };

export interface Plan {
  actions: Action[];
  /** Earliest time (ms) the planner wants to run again; undefined = only on change. */
  wakeAt?: number;
  /** Exited containers waiting out a back-off: id → the time they will restart. */
  backoff: Map<string, number>;
  /** The container chosen for each desired pod container (containerKey → container). */
  current: Map<string, RuntimeContainer>;
}

export function restartDelayMs(step: number): number {
  if (step <= 0) return 0;
  return Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(step - 1, 30));
}

export function parseTime(iso: string | undefined): number | undefined {
  if (iso === undefined) return undefined;
  const t = Date.parse(iso);
  return Number.isFinite(t) && t > 0 ? t : undefined;
}

function graceOf(c: RuntimeContainer): number {
  const g = Number(c.labels[LABELS.grace]);
  return Number.isInteger(g) && g >= 0 ? g : DEFAULT_GRACE_SECONDS;
}

/** Prefers a running container, then the newest. */
function better(a: RuntimeContainer, b: RuntimeContainer): RuntimeContainer {
  if ((a.state === 'running') !== (b.state === 'running')) return a.state === 'running' ? a : b;
  return (parseTime(a.createdAt) ?? 0) >= (parseTime(b.createdAt) ?? 0) ? a : b;
}

export function plan(desired: readonly DesiredPod[], observed: readonly RuntimeContainer[], now: number, state: RestartState): Plan {
  const removals: Action[] = [];
  const work: Action[] = [];
  const backoff = new Map<string, number>();
  const current = new Map<string, RuntimeContainer>();
  let wakeAt: number | undefined;
  const wake = (t: number): void => {
    wakeAt = wakeAt === undefined ? t : Math.min(wakeAt, t);
  };
  const remove = (c: RuntimeContainer, reason: string): void => {
    removals.push({ type: 'remove', id: c.id, reason, graceSeconds: graceOf(c) });
  };

  const desiredByUid = new Map<string, DesiredPod>();
  for (const p of desired) if (!desiredByUid.has(p.uid)) desiredByUid.set(p.uid, p);

  const byPod = new Map<string, RuntimeContainer[]>();
  for (const c of observed) {
    const uid = c.labels[LABELS.podUid];
    if (uid === undefined) {
      remove(c, 'stray container without a pod uid');
      continue;
    }
    if (!desiredByUid.has(uid)) {
      remove(c, 'pod is no longer desired on this node');
      continue;
    }
    let list = byPod.get(uid);
    if (list === undefined) byPod.set(uid, (list = []));
    list.push(c);
  }

  for (const pod of desiredByUid.values()) {
    const cs = byPod.get(pod.uid) ?? [];
    const names = new Set(pod.spec.containers.map((c) => c.name));
    for (const c of cs) {
      if (!names.has(c.labels[LABELS.container] ?? '')) remove(c, 'container is not in the pod spec');
    }
    // The network-namespace owner (first container): its id, whether it runs or will run this pass.
    let ownerId: string | undefined;
    let ownerStartedAt: number | undefined;
    let ownerReady = false;

    pod.spec.containers.forEach((spec, index) => {
      const key = containerKey(pod.uid, spec.name);
      const hash = specHash(pod, index);
      const joins = joinsPodNetwork(pod, index);
      let chosen: RuntimeContainer | undefined;
      for (const c of cs) {
        if (c.labels[LABELS.container] !== spec.name) continue;
        if (c.labels[LABELS.specHash] !== hash) {
          remove(c, 'spec changed');
          continue;
        }
        if (chosen === undefined) chosen = c;
        else {
          const keep = better(chosen, c);
          remove(keep === chosen ? c : chosen, 'duplicate container');
          chosen = keep;
        }
      }
      if (chosen !== undefined && joins && chosen.networkMode !== `container:${ownerId ?? ''}`) {
        remove(chosen, 'network namespace owner was replaced');
        chosen = undefined;
      }
      const failure = state.failures.get(key);
      const failureWaiting = failure !== undefined && now < failure.retryAt;
      if (failureWaiting) wake(failure.retryAt);

      if (chosen === undefined) {
        if (joins && !ownerReady) return; // wait for the owner to run
        if (failureWaiting) return;
        work.push({ type: 'create', pod, container: spec.name, index });
        if (index === 0) ownerReady = true;
        return;
      }
      current.set(key, chosen);
      if (index === 0) {
        ownerId = chosen.id;
        ownerStartedAt = parseTime(chosen.startedAt);
      }

      switch (chosen.state) {
        case 'running': {
          const sick = state.unhealthy?.get(chosen.id);
          if (sick !== undefined && sick.startedAt === chosen.startedAt) {
            work.push({
              type: 'kill',
              id: chosen.id,
              pod,
              container: spec.name,
              index,
              reason: sick.reason,
              graceSeconds: pod.spec.terminationGracePeriodSeconds,
            });
            return;
          }
          if (index === 0) ownerReady = true;
          const started = parseTime(chosen.startedAt);
          if (joins && ownerReady && ownerStartedAt !== undefined && started !== undefined && started < ownerStartedAt) {
            work.push({ type: 'restart', id: chosen.id, pod, container: spec.name, index, reason: 'network namespace owner restarted' });
          }
          return;
        }
        case 'created': {
          if ((joins && !ownerReady) || failureWaiting) return;
          work.push({ type: 'start', id: chosen.id, pod, container: spec.name, index, crashRestart: false, resetBackoff: false });
          if (index === 0) ownerReady = true;
          return;
        }
        case 'exited':
        case 'dead': {
          const policy = pod.spec.restartPolicy;
          const wantsRestart = policy === 'Always' || (policy === 'OnFailure' && chosen.exitCode !== 0);
          if (!wantsRestart) return;
          const entry = state.containers.get(chosen.id);
          const started = parseTime(chosen.startedAt);
          const finished = parseTime(chosen.finishedAt);
          const ranLong = started !== undefined && finished !== undefined && finished - started >= BACKOFF_RESET_AFTER_MS;
          const step = ranLong ? 0 : (entry?.backoffStep ?? 0);
          const base = Math.max(finished ?? 0, entry?.lastRestartAt ?? 0);
          const at = base + restartDelayMs(step);
          if (now < at || failureWaiting) {
            const retry = failureWaiting ? Math.max(at, failure.retryAt) : at;
            backoff.set(chosen.id, retry);
            wake(retry);
            return;
          }
          if (joins && !ownerReady) return;
          work.push({ type: 'start', id: chosen.id, pod, container: spec.name, index, crashRestart: true, resetBackoff: ranLong });
          if (index === 0) ownerReady = true;
          return;
        }
        default:
          // paused / restarting / removing: transitional states owned by someone else; look again soon.
          wake(now + 5000);
      }
    });
  }

  const out: Plan = { actions: [...removals, ...work], backoff, current };
  if (wakeAt !== undefined) out.wakeAt = wakeAt;
  return out;
}
