import type { NodeObject, Pod } from '../../protocol/objects.js';
import { accountPod, podContext } from './pod-context.js';
import type { SchedNode, SchedPod } from './types.js';

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

/** Pods in these phases hold no resources any more. */
function holdsResources(pod: Pod): boolean {
  return pod.status.phase !== 'Succeeded' && pod.status.phase !== 'Failed';
}

export function buildSchedNodes(nodes: readonly NodeObject[], pods: readonly Pod[], opts: SnapshotOptions = {}): SchedNode[] {
  const reserved = opts.systemReserved ?? DEFAULT_RESERVED;
  const maxPods = opts.maxPodsPerNode ?? DEFAULT_MAX_PODS;
  const out: SchedNode[] = [];
  const byName = new Map<string, SchedNode>();
  for (const n of nodes) {
    // A node being deleted takes no new pods; its bound pods are ignored with it.
    if (n.metadata.deletionTimestamp !== undefined) continue;
    const info = n.status.info;
    const cap = n.status.capacity ?? {
      cpuMillis: info === undefined ? 0 : info.cpu.cores * 1000,
      memoryBytes: info?.memoryBytes ?? 0,
      pods: maxPods,
    };
    const sn: SchedNode = {
      name: n.metadata.name,
      labels: { ...n.metadata.labels },
      arch: info?.arch,
      ready: n.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True'),
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
    };
    if (info?.os !== undefined) sn.os = info.os;
    out.push(sn);
    byName.set(sn.name, sn);
  }
  for (const p of pods) {
    const nodeName = p.spec.nodeName;
    if (nodeName === undefined || !holdsResources(p)) continue;
    const node = byName.get(nodeName);
    if (node === undefined) continue;
    accountPod(node, podContext(podToSchedPod(p)));
  }
  return out;
}

/** The scheduler's view of a stored pod. The contract has no placement strategy yet; callers may set one. */
export function podToSchedPod(pod: Pod): SchedPod {
  const sp: SchedPod = { name: pod.metadata.name, spec: pod.spec };
  if (pod.metadata.ownerName !== undefined) sp.owner = pod.metadata.ownerName;
  return sp;
}
