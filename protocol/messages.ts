import { z } from 'zod';
import { LabelsSchema, NameSchema, PodSpecSchema } from './manifest.js';
import { ContainerStatusSchema, ImagePullProgressSchema, NodeConditionSchema, NodeInfoSchema, NodeUsageSchema, PodConditionSchema, PodPhaseSchema } from './objects.js';

/**
 * MQTT message payloads (JSON). Level-triggered: desired and observed are always *whole sets*,
 * never deltas, so a lost or duplicated message cannot leave a node wrong for long.
 */

/** Hard cap on any MQTT payload Orchard parses (the broker also limits packet size). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

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

export const NodeUsageMessageSchema = z.strictObject({
  node: NameSchema,
  usage: NodeUsageSchema,
});
export type NodeUsageMessage = z.infer<typeof NodeUsageMessageSchema>;

export const PresenceMessageSchema = z.strictObject({
  node: NameSchema,
  online: z.boolean(),
  at: z.string().optional(),
});
export type PresenceMessage = z.infer<typeof PresenceMessageSchema>;

/** One pod as the hub wants it on a node. `uid` changes when the pod is replaced. */
export const DesiredPodSchema = z.strictObject({
  name: NameSchema.or(z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/).max(253)),
  uid: z.string().min(1).max(64),
  deployment: z.string().max(253).optional(),
  spec: PodSpecSchema,
});
export type DesiredPod = z.infer<typeof DesiredPodSchema>;

export const DesiredSetMessageSchema = z.strictObject({
  node: NameSchema,
  /** Increases with every change of this node's set (the store's resourceVersion at the time). */
  generation: z.number().int().min(0),
  pods: z.array(DesiredPodSchema).max(10000),
  at: z.string(),
  /** ConfigMaps referenced by this node's pods (need to know: only these). */
  configMaps: z.record(NameSchema, z.strictObject({ data: z.record(z.string(), z.string()).default({}), binaryData: z.record(z.string(), z.string()).default({}) })).optional(),
  /** Secrets referenced by this node's pods, values base64. Only ever on this node's ACL-protected topic. */
  secrets: z.record(NameSchema, z.strictObject({ data: z.record(z.string(), z.string()).default({}) })).optional(),
  /** Images image GC must keep (current and previous revisions of this node's deployments), so an undo needs no network. */
  keepImages: z.array(z.string().max(512)).max(1000).optional(),
});
export type DesiredSetMessage = z.infer<typeof DesiredSetMessageSchema>;

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

/** Parses a raw MQTT payload as JSON then with the schema; returns a value, never throws. */
export function decodeMessage<S extends z.ZodType>(
  schema: S,
  payload: Buffer | Uint8Array | string,
): { ok: true; value: z.infer<S> } | { ok: false; error: string } {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (size > MAX_MESSAGE_BYTES) return { ok: false, error: `payload of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}` };
  let json: unknown;
  try {
    json = JSON.parse(typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'));
  } catch (e) {
    return { ok: false, error: `payload is not JSON: ${(e as Error).message}` };
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    return { ok: false, error: r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') };
  }
  return { ok: true, value: r.data };
}

export function encodeMessage(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}
