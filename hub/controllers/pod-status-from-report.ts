import type { ObservedPod } from '../../protocol/messages.js';
import type { NodeObject, Pod, PodStatus } from '../../protocol/objects.js';
import type { EventInput } from '../events.js';
import { setCondition } from '../objects/conditions.js';

/**
 * A pod's status as its node reports it (one entry of an observed set). Pure: no store, no clock
 * read; `now` stamps the conditions whose status changes.
 *
 * The agent's conditions replace the pod's, except PodScheduled (the hub's own); Ready from
 * `op.ready` when the agent sent none. Each keeps its lastTransitionTime while its status is
 * unchanged (rollouts count minReadySeconds from Ready's), and a change is stamped with the hub's
 * `now`, never a time the node sends: a node that could date its own Ready transition could flip
 * Ready False → True with an old time and skip a rollout's minReadySeconds. Phase, containers,
 * pull progress, reason, message and startTime are the agent's; hostIP is the node's first address.
 */
export function podStatusFromReport(pod: Pod, op: ObservedPod, node: NodeObject | undefined, now: Date): PodStatus {
  const ts = now.toISOString();
  const reported = op.conditions.filter((c) => c.type !== 'PodScheduled').map(({ lastTransitionTime: _nodeTime, ...c }) => c);
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

/**
 * The Events a pod's move from `pod.status` to `next` (on `node`) is worth, in the order they are
 * recorded. Pure. Each fires on the change, not on every report that repeats it.
 */
export function podReportEvents(pod: Pod, next: PodStatus, node: string): EventInput[] {
  const name = pod.metadata.name;
  const out: EventInput[] = [];
  const prev = pod.status.containerStatuses;
  for (const c of next.containerStatuses) {
    const before = prev.find((x) => x.name === c.name);
    if (before && c.restartCount > before.restartCount) {
      out.push({
        kind: 'Pod',
        name,
        type: 'Warning',
        reason: 'Restarted',
        message: `container ${c.name} restarted (exit code ${c.exitCode ?? 'unknown'}${c.reason ? `, ${c.reason}` : ''})`,
      });
    }
    if (c.reason === 'ErrImagePull' && before?.reason !== 'ErrImagePull') {
      out.push({ kind: 'Pod', name, type: 'Warning', reason: 'ErrImagePull', message: c.message ?? `cannot pull ${c.image}` });
    }
    // The device refused a mount whose host path leads out of its volume (a symbolic link): worth an audit trail.
    if (c.reason === 'VolumePathEscape' && before?.reason !== 'VolumePathEscape') {
      out.push({
        kind: 'Pod',
        name,
        type: 'Warning',
        reason: 'VolumePathEscape',
        message: c.message ?? `container ${c.name}: a volume path leads outside its volume`,
      });
    }
    // The node refused the pod's security settings (device policy, runAsNonRoot): say so once.
    if ((c.reason === 'Forbidden' || c.reason === 'CreateContainerConfigError') && (before?.reason !== c.reason || before.message !== c.message)) {
      out.push({ kind: 'Pod', name, type: 'Warning', reason: c.reason, message: `container ${c.name} on ${node}: ${c.message ?? c.reason}` });
    }
  }
  // Host devices (issue 18): a granted device unplugged (the agent stopped the pod), and back.
  const wasGone = pod.status.conditions.some((c) => c.type === 'DeviceUnavailable' && c.status === 'True');
  const gone = next.conditions.find((c) => c.type === 'DeviceUnavailable' && c.status === 'True');
  if (gone !== undefined && !wasGone) {
    out.push({ kind: 'Pod', name, type: 'Warning', reason: 'DeviceUnavailable', message: gone.message ?? `a granted device is not on ${node}` });
  } else if (gone === undefined && wasGone && next.conditions.some((c) => c.type === 'DeviceUnavailable')) {
    out.push({ kind: 'Pod', name, type: 'Normal', reason: 'DeviceAvailable', message: `granted devices are back on ${node}: pod restarted with them` });
  }
  // No Event for a pod turning Running: the pod's own status says it (with startTime), and at
  // fleet scale one Event per pod doubled the writes of a deploy and held 100,000 objects.
  if (pod.status.phase !== next.phase && (next.phase === 'Failed' || next.phase === 'Succeeded')) {
    out.push({ kind: 'Pod', name, type: next.phase === 'Failed' ? 'Warning' : 'Normal', reason: next.phase, message: `pod is ${next.phase} on ${node}` });
  }
  return out;
}
