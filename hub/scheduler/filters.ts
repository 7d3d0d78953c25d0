import { formatBytes, formatCpu } from '../../protocol/quantity.js';
import type { Taint } from '../../protocol/objects.js';
import { describeViolations, OPEN_DEVICE_POLICY, policyViolations } from '../../protocol/pod-security.js';
import { deviceFit } from './devices.js';
import { filterPlugin } from './filter-plugin.js';
import { hostPortConflicts } from './host-ports.js';
import { imagePlatform } from './image-platforms.js';
import { nodeAffinity } from './node-affinity.js';
import { storageFilters } from './storage-filters.js';
import type { FilterPlugin, PodContext, SchedNode, Toleration } from './types.js';

export { filterPlugin };

/**
 * Feasibility plugins. Each answers "can this pod run on this node?" with a reason when not.
 * They run for many nodes per pod, so each has an allocation-free `fits` for placing and builds
 * its reason string only when asked to explain. `defaultFilters` orders them cheapest first.
 */

export const nodeReady = filterPlugin(
  'node-ready',
  (_p, node) => node.ready,
  () => 'not ready',
);

export const nodeSchedulable = filterPlugin(
  'node-schedulable',
  (_p, node) => !node.unschedulable,
  () => 'cordoned',
);

export const nodeArch = filterPlugin(
  'node-arch',
  (_p, node, ctx) => ctx.arch === undefined || (node.arch !== undefined && ctx.arch.includes(node.arch)),
  (_p, node, ctx) => `arch ${node.arch ?? 'unknown'} (needs ${(ctx.arch ?? []).join(' or ')})`,
);

export const nodeSelector = filterPlugin(
  'node-selector',
  (_p, node, ctx) => {
    for (const [k, v] of ctx.nodeSelector) if (node.labels[k] !== v) return false;
    return true;
  },
  (_p, node, ctx) => {
    const missing = ctx.nodeSelector.filter(([k, v]) => node.labels[k] !== v).map(([k, v]) => `${k}=${v}`);
    return `node selector ${missing.join(', ')} not matched`;
  },
);

/** Kubernetes toleration semantics (v1.Toleration.ToleratesTaint). */
export function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect !== undefined && t.effect !== taint.effect) return false;
  if (t.operator === 'Exists') return t.key === undefined || t.key === '' || t.key === taint.key;
  return t.key === taint.key && (t.value ?? '') === (taint.value ?? '');
}

export function isTolerated(tolerations: readonly Toleration[], taint: Taint): boolean {
  for (const t of tolerations) if (tolerates(t, taint)) return true;
  return false;
}

export function formatTaint(taint: Taint): string {
  return `${taint.key}${taint.value ? `=${taint.value}` : ''}:${taint.effect}`;
}

function firstUntoleratedHardTaint(node: SchedNode, ctx: PodContext): Taint | undefined {
  for (const taint of node.taints) {
    if (taint.effect === 'PreferNoSchedule') continue;
    if (!isTolerated(ctx.tolerations, taint)) return taint;
  }
  return undefined;
}

/** NoSchedule and NoExecute taints repel pods that do not tolerate them; PreferNoSchedule only scores. */
export const taintToleration = filterPlugin(
  'taint-toleration',
  (_p, node, ctx) => node.taints.length === 0 || firstUntoleratedHardTaint(node, ctx) === undefined,
  (_p, node, ctx) => `untolerated taint ${formatTaint(firstUntoleratedHardTaint(node, ctx)!)}`,
);

export const podCount = filterPlugin(
  'pod-count',
  (_p, node) => node.requested.pods + 1 <= node.allocatable.pods,
  (_p, node) => `too many pods: ${node.requested.pods} of ${node.allocatable.pods}`,
);

// A pod that requests nothing always fits, even on an overcommitted node (as in Kubernetes).
export const cpuFit = filterPlugin(
  'cpu-fit',
  (_p, node, ctx) => ctx.requests.cpuMillis === 0 || ctx.requests.cpuMillis <= node.allocatable.cpuMillis - node.requested.cpuMillis,
  (_p, node, ctx) =>
    `insufficient cpu: ${formatCpu(Math.max(0, node.allocatable.cpuMillis - node.requested.cpuMillis))} free (needs ${formatCpu(ctx.requests.cpuMillis)})`,
);

export const memoryFit = filterPlugin(
  'memory-fit',
  (_p, node, ctx) => ctx.requests.memoryBytes === 0 || ctx.requests.memoryBytes <= node.allocatable.memoryBytes - node.requested.memoryBytes,
  (_p, node, ctx) =>
    `insufficient memory: ${formatBytes(Math.max(0, node.allocatable.memoryBytes - node.requested.memoryBytes))} free (needs ${formatBytes(ctx.requests.memoryBytes)})`,
);

function firstHostPortConflict(node: SchedNode, ctx: PodContext): string | undefined {
  for (const w of ctx.hostPorts) if (hostPortConflicts(node.usedHostPorts, w)) return w.key;
  return undefined;
}

function firstPublishedConflict(node: SchedNode, ctx: PodContext): string | undefined {
  if (node.publishedPorts === undefined) return undefined;
  for (const w of ctx.hostPorts) if (hostPortConflicts(node.publishedPorts, w)) return w.key;
  return undefined;
}

/** A host port is taken by another pod there, or published there by a Service (issue 15). */
export const hostPortsFree = filterPlugin(
  'host-ports',
  (_p, node, ctx) => ctx.hostPorts.length === 0 || (firstHostPortConflict(node, ctx) === undefined && firstPublishedConflict(node, ctx) === undefined),
  (_p, node, ctx) => {
    const used = firstHostPortConflict(node, ctx);
    return used !== undefined ? `host port in use: ${used}` : `host port published by a service: ${firstPublishedConflict(node, ctx)}`;
  },
);

/** The device's own policy (agent --deny-… / --allow-cap-add flags, baseline capabilities by default): a pod it would refuse does not go there. */
export const devicePolicy = filterPlugin(
  'device-policy',
  (pod, node) => node.policy === undefined || policyViolations(pod.spec, node.policy).length === 0,
  (pod, node) => describeViolations(policyViolations(pod.spec, node.policy), node.policy ?? OPEN_DEVICE_POLICY),
);

/**
 * Cheapest and most often decisive first: flags, then small arrays, then arithmetic, then set
 * lookups. Node affinity and image platforms are no-ops (one length check) for pods without them.
 */
export const defaultFilters: readonly FilterPlugin[] = [
  nodeReady,
  nodeSchedulable,
  nodeArch,
  imagePlatform,
  nodeSelector,
  nodeAffinity,
  taintToleration,
  podCount,
  cpuFit,
  memoryFit,
  hostPortsFree,
  devicePolicy,
  // Host devices (issue 18): a no-op for pods that ask for none.
  deviceFit,
  // Persistent-volume pins, hostPath allow-lists, ephemeral-storage (issue 7): no-ops for pods without volumes/requests.
  ...storageFilters,
];
