import { z } from 'zod';
import { HubListMessageSchema } from './hubs.js';
import { LabelsSchema, NameSchema } from './pod-spec.js';

/**
 * Joining a hub (hub/security, agent/security/join.ts): the token format and `POST /api/v1/join`.
 * Its own module so the single-file agent does not build api.ts's operation schemas
 * (docs/agent.md "Memory"); api.ts re-exports it.
 */

/** `K10<sha256 hex of the CA certificate DER>::<id>.<secret>`, as K3s formats its tokens. */
export const JOIN_TOKEN_RE = /^K10([0-9a-f]{64})::([a-z0-9]{6,32})\.([A-Za-z0-9_-]{16,128})$/;

export function parseJoinToken(token: string): { caFingerprint: string; id: string; secret: string } | undefined {
  const m = JOIN_TOKEN_RE.exec(token.trim());
  if (!m || m[1] === undefined || m[2] === undefined || m[3] === undefined) return undefined;
  return { caFingerprint: m[1], id: m[2], secret: m[3] };
}

export const JoinRequestSchema = z.strictObject({
  token: z.string().min(1).max(512),
  node: NameSchema,
  labels: LabelsSchema.default({}),
});
export type JoinRequest = z.infer<typeof JoinRequestSchema>;

export const JoinResponseSchema = z.object({
  node: NameSchema,
  /** The node's own MQTT password; the MQTT username is the node name. */
  credential: z.string().min(16),
  caPem: z.string(),
  mqttPort: z.number().int().min(1).max(65535),
  labels: LabelsSchema.default({}),
  /** An etcd group (issue 19): every hub's addresses, the leader first; the agent keeps them current from `orchard/v1/hubs`. */
  hubs: HubListMessageSchema.optional(),
});
export type JoinResponse = z.infer<typeof JoinResponseSchema>;
