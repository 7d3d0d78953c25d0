import { z } from 'zod';
import {
  AnnotationsSchema,
  API_VERSION,
  ArchSchema,
  DeploymentSpecSchema,
  LabelsSchema,
  PodSpecSchema,
  PodTemplateSchema,
  ServiceSpecSchema,
} from './manifest.js';
import { SERVICE_ORDINAL_MAX, SERVICE_ORDINAL_MIN, ServiceEndpointSchema } from './service-endpoints.js';
import { DeviceClassSchema, DeviceGrantSchema, MAX_NODE_DEVICES, NodeDeviceSchema } from './devices.js';
import { DevicePolicySchema } from './pod-security.js';

/**
 * Objects as the hub stores and serves them: `{apiVersion, kind, metadata, spec, status}`.
 * `spec` is what a user (or a controller) wants; `status` is what was observed. Controllers
 * write status apart from spec.
 */

export const ObjectMetaSchema = z.object({
  name: z.string(),
  uid: z.string(),
  labels: LabelsSchema.default({}),
  annotations: AnnotationsSchema.default({}),
  /** Store-wide monotonically increasing version of the last write; compare-and-set key. */
  resourceVersion: z.number().int(),
  /** Bumped when spec changes (not on status writes). */
  generation: z.number().int(),
  creationTimestamp: z.string(),
  /** Name of the owning Deployment, for pods. */
  ownerName: z.string().optional(),
  deletionTimestamp: z.string().optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMetaSchema>;

// ---- Deployment ----
/**
 * As Kubernetes: Progressing (reasons NewReplicaSetAvailable, ReplicaSetUpdated, ProgressDeadlineExceeded,
 * DeploymentPaused, CanaryPaused, RolledBack) and Available (MinimumReplicasAvailable / MinimumReplicasUnavailable).
 */
export const DeploymentConditionSchema = z.object({
  type: z.enum(['Progressing', 'Available']),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().optional(),
  message: z.string().optional(),
  lastUpdateTime: z.string().optional(),
  lastTransitionTime: z.string().optional(),
});
export type DeploymentCondition = z.infer<typeof DeploymentConditionSchema>;

export const RolloutPhaseSchema = z.enum(['Progressing', 'Complete', 'Paused', 'CanaryPaused', 'Failed', 'RolledBack']);
export type RolloutPhase = z.infer<typeof RolloutPhaseSchema>;

export const RolloutStatusSchema = z.object({
  phase: RolloutPhaseSchema,
  /** Revision number of the update revision. */
  revision: z.number().int().optional(),
  message: z.string().optional(),
  /** When the update revision started rolling out. */
  startedAt: z.string().optional(),
  /** Last time the rollout made progress (pods created, became available, or old ones removed). */
  lastProgressAt: z.string().optional(),
  /** Fingerprint of the counts that define progress; a change means progress. */
  progressKey: z.string().optional(),
  /** Set when the controller rolled back a failed revision (cleared by the next template change). */
  rolledBackFrom: z.object({ revision: z.number().int(), hash: z.string(), reason: z.string() }).optional(),
});
export type RolloutStatus = z.infer<typeof RolloutStatusSchema>;

/** One autoscaler pass (hub/controllers/autoscaler.ts): the numbers that led to it. */
export const AutoscaleDecisionSchema = z.object({
  at: z.string(),
  /** spec.replicas when the pass ran. */
  currentReplicas: z.number().int(),
  /** The metrics' proposal (max over CPU and memory) before stabilisation and rate limits. */
  recommendation: z.number().int().optional(),
  /** After the scale-down window, the scale-up/down rate limits and min/max: what spec.replicas became. */
  desiredReplicas: z.number().int(),
  /**
   * Why: DesiredWithinRange, WithinTolerance, ScaleDownStabilized, ScaleUpLimit, ScaleDownLimit, TooManyReplicas,
   * TooFewReplicas, BelowMin, AboveMax, MetricsMissing, NodeStartupGrace, ScaledToZero (docs/observability.md).
   */
  reason: z.string(),
  message: z.string(),
});
export type AutoscaleDecision = z.infer<typeof AutoscaleDecisionSchema>;

/** Per target: its current average utilisation (percent of requests) and the pods behind it. */
export const AutoscaleMetricStatusSchema = z.object({
  resource: z.enum(['cpu', 'memory']),
  targetPercent: z.number().int(),
  /** Over the pods with metrics (Kubernetes' currentAverageUtilization); absent when none had one. */
  currentPercent: z.number().int().optional(),
  ready: z.number().int(),
  unready: z.number().int(),
  missing: z.number().int(),
  ignored: z.number().int(),
  /** This metric's own proposal; absent when it could not be computed. */
  recommendation: z.number().int().optional(),
  error: z.string().optional(),
});
export type AutoscaleMetricStatus = z.infer<typeof AutoscaleMetricStatusSchema>;

export const AutoscaleStatusSchema = z.object({
  metrics: z.array(AutoscaleMetricStatusSchema),
  lastDecision: AutoscaleDecisionSchema,
  /** Last time the autoscaler changed spec.replicas. */
  lastScaleTime: z.string().optional(),
});
export type AutoscaleStatus = z.infer<typeof AutoscaleStatusSchema>;

export const DeploymentStatusSchema = z.object({
  observedGeneration: z.number().int().default(0),
  replicas: z.number().int().default(0),
  readyReplicas: z.number().int().default(0),
  availableReplicas: z.number().int().default(0),
  unscheduledReplicas: z.number().int().default(0),
  // ---- rollout state (issue 5); optional so older stored objects stay valid ----
  /** Pods of the update revision (the deployment's current template). */
  updatedReplicas: z.number().int().optional(),
  /** Template hash of the last revision that was fully available (the rollback target). */
  currentRevision: z.string().optional(),
  /** Template hash of the revision being rolled out (= the spec's template). */
  updateRevision: z.string().optional(),
  conditions: z.array(DeploymentConditionSchema).optional(),
  rollout: RolloutStatusSchema.optional(),
  /** Written by the autoscaler only (spec.autoscale); other status writers carry it over. */
  autoscale: AutoscaleStatusSchema.optional(),
});
export type DeploymentStatus = z.infer<typeof DeploymentStatusSchema>;

export const DeploymentSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Deployment'),
  metadata: ObjectMetaSchema,
  spec: DeploymentSpecSchema,
  status: DeploymentStatusSchema.default({ observedGeneration: 0, replicas: 0, readyReplicas: 0, availableReplicas: 0, unscheduledReplicas: 0 }),
});
export type Deployment = z.infer<typeof DeploymentSchema>;

