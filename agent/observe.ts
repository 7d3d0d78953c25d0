import type { DesiredPod, ObservedPod } from '../protocol/messages.js';
import type { ContainerStatus, PodCondition, PodPhase } from '../protocol/objects.js';
import { containerKey } from './container-spec.js';
import type { Plan, RestartState, UnhealthyRun } from './plan.js';
import { parseTime } from './plan.js';

/**
 * Pure: turns the planner's view of each desired pod into the ObservedPod set the hub sees.
 * Kubernetes vocabulary: waiting (ContainerCreating, ErrImagePull, CrashLoopBackOff…),
 * running, terminated (Completed, Error, OOMKilled).
 */

/** What the probes add to the picture (see probes/). */
export interface ProbeView {
  /** container id → ready, for running containers that have probes; others are ready when running. */
  readiness?: ReadonlyMap<string, boolean>;
  /** container id → why the agent stopped that run (liveness/startup), keyed to the stopped run. */
  terminations?: ReadonlyMap<string, UnhealthyRun>;
}

export function observePods(desired: readonly DesiredPod[], p: Pick<Plan, 'backoff' | 'current'>, state: RestartState, probes: ProbeView = {}): ObservedPod[] {
  const seen = new Set<string>();
  const out: ObservedPod[] = [];
  for (const pod of desired) {
    if (seen.has(pod.uid)) continue;
    seen.add(pod.uid);
    out.push(observePod(pod, p, state, probes));
  }
  return out;
}

function observePod(pod: DesiredPod, p: Pick<Plan, 'backoff' | 'current'>, state: RestartState, probes: ProbeView): ObservedPod {
  const statuses: ContainerStatus[] = [];
  let notStarted = false;
  let allTerminated = true;
  let allSucceeded = true;
  let firstWaiting: ContainerStatus | undefined;
  let startTime: number | undefined;

  for (const spec of pod.spec.containers) {
    const key = containerKey(pod.uid, spec.name);
    const c = p.current.get(key);
    const failure = state.failures.get(key);
    const s: ContainerStatus = { name: spec.name, image: spec.image, state: 'waiting', restartCount: 0, ready: false };
    if (c === undefined || c.state === 'created') {
      notStarted = true;
      allTerminated = false;
      s.reason = failure?.reason ?? 'ContainerCreating';
      const message = failure?.message ?? c?.error;
      if (message !== undefined && message !== '') s.message = message.slice(0, 4096);
      if (c !== undefined) s.containerId = c.id;
    } else {
      s.containerId = c.id;
      s.restartCount = state.containers.get(c.id)?.restarts ?? 0;
      if (c.startedAt !== undefined) s.startedAt = c.startedAt;
      const killed = probes.terminations?.get(c.id);
      const created = parseTime(c.createdAt);
      if (created !== undefined) startTime = startTime === undefined ? created : Math.min(startTime, created);
      if (c.state === 'running' || c.state === 'paused' || c.state === 'restarting') {
        allTerminated = false;
        allSucceeded = false;
        s.state = 'running';
        s.ready = c.state === 'running' && (probes.readiness?.get(c.id) ?? true);
        // A fixed text about the previous run (not a countdown), so the set stays stable.
        if (killed !== undefined && killed.startedAt !== c.startedAt) s.message = `last termination: ${killed.reason}`.slice(0, 4096);
      } else {
        const exitCode = c.exitCode ?? -1;
        const byProbe = killed !== undefined && killed.startedAt === c.startedAt;
        const lastReason = byProbe ? killed.reason : c.oomKilled === true ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error';
        s.exitCode = exitCode;
        if (c.finishedAt !== undefined) s.finishedAt = c.finishedAt;
        const retryAt = p.backoff.get(c.id);
        // A refused mount is not a crash: say why the agent will not start it rather than "back-off".
        const refused = failure?.reason === 'VolumePathEscape';
        if (retryAt !== undefined && !refused) {
          allTerminated = false;
          allSucceeded = false;
          s.state = 'waiting';
          s.reason = 'CrashLoopBackOff';
          // A fixed deadline, not a countdown: the observed set must not change on every pass.
          s.message = `back-off until ${new Date(retryAt).toISOString()} restarting failed container ${spec.name} (last exit ${exitCode}: ${lastReason})`;
        } else if (failure !== undefined) {
          allTerminated = false;
          allSucceeded = false;
          s.reason = failure.reason;
          s.message = failure.message.slice(0, 4096);
        } else {
          s.state = 'terminated';
          s.reason = byProbe ? 'Error' : lastReason;
          if (byProbe) s.message = lastReason.slice(0, 4096);
          if (exitCode !== 0 || byProbe) allSucceeded = false;
        }
      }
    }
    if (s.state === 'waiting' && firstWaiting === undefined) firstWaiting = s;
    statuses.push(s);
  }

  // Terminal phases only where the restart policy lets the pod end (as Kubernetes): with
  // Always, or OnFailure after a failure, the agent is about to restart the container, and a
  // Failed phase seen in that instant would make the hub replace a pod that is healing in place.
  const policy = pod.spec.restartPolicy;
  const willRestart = policy === 'Always' || (policy === 'OnFailure' && !allSucceeded);
  let phase: PodPhase;
  if (notStarted) phase = 'Pending';
  else if (allTerminated && !willRestart) phase = allSucceeded ? 'Succeeded' : 'Failed';
  else phase = 'Running';
  const ready = statuses.every((s) => s.ready);
  const unready = statuses.filter((s) => !s.ready).map((s) => s.name);
  const cond = (type: PodCondition['type']): PodCondition =>
    ready
      ? { type, status: 'True' }
      : { type, status: 'False', reason: 'ContainersNotReady', message: `containers with unready status: [${unready.join(' ')}]` };
  const conditions = [cond('ContainersReady'), cond('Ready')];
  // Host devices (issue 18): a pod holding any says whether they are all here.
  if (pod.devices !== undefined && pod.devices.length > 0) {
    const gone = statuses.find((s) => s.reason === 'DeviceUnavailable');
    conditions.push(
      gone === undefined
        ? { type: 'DeviceUnavailable', status: 'False' }
        : { type: 'DeviceUnavailable', status: 'True', reason: 'DeviceUnplugged', ...(gone.message !== undefined ? { message: gone.message } : {}) },
    );
  }
  const o: ObservedPod = {
    name: pod.name,
    uid: pod.uid,
    phase,
    ready,
    conditions,
    containers: statuses,
  };
  if (pod.deployment !== undefined) o.deployment = pod.deployment;
  if (firstWaiting?.reason !== undefined && firstWaiting.reason !== 'ContainerCreating') {
    o.reason = firstWaiting.reason;
    if (firstWaiting.message !== undefined) o.message = firstWaiting.message;
  }
  if (startTime !== undefined) o.startTime = new Date(startTime).toISOString();
  return o;
}
