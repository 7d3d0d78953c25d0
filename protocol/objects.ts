import { z } from 'zod';
import { AnnotationsSchema, API_VERSION, ArchSchema, DeploymentSpecSchema, LabelsSchema, PodSpecSchema, PodTemplateSchema } from './manifest.js';

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
export const DeploymentStatusSchema = z.object({
  observedGeneration: z.number().int().default(0),
  replicas: z.number().int().default(0),
  readyReplicas: z.number().int().default(0),
  availableReplicas: z.number().int().default(0),
  unscheduledReplicas: z.number().int().default(0),
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
  type: z.enum(['PodScheduled', 'Ready', 'ContainersReady']),
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
});
export type PodStatus = z.infer<typeof PodStatusSchema>;

export const PodObjectSpecSchema = PodSpecSchema.and(z.object({ nodeName: z.string().optional() }));

export const PodSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Pod'),
  metadata: ObjectMetaSchema,
  spec: PodObjectSpecSchema,
  status: PodStatusSchema,
});
export type Pod = z.infer<typeof PodSchema>;

// ---- Node ----
export const NodeInfoSchema = z.object({
  arch: ArchSchema,
  /** Raw architecture string reported by the engine (x86_64, aarch64, armv7l …). */
  rawArch: z.string().max(64).optional(),
  os: z.string().max(128),
  kernel: z.string().max(128).optional(),
  hostname: z.string().max(253).optional(),
  cpu: z.object({ cores: z.number().int().min(1).max(4096), model: z.string().max(256).optional() }),
  memoryBytes: z.number().int().min(0),
  disk: z.object({ totalBytes: z.number().min(0), freeBytes: z.number().min(0), path: z.string().max(1024).optional() }).optional(),
  engine: z.object({
    name: z.string().max(64),
    version: z.string().max(64),
    apiVersion: z.string().max(16).optional(),
    memoryLimit: z.boolean().default(true),
    cpuLimit: z.boolean().default(true),
  }),
  agentVersion: z.string().max(64),
  addresses: z.array(z.string().max(64)).max(64).default([]),
});
export type NodeInfo = z.infer<typeof NodeInfoSchema>;

export const NodeUsageSchema = z.object({
  cpuPercent: z.number().min(0).max(100 * 4096),
  memoryUsedBytes: z.number().min(0),
  at: z.string(),
});
export type NodeUsage = z.infer<typeof NodeUsageSchema>;

export const NodeConditionSchema = z.object({
  type: z.enum(['Ready', 'MemoryLimitUnsupported', 'DiskPressure']),
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

export type AnyObject = Deployment | Pod | NodeObject | EventObject | ConfigMapObject | SecretObject | RevisionObject;
export type ObjectKind = AnyObject['kind'];
export const OBJECT_KINDS = ['Deployment', 'Pod', 'Node', 'Event', 'ConfigMap', 'Secret', 'Revision'] as const satisfies readonly ObjectKind[];

/** URL plural ↔ kind. */
export const KIND_BY_PLURAL = { deployments: 'Deployment', pods: 'Pod', nodes: 'Node', events: 'Event', configmaps: 'ConfigMap', secrets: 'Secret', revisions: 'Revision' } as const;
export type Plural = keyof typeof KIND_BY_PLURAL;
export function kindFromPlural(s: string): ObjectKind | undefined {
  const singular: Record<string, ObjectKind> = {
    deployment: 'Deployment', pod: 'Pod', node: 'Node', event: 'Event', deploy: 'Deployment', po: 'Pod', no: 'Node', ev: 'Event',
    configmap: 'ConfigMap', cm: 'ConfigMap', secret: 'Secret', revision: 'Revision', rev: 'Revision',
  };
  return (KIND_BY_PLURAL as Record<string, ObjectKind>)[s] ?? singular[s];
}
export function pluralOf(kind: ObjectKind): Plural {
  return (Object.entries(KIND_BY_PLURAL).find(([, k]) => k === kind)?.[0] ?? 'pods') as Plural;
}
export type ObjectOf<K extends ObjectKind> = Extract<AnyObject, { kind: K }>;