// ---- Pod ----
/** An image pull in progress for a pod, as the agent reports it (rollout status shows it). */
export const ImagePullProgressSchema = z.object({
  image: z.string().max(512),
  layersDone: z.number().int().min(0),
  layersTotal: z.number().int().min(0),
  bytesDone: z.number().min(0),
  bytesTotal: z.number().min(0),
});
export type ImagePullProgress = z.infer<typeof ImagePullProgressSchema>;

export const PodPhaseSchema = z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']);
export type PodPhase = z.infer<typeof PodPhaseSchema>;

export const ContainerStateSchema = z.enum(['waiting', 'running', 'terminated']);

export const ContainerStatusSchema = z.object({
  name: z.string(),
  containerId: z.string().optional(),
  image: z.string(),
  state: ContainerStateSchema,
  /** Why waiting/terminated: ContainerCreating, ImagePullBackOff, ErrImagePull, CrashLoopBackOff, Error, Completed, … */
  reason: z.string().optional(),
  message: z.string().optional(),
  exitCode: z.number().int().optional(),
  restartCount: z.number().int().min(0).default(0),
  ready: z.boolean().default(false),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
});
export type ContainerStatus = z.infer<typeof ContainerStatusSchema>;

export const PodConditionSchema = z.object({
  /** DeviceUnavailable (issue 18): a device granted to the pod is gone from its node; the agent stopped the pod until it returns. */
  type: z.enum(['PodScheduled', 'Ready', 'ContainersReady', 'DeviceUnavailable']),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().optional(),
  message: z.string().optional(),
  lastTransitionTime: z.string().optional(),
});
export type PodCondition = z.infer<typeof PodConditionSchema>;

export const PodStatusSchema = z.object({
  phase: PodPhaseSchema.default('Pending'),
  reason: z.string().optional(),
  message: z.string().optional(),
  conditions: z.array(PodConditionSchema).default([]),
  containerStatuses: z.array(ContainerStatusSchema).default([]),
  hostIP: z.string().optional(),
  startTime: z.string().optional(),
  /** Per-node reasons when unschedulable, e.g. {"node-3": "arch arm (needs arm64)"}. */
  unschedulable: z.object({ summary: z.string(), nodes: z.record(z.string(), z.array(z.string())) }).optional(),
  /** Image pull in progress on the node (absent once the image is present). */
  pull: ImagePullProgressSchema.optional(),
});
export type PodStatus = z.infer<typeof PodStatusSchema>;

