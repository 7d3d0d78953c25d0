import { deflateSync, inflateSync } from 'node:zlib';
import { z } from 'zod';
import { DeviceGrantSchema } from './devices.js';
import { NameSchema, PodSpecSchema } from './pod-spec.js';
import { SERVICE_ORDINAL_MAX, SERVICE_ORDINAL_MIN, ServiceEndpointSchema, ServiceProtocolSchema, TrafficPolicySchema } from './service-endpoints.js';
import { LOGS_SINCE_AGO } from './streams.js';

// What an agent sends the hub (status, usage, presence, observed set) is validated only by the
// hub, against schemas built from the stored objects' (objects.ts): they are in reports.ts, which
// the single-file agent never loads (docs/agent.md "Memory"). Their types are here too.
export type {
  ContainerUsageSample,
  NodeStatusMessage,
  NodeUsageMessage,
  NodeUsageReport,
  ObservedPod,
  ObservedSetMessage,
  ObservedVolume,
  PodUsageReport,
  PresenceMessage,
  ServiceCounters,
  ServiceCountersReport,
} from './reports.js';

/**
 * MQTT message payloads (JSON, optionally deflated). Level-triggered: desired and observed are
 * always *whole sets*, never deltas, so a lost or duplicated message cannot leave a node wrong for long.
 */

/** Hard cap on any MQTT payload Orchard parses (the broker also limits packet size), inflated or not. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * Payload encodings besides plain JSON. `deflate` is a zlib stream (RFC 1950) of the JSON text.
 * MQTT 3.1.1 has no content type, so the first two bytes tell them apart: a zlib header (method 8,
 * header checksum a multiple of 31), which an Orchard JSON payload, starting with '{', never is. Whole sets of similar pods compress 6-9×
 * (10 pods: 4.4 kB → 0.7 kB), which matters twice on a fleet: Pi links are slow and metered, and
 * node's TLS keeps per-connection buffers sized by the largest record a connection ever carried
 * (docs/benchmarks-fleet.md), so the hub's memory per node follows its largest message.
 */
export const PAYLOAD_ENCODINGS = ['deflate'] as const;
export type PayloadEncoding = (typeof PAYLOAD_ENCODINGS)[number];
/** Smaller JSON is sent as is: deflate gains little there and the text stays readable with mosquitto_sub. */
export const COMPRESS_MIN_BYTES = 512;
// An 8 KiB window holds a 10-pod set whole; zlib's default 32 KiB window + 256 KiB state per call bought 0.1 % here.
const DEFLATE_OPTIONS = { windowBits: 13, memLevel: 6 } as const;

/**
 * Report forms an agent can write beyond the original, which it uses only once the hub says it
 * reads them: the agent lists the form in `NodeInfo.encodings`, and the hub answers with
 * `DesiredSetMessage.reads` (sent only to agents that listed it, so an older agent never sees the
 * field). `usage-delta`: the short usage heartbeat (NodeUsageMessage without `node`, and without
 * `usage` while the node's usage has not changed enough to be news).
 */
export const USAGE_DELTA = 'usage-delta';

/**
 * `service-counters`: the usage message's `services` field (the node's service proxy counters,
 * issue 15), negotiated like USAGE_DELTA: an older hub parses the usage message strictly and
 * would refuse the whole heartbeat with the field, so the agent sends it only once the hub lists
 * it in `DesiredSetMessage.reads`.
 */
export const SERVICE_COUNTERS = 'service-counters';

/** One pod as the hub wants it on a node. `uid` changes when the pod is replaced. */
export const DesiredPodSchema = z.strictObject({
  name: NameSchema.or(
    z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
      .max(253),
  ),
  uid: z.string().min(1).max(64),
  deployment: z.string().max(253).optional(),
  spec: PodSpecSchema,
  /** Host devices granted to this pod (issue 18): the agent passes exactly these, nothing else. */
  devices: z.array(DeviceGrantSchema).max(64).optional(),
});
export type DesiredPod = z.infer<typeof DesiredPodSchema>;

