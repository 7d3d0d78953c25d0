import type { Arch, NodeSelectorRequirement, PodSpec } from '../../protocol/manifest.js';
import type { Taint } from '../../protocol/objects.js';
import type { DeviceGrant, DeviceRequest, NodeDevice } from '../../protocol/devices.js';
import type { DevicePolicy } from '../../protocol/pod-security.js';

/**
 * The scheduler's narrow view of the world (Nomad style: state in, decision out). Everything
 * here is plain data so the scheduler stays a pure function of its inputs and its plugins can
 * be tested table-driven with `mockNode()` / `mockPod()`.
 */

export interface SchedNode {
  name: string;
  labels: Record<string, string>;
  /** Undefined when the agent has not reported yet; fails any arch-constrained pod. */
  arch: Arch | undefined;
  os?: string;
  ready: boolean;
  /** Cordoned by an operator: existing pods stay, new ones do not land. */
  unschedulable: boolean;
  taints: Taint[];
  allocatable: { cpuMillis: number; memoryBytes: number; pods: number };
  /** Sum over pods bound to the node. `scheduleBatch` adds to it in place as it binds. */
  requested: { cpuMillis: number; memoryBytes: number; pods: number };
  /** Keys from `hostPortKey()`. */
  usedHostPorts: Set<string>;
  /** Ports services publish on this node (issue 15), as `hostPortKey()` keys: a pod wanting one as hostPort does not fit. Set per pass by the caller. */
  publishedPorts?: ReadonlySet<string> | undefined;
  /** Deployment name → pods of it on this node. */
  podsByOwner: Map<string, number>;
  /** What the device's operator forbids pods (agent --deny-… flags); absent = not reported (the filter passes, the agent still refuses). */
  policy?: DevicePolicy;
  /** Host devices the node reported (issue 18; devices.ts); absent = none. */
  devices?: readonly NodeDevice[];
  /** Device id → pods holding it (bound pods' grants; scheduleBatch adds as it binds); absent = none held. */
  deviceUse?: Map<string, DeviceUse>;
  /** Disk and hostPath facts (storage-filters.ts); absent in hand-built nodes (storage filters pass). */
  storage?: SchedStorage;
  /** Images in the node's own store that name no registry host → their normalised platform (NodeInfo.localImages); absent = none reported. */
  localImages?: ReadonlyMap<string, string>;
  /**
   * Replica counts per topology domain (label value), shared by every node of one snapshot so
   * `spreadBy` can see beyond one node. Absent in hand-built nodes: spreading by topology then
   * falls back to this node's own count.
   */
  topology?: TopologyIndex;
}

/**
 * Replica counts per topology domain, shared by the nodes of one snapshot: `TopologyCounts`
 * (topology.ts) and its incremental `LiveTopology` (live-topology.ts). An interface here, not
 * the class, so this file imports no plugin module (types.ts is the leaf every plugin imports).
 */
export interface TopologyIndex {
  /** Pods of `owner` on nodes whose label `key` equals `value`. */
  count(key: string, value: string, owner: string): number;
  /** Records one more pod of `owner` on `node` (scheduleBatch, as it binds). */
  add(node: SchedNode, owner: string): void;
}

/** How many bound pods hold one device, exclusively or shared. */
export interface DeviceUse {
  exclusive: number;
  shared: number;
}

/** One device request of a pod's container (PodContext.devices). */
export interface DeviceWant {
  container: string;
  request: DeviceRequest;
}

/** A persistent volume that already lives on a node (the volume-affinity filter, storage-filters.ts). */
export interface VolumePin {
  /** Engine volume name (persistentVolumeName). */
  volume: string;
  node: string;
}

/** A node's disk and hostPath facts for the storage filters (storage-filters.ts). */
export interface SchedStorage {
  /** Free bytes on the agent's data path (latest heartbeat, else the start-up report). */
  diskFreeBytes?: number;
  /** Host path prefixes the agent allows; undefined = not reported (fail open). */
  hostPathAllow?: readonly string[];
  /** Sum of ephemeral-storage requests of pods bound to the node. */
  ephemeralRequested: number;
}

/** Kubernetes-shaped toleration (PodSpec.tolerations); SchedPod.tolerations adds to the spec's. */
export interface Toleration {
  /** Empty/undefined with operator Exists matches every taint key. */
  key?: string;
  operator?: 'Equal' | 'Exists';
  value?: string;
  /** Undefined matches every effect. */
  effect?: Taint['effect'];
}

export type PlacementStrategy = 'spread' | 'binpack';