export const PodObjectSpecSchema = PodSpecSchema.and(
  z.object({
    nodeName: z.string().optional(),
    /** Host devices the scheduler granted with the binding (issue 18): which of the node's devices this pod holds. */
    deviceGrants: z.array(DeviceGrantSchema).max(64).optional(),
  }),
);

export const PodSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Pod'),
  metadata: ObjectMetaSchema,
  spec: PodObjectSpecSchema,
  status: PodStatusSchema,
});
export type Pod = z.infer<typeof PodSchema>;

// ---- Node ----
/**
 * The only label space a node writes itself: the hub files every label an agent reports
 * (`--labels`, status messages) under this prefix (`zone` → `node.orchard.dev/zone`), so a node can
 * never set or override a label the join token, an admin or the hub set (Kubernetes'
 * NodeRestriction keeps kubelets to `node.kubernetes.io/` the same way). hub/node-labels.ts.
 */
export const NODE_REPORTED_LABEL_PREFIX = 'node.orchard.dev/';

/**
 * Sanity limits on what a node may report about its hardware (docs/security.md). A status
 * report beyond them is refused whole (the hub keeps the node's previous facts; a new node does
 * not register), so a node claiming 1 PiB of memory never attracts pods. Far above any Pi, NUC or
 * server Orchard targets; the protocol checks them, so hub and agent agree.
 */
export const NODE_CAPACITY_LIMITS = {
  cpuCores: 1024,
  memoryBytes: 4 * 1024 ** 4, // 4 TiB
  diskBytes: 1024 ** 5, // 1 PiB
} as const;
const diskBytes = z.number().min(0).max(NODE_CAPACITY_LIMITS.diskBytes, 'must be at most 1 PiB');

/**
 * A node's advertise address is dialled by every other agent and trusted on their endpoint ports
 * (review finding 3): only a unicast IPv4 address. Loopback is allowed (several agents on one
 * machine, as in tests); a hostile node can still name another host's unicast address, which is
 * why endpoint-port connections carry no secrets and the hub refuses an address two nodes claim.
 */
export function isUnicastIPv4(address: string): boolean {
  const first = Number(address.split('.')[0]);
  return address !== '0.0.0.0' && first < 224;
}

/**
 * What an agent tells about upgrades in its NodeInfo (`info.upgrade`; absent from agents before
 * issue 17, which cannot be upgraded from the hub). NodeInfo is a non-strict object, so a hub that
 * does not know the field drops it and keeps the rest.
 */
export const AgentUpgradeInfoSchema = z.object({
  /** Runs under orchard-agent-launcher, which can swap files and roll back. */
  launcher: z.boolean(),
  /** The last upgrade this device rolled back by itself. */
  rolledBack: z.object({ version: z.string().max(64), rollout: z.string().max(63).optional(), reason: z.string().max(512), at: z.string().max(64) }).optional(),
});
export type AgentUpgradeInfo = z.infer<typeof AgentUpgradeInfoSchema>;

