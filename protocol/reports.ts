import { z } from 'zod';
import { LabelsSchema, NameSchema } from './pod-spec.js';
import {
  type NodeUsage,
  ContainerStatusSchema,
  ImagePullProgressSchema,
  NodeConditionSchema,
  NodeInfoSchema,
  NodeUsageSchema,
  PodConditionSchema,
  PodPhaseSchema,
} from './objects.js';

/**
 * What an agent reports to the hub over MQTT (topics.ts NODE_UP_CHANNELS: status, usage,
 * presence, observed set), encoded and decoded with messages.ts. Only the hub validates these
 * (hub/controllers/node-intake.ts): they are built from the stored objects' schemas, which the
 * single-file agent never loads (docs/agent.md "Memory"); the agent writes them from the types,
 * which messages.ts re-exports.
 */

export const NodeStatusMessageSchema = z.strictObject({
  node: NameSchema,
  info: NodeInfoSchema,
  labels: LabelsSchema.default({}),
  /** Monotonic per agent process start, so the hub can tell a restarted agent. */
  bootId: z.string().max(64),
  at: z.string(),
  /** Conditions the agent detects itself (DiskPressure from image GC); the hub merges them into the Node. */
  conditions: z.array(NodeConditionSchema).max(8).optional(),
});
export type NodeStatusMessage = z.infer<typeof NodeStatusMessageSchema>;

/** Pod names as DesiredPodSchema allows them (Deployment pods carry a suffix beyond NameSchema's 63). */
const PodNameKeySchema = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
  .max(253);
/** One container's usage: [cumulative CPU seconds (cAdvisor's container_cpu_usage_seconds_total), memory working set bytes]. */
export const ContainerUsageSampleSchema = z.tuple([
  z.number().min(0).max(1e12),
  z
    .number()
    .int()
    .min(0)
    .max(2 ** 50),
]);
export type ContainerUsageSample = z.infer<typeof ContainerUsageSampleSchema>;
/** Per pod (name), per container (name): a usage sample. Container ids never leave the device. */
export const PodUsageReportSchema = z
  .record(PodNameKeySchema, z.record(z.string().min(1).max(63), ContainerUsageSampleSchema))
  .refine((r) => Object.keys(r).length <= 1000, 'at most 1000 pods');
export type PodUsageReport = z.infer<typeof PodUsageReportSchema>;

/** At most this many services in one node's counters (a node serves at most the fleet's services; the hub keeps no more). */
export const SERVICE_COUNTERS_MAX = 1000;

/**
 * What one node's service proxy counted for one service since its listeners opened (the agent's
 * start, or a listener reopened on a new address): counters only go up, and start again from 0
 * then (Prometheus counter semantics). Unknown counters are dropped, so a later agent may add some.
 */
export const ServiceCountersSchema = z.object({
  /** TCP connections whose endpoint reset them before any reply byte, replayed on another endpoint (agent/services/tcp-proxy.ts). */
  replays: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
export type ServiceCounters = z.infer<typeof ServiceCountersSchema>;
/** Per service name, only services with a non-zero counter. */
export const ServiceCountersReportSchema = z
  .record(NameSchema, ServiceCountersSchema)
  .refine((r) => Object.keys(r).length <= SERVICE_COUNTERS_MAX, `at most ${SERVICE_COUNTERS_MAX} services`);
export type ServiceCountersReport = z.infer<typeof ServiceCountersReportSchema>;

export const NodeUsageMessageSchema = z
  .strictObject({
    /** Absent in the `usage-delta` form: the topic names the node. */
    node: NameSchema.optional(),
    /**
     * The node's usage. In the `usage-delta` form absent while it has not changed enough (the hub
     * keeps the last it got), and always sent on a full report and after a reconnect.
     */
    usage: NodeUsageSchema.optional(),
    /** The sample time when `usage` is absent (proof of life and heartbeat lag). */
    at: z.string().max(64).optional(),
    /**
     * Per-container usage (issue 16), sent by change only: with `full` the whole set (the hub
     * replaces what it knew for this node); without, only containers that moved (merged), and
     * `gone` names pods that left. Absent from older agents and from nodes with nothing to say.
     */
    pods: PodUsageReportSchema.optional(),
    full: z.boolean().optional(),
    gone: z.array(PodNameKeySchema).max(1000).optional(),
    /**
     * The node's service proxy counters (SERVICE_COUNTERS in messages.ts), whole: the hub replaces
     * what it knew for this node (`{}` = none left). Absent = unchanged. Sent when they changed,
     * after every reconnect and on every 30th heartbeat, only to a hub that reads them.
     */
    services: ServiceCountersReportSchema.optional(),
  })
  .refine((m) => m.usage !== undefined || m.at !== undefined, { message: 'usage or at is required', path: ['usage'] });
export type NodeUsageMessage = z.infer<typeof NodeUsageMessageSchema>;
/** A usage message as the hub hands it on: the node from its topic, the node's usage filled in from the last one when the short form left it out. */
export type NodeUsageReport = NodeUsageMessage & { node: string; usage: NodeUsage };

export const PresenceMessageSchema = z.strictObject({
  node: NameSchema,
  online: z.boolean(),
  at: z.string().optional(),
});
export type PresenceMessage = z.infer<typeof PresenceMessageSchema>;

export const ObservedPodSchema = z.strictObject({
  name: z.string().max(253),
  uid: z.string().max(64),
  deployment: z.string().max(253).optional(),
  phase: PodPhaseSchema,
  reason: z.string().max(256).optional(),
  message: z.string().max(4096).optional(),
  ready: z.boolean().default(false),
  conditions: z.array(PodConditionSchema).max(8).default([]),
  containers: z.array(ContainerStatusSchema).max(16),
  startTime: z.string().optional(),
  /** Image pull in progress for this pod (pull before kill: the old pod keeps serving meanwhile). */
  pull: ImagePullProgressSchema.optional(),
});
export type ObservedPod = z.infer<typeof ObservedPodSchema>;

/** A persistent engine volume on the node (issue 7), reported with the observed set. */
export const ObservedVolumeSchema = z.strictObject({
  /** Engine volume name, `orchard-…`. */
  name: z.string().max(253),
  usedBytes: z.number().min(0).optional(),
  /** Names of desired pods that mount it. */
  pods: z.array(z.string().max(253)).max(1000).default([]),
});
export type ObservedVolume = z.infer<typeof ObservedVolumeSchema>;

export const ObservedSetMessageSchema = z.strictObject({
  node: NameSchema,
  /** Generation of the desired set this observation was made against (0 if none yet). */
  generation: z.number().int().min(0),
  pods: z.array(ObservedPodSchema).max(10000),
  at: z.string(),
  /** Persistent volumes present on the node; absent when the agent has not looked yet. */
  volumes: z.array(ObservedVolumeSchema).max(1000).optional(),
});
export type ObservedSetMessage = z.infer<typeof ObservedSetMessageSchema>;