/**
 * The leader epoch of a hub group on etcd (docs/design/ha.md "Epochs"): the election key's create
 * revision, larger for every new leader. Hub → agent state carries it so an agent can ignore what
 * a deposed leader (paused, partitioned) still sends: one from an older epoch than the agent has
 * seen is dropped. Absent from a single hub on SQLite (no leaders, nothing to fence) and sent only
 * to agents that list `epoch` in NodeInfo.features (older agents parse strictly and would refuse
 * the whole message).
 */
export const EpochSchema = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

/**
 * Protocol features this agent understands beyond its version's baseline (NodeInfo.features):
 * `epoch` (above), LOGS_SINCE_AGO (protocol/streams.ts: a logs `since` window on the device's clock).
 */
export const AGENT_FEATURES = ['epoch', LOGS_SINCE_AGO] as const;

export const DesiredSetMessageSchema = z.strictObject({
  node: NameSchema,
  /** Increases with every change of this node's set (the store's resourceVersion at the time). */
  generation: z.number().int().min(0),
  /** The publishing leader's epoch (EpochSchema); absent from a single hub. */
  epoch: EpochSchema.optional(),
  pods: z.array(DesiredPodSchema).max(10000),
  at: z.string(),
  /** ConfigMaps referenced by this node's pods (need to know: only these). */
  configMaps: z
    .record(NameSchema, z.strictObject({ data: z.record(z.string(), z.string()).default({}), binaryData: z.record(z.string(), z.string()).default({}) }))
    .optional(),
  /** Secrets referenced by this node's pods, values base64. Only ever on this node's ACL-protected topic. */
  secrets: z.record(NameSchema, z.strictObject({ data: z.record(z.string(), z.string()).default({}) })).optional(),
  /** Images image GC must keep (current and previous revisions of this node's deployments), so an undo needs no network. */
  keepImages: z.array(z.string().max(512)).max(1000).optional(),
  /** Report forms this hub reads (USAGE_DELTA, SERVICE_COUNTERS); only ever sent to an agent that listed them in NodeInfo.encodings. */
  reads: z.array(z.string().max(32)).max(8).optional(),
});
export type DesiredSetMessage = z.infer<typeof DesiredSetMessageSchema>;

/**
 * Services (issue 15), hub → every agent, each retained at QoS 1 and always whole:
 * - `orchard/v1/services/{name}`: ServiceMessage, the service's ports, policy and all its
 *   endpoints; republished on any change (a zero-length retained payload clears it on delete).
 * - `orchard/v1/service-index`: ServiceIndexMessage, which services exist and the fleet's peer
 *   addresses. A service is active on an agent when the index lists it AND its message has
 *   arrived; a message for a name the index does not list is held, not used.
 * Every node needs every service (any pod may dial any name), so these are broadcast topics: one
 * endpoint change is one small message the broker fans out, instead of every node's whole table
 * rebuilt and republished (docs/design/services.md, "Why per-service topics").
 * Generations are the store revision at publish; an agent ignores one older than it holds.
 * Encoded with deflate when it helps: every agent that subscribes to these reads deflate.
 */
export const ServiceMessageSchema = z.strictObject({
  service: NameSchema,
  generation: z.number().int().min(0),
  /** The publishing leader's epoch (EpochSchema): present only when every node lists the `epoch` feature. */
  epoch: EpochSchema.optional(),
  at: z.string(),
  ordinal: z.number().int().min(SERVICE_ORDINAL_MIN).max(SERVICE_ORDINAL_MAX),
  ports: z
    .array(z.strictObject({ name: z.string().max(15).optional(), port: z.number().int().min(1).max(65535), protocol: ServiceProtocolSchema }))
    .min(1)
    .max(32),
  trafficPolicy: TrafficPolicySchema,
  /** Client-address affinity, when the service asks for it. */
  affinityTimeoutSeconds: z.number().int().min(1).max(86_400).optional(),
  /** Ports opened on devices' own addresses, resolved by the hub: `nodes` absent = every node. */
  publish: z
    .array(
      z.strictObject({
        port: z.number().int().min(1).max(65535),
        servicePort: z.number().int().min(1).max(65535),
        protocol: ServiceProtocolSchema,
        nodes: z.array(NameSchema).max(10_000).optional(),
      }),
    )
    .max(8)
    .default([]),
  endpoints: z.array(ServiceEndpointSchema).max(1000),
});
export type ServiceMessage = z.infer<typeof ServiceMessageSchema>;