export const NodeInfoSchema = z.object({
  arch: ArchSchema,
  /** Raw architecture string reported by the engine (x86_64, aarch64, armv7l …). */
  rawArch: z.string().max(64).optional(),
  os: z.string().max(128),
  kernel: z.string().max(128).optional(),
  hostname: z.string().max(253).optional(),
  cpu: z.object({ cores: z.number().int().min(1).max(NODE_CAPACITY_LIMITS.cpuCores), model: z.string().max(256).optional() }),
  memoryBytes: z.number().int().min(0).max(NODE_CAPACITY_LIMITS.memoryBytes, 'must be at most 4 TiB'),
  disk: z.object({ totalBytes: diskBytes, freeBytes: diskBytes, path: z.string().max(1024).optional() }).optional(),
  engine: z.object({
    name: z.string().max(64),
    version: z.string().max(64),
    apiVersion: z.string().max(16).optional(),
    memoryLimit: z.boolean().default(true),
    cpuLimit: z.boolean().default(true),
  }),
  agentVersion: z.string().max(64),
  /**
   * Payload encodings the agent reads besides JSON (protocol/messages.ts PAYLOAD_ENCODINGS): the
   * hub deflates this node's desired sets only when it lists `deflate`, so an older agent keeps
   * getting JSON. Unknown names are kept and ignored (a newer agent may list more).
   */
  encodings: z.array(z.string().max(32)).max(8).optional(),
  /**
   * Protocol features the agent understands (protocol/messages.ts AGENT_FEATURES): `epoch` = it
   * reads and enforces leader epochs on hub → agent messages. Absent from older agents, which get
   * no epoch (their strict schemas would refuse the message). Unknown names are kept and ignored.
   */
  features: z.array(z.string().max(32)).max(16).optional(),
  /** Agent upgrades from the hub (issue 17; protocol/agent-upgrade.ts): absent from older agents. */
  upgrade: AgentUpgradeInfoSchema.optional(),
  addresses: z.array(z.string().max(64)).max(64).default([]),
  /**
   * Services (issue 15): the address other nodes dial for this node's endpoint ports (agent
   * --advertise-address; default its first non-internal IPv4). Absent: the agent runs no service
   * proxy (older agent, or services off), and its pods are endpoints for local clients only.
   */
  advertiseAddress: z
    .ipv4({ message: 'must be an IPv4 address' })
    .refine(isUnicastIPv4, 'must be a unicast IPv4 address (not 0.0.0.0, multicast, reserved or broadcast)')
    .optional(),
  /** Storage facts (issue 7): the agent's hostPath allow-list, whether secrets sit on tmpfs, and its disks. */
  storage: z
    .object({
      hostPathAllow: z.array(z.string().max(1024)).max(64).default([]),
      secretsOnTmpfs: z.boolean().optional(),
      devices: z
        .array(
          z.object({
            path: z.string().max(1024),
            totalBytes: diskBytes,
            freeBytes: diskBytes,
            device: z.string().max(256).optional(),
            media: z.enum(['sd', 'ssd', 'hdd', 'unknown']),
          }),
        )
        .max(16)
        .default([]),
    })
    .optional(),
  /** What the device's operator forbids pods (agent --deny-… flags); absent from older agents (the scheduler then fails open, the agent still refuses). */
  policy: DevicePolicySchema.optional(),
  /**
   * Host devices (issue 18): every device the agent found in its classes (`--devices`), with
   * identity where sysfs/udev give it, and the count per class (0 for a class it looks for and
   * has none of). Absent from agents before devices: the scheduler then sees no devices there.
   */
  devices: z.array(NodeDeviceSchema).max(MAX_NODE_DEVICES, `must have at most ${MAX_NODE_DEVICES} devices`).optional(),
  deviceClasses: z
    .record(DeviceClassSchema, z.number().int().min(0).max(MAX_NODE_DEVICES))
    .refine((o) => Object.keys(o).length <= 32, 'must have at most 32 device classes')
    .optional(),
  /**
   * The agent process's own runtime (issue 17): `process.platform/process.arch` (linux/arm64,
   * linux/arm, linux/x64) and Node's version without the v (22.23.5). It may differ from `arch`,
   * which is what the engine runs (an armv7 agent under qemu on x86 still schedules amd64 pods).
   * Absent from older agents.
   */
  agentPlatform: z.string().max(64).optional(),
  nodeVersion: z.string().max(32).optional(),
  /**
   * Images in the node's own store whose reference names no registry host (imported, loaded or
   * built there: the hub cannot look their platforms up), each with the platform the engine
   * records (`linux/amd64`, `linux/arm/v7`), as of the agent's start. The image-platform filter
   * uses them instead of failing open. Absent from older agents.
   */
  localImages: z
    .array(z.object({ image: z.string().max(512), platform: z.string().max(64) }))
    .max(256)
    .optional(),
});
export type NodeInfo = z.infer<typeof NodeInfoSchema>;

export const NodeUsageSchema = z.object({
  cpuPercent: z
    .number()
    .min(0)
    .max(100 * NODE_CAPACITY_LIMITS.cpuCores),
  memoryUsedBytes: z.number().min(0).max(NODE_CAPACITY_LIMITS.memoryBytes),
  /** Free bytes on the agent's data path, refreshed with each heartbeat (ephemeral-storage scheduling). */
  diskFreeBytes: diskBytes.optional(),
  at: z.string(),
});
export type NodeUsage = z.infer<typeof NodeUsageSchema>;

export const NodeConditionSchema = z.object({
  /** CapacityChanged: the hub saw the node's CPU or memory more than double or halve between two reports. */
  type: z.enum(['Ready', 'MemoryLimitUnsupported', 'DiskPressure', 'CapacityChanged']),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().optional(),
  message: z.string().optional(),
  lastTransitionTime: z.string().optional(),
});
export type NodeCondition = z.infer<typeof NodeConditionSchema>;

