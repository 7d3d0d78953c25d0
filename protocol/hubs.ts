import { z } from 'zod';

/**
 * The hubs of an etcd-backed group (issue 19) as clients see them: every hub's API and MQTT
 * address, and which one leads. The leader publishes it retained on `orchard/v1/hubs`
 * (topics.hubs) and puts it in the join answer; a standby names the leader in its `/healthz`
 * answer and in the `details` of every ERR_NOT_LEADER it answers. Agents, the CLI and MQTT
 * command clients use it to find the leader when the hub they talk to goes (docs/ha.md).
 */

/** Host and port only, as a hub advertises them (`--advertise-api`, `--advertise-mqtt`). */
const HOST_PORT = String.raw`(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):\d{1,5}`;
export const HubApiUrlSchema = z
  .string()
  .max(300)
  .regex(new RegExp(`^https?://${HOST_PORT}$`), 'must be http(s)://HOST:PORT');
export const HubMqttUrlSchema = z
  .string()
  .max(300)
  .regex(new RegExp(`^mqtts?://${HOST_PORT}$`), 'must be mqtt(s)://HOST:PORT');

/** One hub of the group: its election id and the addresses it serves on when it leads. */
export const HubEndpointSchema = z.strictObject({
  id: z.string().min(1).max(300),
  api: HubApiUrlSchema,
  mqtt: HubMqttUrlSchema,
});
export type HubEndpoint = z.infer<typeof HubEndpointSchema>;

/** At most this many hubs in one group (etcd groups are 3 or 5 members; hubs rarely more). */
export const MAX_HUBS = 16;

/**
 * `orchard/v1/hubs` (retained, QoS 1, hub → every node and user client): every hub alive in the
 * group, the leader first. `epoch` is the leader's election epoch (it only grows).
 */
export const HubListMessageSchema = z.strictObject({
  leader: z.string().min(1).max(300),
  epoch: z.number().int().min(0),
  hubs: z.array(HubEndpointSchema).min(1).max(MAX_HUBS),
});
export type HubListMessage = z.infer<typeof HubListMessageSchema>;

/**
 * `GET /healthz`: `role` says whether this hub serves (leader; `single` without etcd) or only points
 * at the leader (standby). `degraded` (a leader on etcd): etcd has not taken its writes for a while
 * (no quorum, space quota full). The answer stays 200 and `ok` true: the hub serves reads, keeps
 * writes queued, and a restart would not help (docs/ha.md "Health").
 */
export const HealthSchema = z.object({
  ok: z.boolean(),
  role: z.enum(['single', 'leader', 'standby']).optional(),
  id: z.string().optional(),
  leader: HubEndpointSchema.extend({ epoch: z.number().int() }).optional(),
  degraded: z.literal(true).optional(),
  /** Why, for a human: since when, how many writes wait, etcd's last error. */
  degradedReason: z.string().optional(),
  /** ISO time since when every write to etcd has failed. */
  degradedSince: z.string().optional(),
});
export type Health = z.infer<typeof HealthSchema>;

/** The `details` of ERR_NOT_LEADER: where the leader is, when a hub knows it. */
export const NotLeaderDetailsSchema = z.object({
  /** The leader's API URL (clients retry there). */
  leader: HubApiUrlSchema.optional(),
  leaderId: z.string().optional(),
  leaderMqtt: HubMqttUrlSchema.optional(),
  epoch: z.number().int().optional(),
});
export type NotLeaderDetails = z.infer<typeof NotLeaderDetailsSchema>;