export const ServiceIndexMessageSchema = z.strictObject({
  generation: z.number().int().min(0),
  /** As ServiceMessage.epoch. */
  epoch: EpochSchema.optional(),
  at: z.string(),
  services: z.array(NameSchema).max(1020),
  /** Node → its advertise address: endpoint ports accept connections only from these. */
  peers: z.record(NameSchema, z.string().max(64)),
});
export type ServiceIndexMessage = z.infer<typeof ServiceIndexMessageSchema>;

/**
 * The JSON text of a raw payload, inflating a deflated one (never beyond MAX_MESSAGE_BYTES, so a
 * small compressed payload cannot make the reader allocate gigabytes). Never throws.
 */
export function payloadText(payload: Buffer | Uint8Array | string): { ok: true; text: string } | { ok: false; error: string } {
  if (typeof payload === 'string') {
    const size = Buffer.byteLength(payload);
    return size > MAX_MESSAGE_BYTES ? { ok: false, error: `payload of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}` } : { ok: true, text: payload };
  }
  const size = payload.byteLength;
  if (size > MAX_MESSAGE_BYTES) return { ok: false, error: `payload of ${size} bytes exceeds ${MAX_MESSAGE_BYTES}` };
  const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  if (!isDeflated(buf)) return { ok: true, text: buf.toString('utf8') };
  try {
    return { ok: true, text: inflateSync(buf, { maxOutputLength: MAX_MESSAGE_BYTES }).toString('utf8') };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_BUFFER_TOO_LARGE') return { ok: false, error: `deflated payload inflates beyond ${MAX_MESSAGE_BYTES} bytes` };
    return { ok: false, error: `payload is not valid deflate data: ${err.message}` };
  }
}

/** Parses a raw MQTT payload (JSON, or deflated JSON) then with the schema; returns a value, never throws. */
export function decodeMessage<S extends z.ZodType>(
  schema: S,
  payload: Buffer | Uint8Array | string,
): { ok: true; value: z.infer<S> } | { ok: false; error: string } {
  const text = payloadText(payload);
  if (!text.ok) return text;
  let json: unknown;
  try {
    json = JSON.parse(text.text);
  } catch (e) {
    return { ok: false, error: `payload is not JSON: ${(e as Error).message}` };
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    return { ok: false, error: r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') };
  }
  return { ok: true, value: r.data };
}

/** Whether a raw payload is deflated: it starts with a zlib header (RFC 1950 §2.2; see PAYLOAD_ENCODINGS). */
export function isDeflated(payload: Uint8Array): boolean {
  const cmf = payload[0];
  const flg = payload[1];
  return cmf !== undefined && flg !== undefined && (cmf & 0x0f) === 8 && ((cmf << 8) | flg) % 31 === 0;
}

/**
 * The payload for `value`: JSON, deflated when the receiver reads `encoding` and the text is at
 * least COMPRESS_MIN_BYTES (and deflate made it smaller).
 */
export function encodeMessage(value: unknown, encoding?: PayloadEncoding): Buffer {
  const json = Buffer.from(JSON.stringify(value));
  if (encoding !== 'deflate' || json.length < COMPRESS_MIN_BYTES) return json;
  const deflated = deflateSync(json, DEFLATE_OPTIONS);
  return deflated.length < json.length ? deflated : json;
}