export interface SchedPod {
  name: string;
  /** Owning Deployment, used to spread its replicas. */
  owner?: string;
  spec: PodSpec;
  /** Default `spread` (least-allocated + replica spread); `binpack` fills nodes up (most-allocated). */
  strategy?: PlacementStrategy;
  /** Extra tolerations on top of `spec.tolerations`. */
  tolerations?: readonly Toleration[];
  /** Node label whose values the owner's replicas spread across (Deployment placement.spreadBy). */
  spreadBy?: string;
  /**
   * Platforms (`linux/arm64`, `linux/arm/v7` …) of each container image whose platform list is
   * known; images missing here are unknown and do not filter (fail open).
   */
  imagePlatforms?: readonly ImagePlatforms[];
  /** Nodes holding this pod's persistent volumes (set by scheduleWithVolumes in volume-pins.ts). */
  volumePins?: readonly VolumePin[];
}

export interface ImagePlatforms {
  image: string;
  platforms: readonly string[];
}

/** One host port a pod wants, pre-parsed once per pod so filters do no string work per node. */
export interface HostPortWant {
  /** `${protocol}/${hostIP}/${hostPort}`, hostIP defaulting to 0.0.0.0. */
  key: string;
  protocol: string;
  hostIP: string;
  port: number;
  /** hostIP is 0.0.0.0 or :: — conflicts with any IP on the same protocol and port. */
  wildcard: boolean;
}

/** Values computed once per pod, shared by every plugin call for that pod. */
export interface PodContext {
  requests: { cpuMillis: number; memoryBytes: number };
  hostPorts: readonly HostPortWant[];
  /** Allowed arches, or undefined when the pod runs anywhere. */
  arch: readonly Arch[] | undefined;
  nodeSelector: ReadonlyArray<readonly [string, string]>;
  tolerations: readonly Toleration[];
  strategy: PlacementStrategy;
  owner: string | undefined;
  /** nodeAffinity.required, ANDed; empty when none. */
  affinityRequired: readonly NodeSelectorRequirement[];
  /** nodeAffinity.preferred; empty when none. */
  affinityPreferred: ReadonlyArray<{ weight: number; requirement: NodeSelectorRequirement }>;
  spreadBy: string | undefined;
  imagePlatforms: readonly ImagePlatforms[];
  /** Device requests (issue 18); empty for the common pod that asks for none. */
  devices: readonly DeviceWant[];
}

export interface Explanation {
  /**
   * Feasible nodes found. For a bound pod in a large cluster this counts only the nodes
   * examined (see `examined`), because the scheduler stops once it has enough to score.
   */
  feasible: number;
  total: number;
  /** Nodes whose filters ran for this pod (≤ total). */
  examined: number;
  /**
   * Node → every reason it was rejected. Filled for unschedulable pods (all nodes, all
   * reasons); empty for bound pods to keep the hot path allocation-free.
   */
  filtered: Record<string, string[]>;
  /**
   * Unschedulable pods: reason category → nodes rejected for it (every reason of every node
   * counts, so a node can count under several). Bound pods: filter plugin name → examined
   * nodes it rejected (the first failing filter per node; no reason text on the hot path).
   */
  counts: Record<string, number>;
  /** For bound pods: the best few candidates, plugin → normalised 0..100 score, plus `total`. */
  scores?: Record<string, Record<string, number>>;
}

export type Decision =
  | {
      kind: 'bound';
      nodeName: string;
      explanation: Explanation;
      /** Host devices picked on that node (issue 18), for pods that ask for any. */
      devices?: DeviceGrant[];
    }
  | { kind: 'unschedulable'; summary: string; explanation: Explanation };

/**
 * Feasibility check (kube-scheduler Filter). Returns undefined when the pod fits, else a
 * human reason `category` or `category: detail` — summaries group nodes by the text before
 * the first ": " so per-node numbers collapse ("insufficient cpu: 120m free (needs 250m)" →
 * "insufficient cpu"). Must be pure and cheap; it runs for many nodes per pod.
 */
export interface FilterPlugin {
  name: string;
  filter(pod: SchedPod, node: SchedNode, ctx: PodContext): string | undefined;
  /**
   * Optional fast path: the same verdict as `filter() === undefined`, without building a
   * reason. Placing a pod only needs yes/no for most nodes; reasons are built when explaining.
   */
  fits?(pod: SchedPod, node: SchedNode, ctx: PodContext): boolean;
}

/**
 * Ranking (kube-scheduler Score + NormalizeScore). `score` returns 0..100, higher is better.
 * With `normalize` (default true) raw scores are min-max rescaled to 0..100 across the
 * candidates of one pod (all equal → all 100), so a plugin's weight, not its raw range,
 * decides how much it counts. `enabled` lets a plugin step aside for a pod (checked once
 * per pod), e.g. replica spread for a pod with no owner.
 */
export interface ScorePlugin {
  name: string;
  weight: number;
  score(pod: SchedPod, node: SchedNode, ctx: PodContext): number;
  normalize?: boolean;
  enabled?(pod: SchedPod, ctx: PodContext): boolean;
}

/** Reason category: the text before the first ": " (see FilterPlugin). */
export function reasonCategory(reason: string): string {
  const i = reason.indexOf(': ');
  return i < 0 ? reason : reason.slice(0, i);
}