export const TaintSchema = z.object({
  key: z.string().max(253),
  value: z.string().max(63).optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']),
});
export type Taint = z.infer<typeof TaintSchema>;

export const NodeSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Node'),
  metadata: ObjectMetaSchema,
  spec: z.object({ unschedulable: z.boolean().default(false), taints: z.array(TaintSchema).default([]) }),
  status: z.object({
    info: NodeInfoSchema.optional(),
    capacity: z.object({ cpuMillis: z.number(), memoryBytes: z.number(), pods: z.number() }).optional(),
    usage: NodeUsageSchema.optional(),
    conditions: z.array(NodeConditionSchema).default([]),
    lastHeartbeatTime: z.string().optional(),
    /** Generation of the desired set the agent last reported applying. */
    observedGeneration: z.number().int().optional(),
  }),
});
export type NodeObject = z.infer<typeof NodeSchema>;

// ---- Event ----
export const EventSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Event'),
  metadata: ObjectMetaSchema,
  involvedObject: z.object({ kind: z.string(), name: z.string() }),
  type: z.enum(['Normal', 'Warning']),
  reason: z.string(),
  message: z.string(),
  count: z.number().int().default(1),
  firstTimestamp: z.string(),
  lastTimestamp: z.string(),
});
export type EventObject = z.infer<typeof EventSchema>;

// ---- ConfigMap / Secret ----
export const ConfigMapSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('ConfigMap'),
  metadata: ObjectMetaSchema,
  data: z.record(z.string(), z.string()).default({}),
  binaryData: z.record(z.string(), z.string()).default({}),
});
export type ConfigMapObject = z.infer<typeof ConfigMapSchema>;

/** `data` values are base64. The hub store encrypts them at rest; viewers see keys only. */
export const SecretSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Secret'),
  metadata: ObjectMetaSchema,
  type: z.string().default('Opaque'),
  data: z.record(z.string(), z.string()).default({}),
});
export type SecretObject = z.infer<typeof SecretSchema>;

// ---- Revision (a Deployment's template history, like a ReplicaSet/ControllerRevision) ----
export const RevisionSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Revision'),
  /** name: `<deployment>-<templateHash>`; ownerName: the deployment. */
  metadata: ObjectMetaSchema,
  revision: z.number().int().min(1),
  templateHash: z.string(),
  template: PodTemplateSchema,
  changeCause: z.string().optional(),
  /** The images of this revision, which image GC on devices must keep. */
  images: z.array(z.string()).default([]),
});
export type RevisionObject = z.infer<typeof RevisionSchema>;

// ---- Volume (a persistent engine volume and the node holding its data; written by the hub) ----
export const PersistentVolumeSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Volume'),
  /** name: the engine volume name (see persistentVolumeName); ownerName: the deployment. */
  metadata: ObjectMetaSchema,
  spec: z.object({
    /** The node where the data lives; pods using the volume are scheduled only there. */
    nodeName: z.string(),
    /** The pod volume name in the template. */
    volume: z.string(),
    size: z.union([z.string(), z.number()]).optional(),
  }),
  status: z
    .object({
      /** Bytes used, as the node last reported (engine UsageData, else du); absent when unknown. */
      usedBytes: z.number().min(0).optional(),
      /** Pods (names) the node reported using the volume. */
      pods: z.array(z.string()).default([]),
      /** Whether the node last reported the volume present. */
      present: z.boolean().optional(),
      observedAt: z.string().optional(),
    })
    .default({ pods: [] }),
});
export type PersistentVolumeObject = z.infer<typeof PersistentVolumeSchema>;

// ---- Service (issue 15) ----
// Ordinals and endpoints live in service-endpoints.ts (the agent needs them without the rest of
// this module), re-exported here with persistentVolumeName (pod-spec.ts) for the hub and CLI.
export {
  EndpointTargetSchema,
  SERVICE_ORDINAL_MAX,
  SERVICE_ORDINAL_MIN,
  ServiceEndpointSchema,
  type EndpointTarget,
  type ServiceEndpoint,
} from './service-endpoints.js';
export { persistentVolumeName } from './pod-spec.js';

export const ServiceConditionSchema = z.object({
  /**
   * PublishPortConflict: a published port is taken on some node (a hostPort or another service);
   * NoEndpoints: no ready endpoint; OrdinalsExhausted: no ordinal (address) was free, so the
   * service is not shipped to nodes until one is.
   */
  type: z.enum(['PublishPortConflict', 'NoEndpoints', 'OrdinalsExhausted']),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().optional(),
  message: z.string().optional(),
  lastTransitionTime: z.string().optional(),
});
export type ServiceCondition = z.infer<typeof ServiceConditionSchema>;

