import type { PodSpec } from '../../protocol/manifest.js';
import { pathAllowed } from '../../protocol/host-path.js';
import type { NodeObject } from '../../protocol/objects.js';
import { parseBytes, formatBytes } from '../../protocol/quantity.js';
import { filterPlugin } from './filter-plugin.js';
import type { SchedNode, SchedPod, SchedStorage, VolumePin } from './types.js';

/**
 * Storage feasibility (issue 7), pure like every filter:
 * - `volume-affinity`: a pod whose persistent volume already lives on a node goes only there
 *   (SchedPod.volumePins, computed by scheduleWithVolumes from the hub's Volume records).
 * - `host-path`: every hostPath volume must sit under a prefix of the node's allow-list, when the
 *   node reported one (older agents report none: the agent still refuses on its side).
 * - `ephemeral-storage`: the pod's ephemeral-storage requests must fit the node's free disk minus
 *   what pods already bound there requested.
 */

/** Total ephemeral-storage a pod requests (requests, else limits), in bytes. */
export function podEphemeralRequest(spec: Pick<PodSpec, 'containers'>): number {
  let total = 0;
  for (const c of spec.containers) {
    const q = c.resources?.requests?.['ephemeral-storage'] ?? c.resources?.limits?.['ephemeral-storage'];
    total += q === undefined ? 0 : (parseBytes(q) ?? 0);
  }
  return total;
}

export { pathAllowed };

/** The scheduler's storage view of a node (snapshot.ts calls this). */
export function schedStorage(n: NodeObject): SchedStorage {
  const s: SchedStorage = { ephemeralRequested: 0 };
  const free = n.status.usage?.diskFreeBytes ?? n.status.info?.disk?.freeBytes;
  if (free !== undefined) s.diskFreeBytes = free;
  const allow = n.status.info?.storage?.hostPathAllow;
  if (allow !== undefined) s.hostPathAllow = allow;
  return s;
}

/** Books a bound pod's ephemeral-storage request on its node (snapshot.ts calls this). */
export function bookEphemeral(node: SchedNode, spec: Pick<PodSpec, 'containers'>): void {
  if (node.storage !== undefined) node.storage.ephemeralRequested += podEphemeralRequest(spec);
}

function firstPinMiss(pod: SchedPod, node: SchedNode): VolumePin | undefined {
  for (const pin of pod.volumePins ?? []) if (pin.node !== node.name) return pin;
  return undefined;
}

export const volumeAffinity = filterPlugin(
  'volume-affinity',
  (pod, node) => pod.volumePins === undefined || pod.volumePins.length === 0 || firstPinMiss(pod, node) === undefined,
  (pod, node) => {
    const pin = firstPinMiss(pod, node);
    return `volume on another node: ${pin?.volume ?? '?'} lives on ${pin?.node ?? '?'}`;
  },
);

function firstDisallowed(pod: SchedPod, node: SchedNode): string | undefined {
  const allow = node.storage?.hostPathAllow;
  if (allow === undefined) return undefined;
  for (const v of pod.spec.volumes ?? []) if (v.hostPath !== undefined && !pathAllowed(v.hostPath.path, allow)) return v.hostPath.path;
  return undefined;
}

function hasHostPath(pod: SchedPod): boolean {
  return (pod.spec.volumes ?? []).some((v) => v.hostPath !== undefined);
}

export const hostPathAllowed = filterPlugin(
  'host-path',
  (pod, node) => !hasHostPath(pod) || firstDisallowed(pod, node) === undefined,
  (pod, node) => {
    const allow = node.storage?.hostPathAllow ?? [];
    return `hostPath not allowed: ${firstDisallowed(pod, node) ?? '?'} (node allows ${allow.length === 0 ? 'no host paths' : allow.join(', ')}; agent flag --host-path-allow)`;
  },
);

export const ephemeralStorageFit = filterPlugin(
  'ephemeral-storage',
  (pod, node) => {
    const want = podEphemeralRequest(pod.spec);
    const free = node.storage?.diskFreeBytes;
    return want === 0 || free === undefined || want <= free - (node.storage?.ephemeralRequested ?? 0);
  },
  (pod, node) => {
    const free = Math.max(0, (node.storage?.diskFreeBytes ?? 0) - (node.storage?.ephemeralRequested ?? 0));
    return `insufficient ephemeral-storage: ${formatBytes(free)} free (needs ${formatBytes(podEphemeralRequest(pod.spec))})`;
  },
);

export const storageFilters = [volumeAffinity, hostPathAllowed, ephemeralStorageFit] as const;
