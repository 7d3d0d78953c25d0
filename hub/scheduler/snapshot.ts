import type { NodeObject, Pod } from '../../protocol/objects.js';
import type { DeploymentSpec } from '../../protocol/manifest.js';
import { isNodeReady } from '../objects/node.js';
import { isTerminal } from '../objects/pod.js';
import { accountPod, podContext } from './pod-context.js';
import { TopologyCounts } from './topology.js';
import { bookEphemeral, schedStorage } from './storage-filters.js';
import type { ImagePlatforms, SchedNode, SchedPod } from './types.js';
import { localImagePlatforms } from './image-platforms.js';

/**
 * Builds the scheduler's view from stored objects. Pure: the inputs are read, never modified
 * (store objects are frozen); every SchedNode gets fresh bookkeeping the scheduler may mutate.
 */

export interface SnapshotOptions {
  /** Held back from each node for the OS, engine and agent. Default 100m CPU, 64Mi memory. */
  systemReserved?: { cpuMillis: number; memoryBytes: number };
  /** Pod slots when the node reports no capacity. Default 110 (the Kubernetes default). */
  maxPodsPerNode?: number;
}

const DEFAULT_RESERVED = { cpuMillis: 100, memoryBytes: 64 * 1024 * 1024 };
const DEFAULT_MAX_PODS = 110;

/** Terminal pods (Succeeded, Failed) hold no resources any more. */
export function holdsResources(pod: Pod): boolean {
  return !isTerminal(pod);
}

/** Options with defaults applied. */
export function snapshotDefaults(opts: SnapshotOptions = {}): Required<SnapshotOptions> {
  return { systemReserved: opts.systemReserved ?? DEFAULT_RESERVED, maxPodsPerNode: opts.maxPodsPerNode ?? DEFAULT_MAX_PODS };
}

/**
 * A node as the scheduler sees it, with empty pod bookkeeping. Undefined for a node being
 * deleted: it takes no new pods and its bound pods are ignored with it. Shared by the full
 * rebuild below and the incrementally kept LiveSnapshot (live-snapshot.ts), so both give one view.
 */
export function nodeView(n: NodeObject, opts: Required<SnapshotOptions>, topology: TopologyCounts): SchedNode | undefined {
  if (n.metadata.deletionTimestamp !== undefined) return undefined;
  const reserved = opts.systemReserved;
  const info = n.status.info;
  const cap = n.status.capacity ?? {
    cpuMillis: info === undefined ? 0 : info.cpu.cores * 1000,
    memoryBytes: info?.memoryBytes ?? 0,
    pods: opts.maxPodsPerNode,
  };
  const sn: SchedNode = {
    name: n.metadata.name,
    labels: { ...n.metadata.labels },
    arch: info?.arch,
    ready: isNodeReady(n),
    unschedulable: n.spec.unschedulable,
    taints: n.spec.taints.map((t) => ({ ...t })),
    allocatable: {
      cpuMillis: Math.max(0, cap.cpuMillis - reserved.cpuMillis),
      memoryBytes: Math.max(0, cap.memoryBytes - reserved.memoryBytes),
      pods: Math.max(0, cap.pods),
    },
    requested: { cpuMillis: 0, memoryBytes: 0, pods: 0 },
    usedHostPorts: new Set(),
    podsByOwner: new Map(),
    topology,
  };
  if (info?.os !== undefined) sn.os = info.os;
  if (info?.policy !== undefined) sn.policy = info.policy;
  if (info?.devices !== undefined && info.devices.length > 0) sn.devices = info.devices;
  sn.deviceUse = new Map();
  sn.storage = schedStorage(n);
  if (info?.localImages !== undefined && info.localImages.length > 0) sn.localImages = localImagePlatforms(info.localImages);
  return sn;
}

/**
 * The reference snapshot: every node and every bound pod, O(nodes + pods). The scheduling
 * controller keeps a LiveSnapshot instead (same result, updated from watch events); this stays
 * as its specification (live-snapshot.test.ts checks one against the other) and for callers
 * that need a view of a few nodes (GlobalController).
 */
export function buildSchedNodes(nodes: readonly NodeObject[], pods: readonly Pod[], opts: SnapshotOptions = {}): SchedNode[] {
  const o = snapshotDefaults(opts);
  const out: SchedNode[] = [];
  const byName = new Map<string, SchedNode>();
  const topology = new TopologyCounts(out);
  for (const n of nodes) {
    const sn = nodeView(n, o, topology);
    if (sn === undefined) continue;
    out.push(sn);
    byName.set(sn.name, sn);
  }
  for (const p of pods) {
    const nodeName = p.spec.nodeName;
    if (nodeName === undefined || !holdsResources(p)) continue;
    const node = byName.get(nodeName);
    if (node === undefined) continue;
    accountPod(node, podContext(podToSchedPod(p)), p.spec.deviceGrants);
    bookEphemeral(node, p.spec);
  }
  return out;
}

/** What the scheduling controller knows about a pod beyond the Pod object itself. */
export interface SchedPodExtras {
  /** The owning Deployment's placement (the Pod object does not carry it). */
  placement?: DeploymentSpec['placement'];
  imagePlatforms?: readonly ImagePlatforms[];
}

/**
 * The scheduler's view of a stored pod. Tolerations and node affinity come with the spec;
 * placement and image platforms are looked up by the caller and passed in `extras`.
 */
export function podToSchedPod(pod: Pod, extras: SchedPodExtras = {}): SchedPod {
  const sp: SchedPod = { name: pod.metadata.name, spec: pod.spec };
  if (pod.metadata.ownerName !== undefined) sp.owner = pod.metadata.ownerName;
  const placement = extras.placement;
  if (placement !== undefined) {
    sp.strategy = placement.strategy;
    if (placement.spreadBy !== undefined) sp.spreadBy = placement.spreadBy;
  }
  if (extras.imagePlatforms !== undefined && extras.imagePlatforms.length > 0) sp.imagePlatforms = extras.imagePlatforms;
  return sp;
}