export const ServiceStatusSchema = z.object({
  /** Stable while the service exists; picks its address (range base + ordinal) on every node. */
  ordinal: z.number().int().min(SERVICE_ORDINAL_MIN).max(SERVICE_ORDINAL_MAX).optional(),
  endpoints: z.array(ServiceEndpointSchema).default([]),
  conditions: z.array(ServiceConditionSchema).default([]),
  observedGeneration: z.number().int().default(0),
});
export type ServiceStatus = z.infer<typeof ServiceStatusSchema>;

export const ServiceSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Service'),
  metadata: ObjectMetaSchema,
  spec: ServiceSpecSchema,
  status: ServiceStatusSchema.default({ endpoints: [], conditions: [], observedGeneration: 0 }),
});
export type ServiceObject = z.infer<typeof ServiceSchema>;

// ---- AgentRollout (issue 17: `orchard node upgrade`; hub/agent-upgrade) ----
export const AgentRolloutNodeStateSchema = z.enum(['Pending', 'Upgrading', 'Upgraded', 'Failed', 'Skipped']);
export const AgentRolloutPhaseSchema = z.enum(['Progressing', 'Complete', 'Halted']);

export const AgentRolloutNodeSchema = z.object({
  name: z.string().max(63),
  state: AgentRolloutNodeStateSchema,
  fromVersion: z.string().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  message: z.string().optional(),
});
export type AgentRolloutNode = z.infer<typeof AgentRolloutNodeSchema>;

/** A fleet upgrade, kept in the store so it survives a hub restart (hub/agent-upgrade). */
export const AgentRolloutSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('AgentRollout'),
  metadata: ObjectMetaSchema,
  spec: z.object({
    version: z.string().max(64),
    sha256: z.string().max(64),
    maxParallel: z.number().int().min(1),
    deadlineSeconds: z.number().int().min(5),
  }),
  status: z.object({
    phase: AgentRolloutPhaseSchema,
    /** In rollout order. */
    nodes: z.array(AgentRolloutNodeSchema),
    reason: z.string().optional(),
    message: z.string().optional(),
    finishedAt: z.string().optional(),
  }),
});
export type AgentRolloutObject = z.infer<typeof AgentRolloutSchema>;

export type AnyObject =
  Deployment | Pod | NodeObject | EventObject | ConfigMapObject | SecretObject | RevisionObject | PersistentVolumeObject | ServiceObject | AgentRolloutObject;
export type ObjectKind = AnyObject['kind'];
export const OBJECT_KINDS = [
  'Deployment',
  'Pod',
  'Node',
  'Event',
  'ConfigMap',
  'Secret',
  'Revision',
  'Volume',
  'Service',
  'AgentRollout',
] as const satisfies readonly ObjectKind[];

/** URL plural ↔ kind. */
export const KIND_BY_PLURAL = {
  deployments: 'Deployment',
  pods: 'Pod',
  nodes: 'Node',
  events: 'Event',
  configmaps: 'ConfigMap',
  secrets: 'Secret',
  revisions: 'Revision',
  volumes: 'Volume',
  services: 'Service',
  agentrollouts: 'AgentRollout',
} as const;
export type Plural = keyof typeof KIND_BY_PLURAL;
export function kindFromPlural(s: string): ObjectKind | undefined {
  const singular: Record<string, ObjectKind> = {
    deployment: 'Deployment',
    pod: 'Pod',
    node: 'Node',
    event: 'Event',
    deploy: 'Deployment',
    po: 'Pod',
    no: 'Node',
    ev: 'Event',
    configmap: 'ConfigMap',
    cm: 'ConfigMap',
    secret: 'Secret',
    revision: 'Revision',
    rev: 'Revision',
    volume: 'Volume',
    vol: 'Volume',
    pv: 'Volume',
    service: 'Service',
    svc: 'Service',
    agentrollout: 'AgentRollout',
  };
  return (KIND_BY_PLURAL as Record<string, ObjectKind>)[s] ?? singular[s];
}
export function pluralOf(kind: ObjectKind): Plural {
  return (Object.entries(KIND_BY_PLURAL).find(([, k]) => k === kind)?.[0] ?? 'pods') as Plural;
}
export type ObjectOf<K extends ObjectKind> = Extract<AnyObject, { kind: K }>;
