import { podRequests } from '../../protocol/manifest.js';
import type { DeviceGrant } from '../../protocol/devices.js';
import { bookDevices, deviceWants } from './devices.js';
import { podHostPorts } from './host-ports.js';
import type { PodContext, SchedNode, SchedPod, Toleration } from './types.js';

/** Everything plugins need from a pod, computed once per pod instead of once per node. */
export function podContext(pod: SchedPod): PodContext {
  const spec = pod.spec;
  const specTolerations: readonly Toleration[] = spec.tolerations ?? [];
  const affinity = spec.affinity?.nodeAffinity;
  return {
    requests: podRequests(spec),
    hostPorts: podHostPorts(spec),
    arch: spec.arch !== undefined && spec.arch.length > 0 ? spec.arch : undefined,
    nodeSelector: spec.nodeSelector === undefined ? [] : Object.entries(spec.nodeSelector),
    tolerations: pod.tolerations === undefined || pod.tolerations.length === 0 ? specTolerations : [...specTolerations, ...pod.tolerations],
    strategy: pod.strategy ?? 'spread',
    owner: pod.owner,
    affinityRequired: affinity?.required ?? [],
    affinityPreferred: affinity?.preferred ?? [],
    spreadBy: pod.spreadBy,
    imagePlatforms: pod.imagePlatforms ?? [],
    devices: deviceWants(spec),
  };
}

/**
 * Adds a pod to a node's bookkeeping in place: what binding it (or finding it already bound)
 * costs the node. Used by the snapshot builder and by scheduleBatch after each bind.
 */
export function accountPod(node: SchedNode, ctx: Pick<PodContext, 'requests' | 'hostPorts' | 'owner'>, grants?: readonly DeviceGrant[]): void {
  if (grants !== undefined && grants.length > 0) bookDevices((node.deviceUse ??= new Map()), grants, 1);
  node.requested.cpuMillis += ctx.requests.cpuMillis;
  node.requested.memoryBytes += ctx.requests.memoryBytes;
  node.requested.pods += 1;
  for (const w of ctx.hostPorts) node.usedHostPorts.add(w.key);
  if (ctx.owner !== undefined) {
    node.podsByOwner.set(ctx.owner, (node.podsByOwner.get(ctx.owner) ?? 0) + 1);
    node.topology?.add(node, ctx.owner);
  }
}
