import { z } from 'zod';
import { NameSchema, ServiceProtocolSchema, TrafficPolicySchema } from './manifest.js';
import type { ErrorBody } from './errors.js';

/**
 * Operations shared by the web API and MQTT topic commands. One operations layer in the hub
 * serves both, so validation and errors are identical whichever way a user comes in.
 */

export const MAX_APPLY_DOCUMENTS = 100;
export const MAX_BODY_BYTES = 1024 * 1024;

export const KindArgSchema = z.string().min(1).max(32);

export const ApplyArgsSchema = z.strictObject({
  /** YAML or JSON text with one or more documents, or already-parsed documents. */
  manifests: z.union([z.string().max(MAX_BODY_BYTES), z.array(z.unknown()).max(MAX_APPLY_DOCUMENTS)]),
});
export const GetArgsSchema = z.strictObject({ kind: KindArgSchema, name: z.string().max(253).optional() });
export const DeleteArgsSchema = z.strictObject({ kind: KindArgSchema, name: z.string().min(1).max(253) });
export const ScaleArgsSchema = z.strictObject({ name: NameSchema, replicas: z.number().int('must be an integer').min(0, 'must be 0 or more').max(10000) });

/**
 * `orchard autoscale deployment NAME`: sets (or with `off`, removes) the deployment's
 * spec.autoscale; validated with the manifest's rules. The window is kept when not given.
 */
export const AutoscaleArgsSchema = z.strictObject({
  name: NameSchema,
  off: z.boolean().optional(),
  minReplicas: z.number().int('must be an integer').optional(),
  maxReplicas: z.number().int('must be an integer').optional(),
  cpuPercent: z.number().int('must be an integer').optional(),
  memoryPercent: z.number().int('must be an integer').optional(),
  scaleDownStabilizationWindowSeconds: z.number().int('must be an integer').optional(),
});
export type AutoscaleArgs = z.infer<typeof AutoscaleArgsSchema>;

export const RolloutActionSchema = z.enum(['status', 'history', 'undo', 'pause', 'resume', 'restart', 'promote']);
export type RolloutAction = z.infer<typeof RolloutActionSchema>;
export const RolloutArgsSchema = z.strictObject({
  action: RolloutActionSchema,
  name: NameSchema,
  /** undo only: the revision number to return to (default: the previous one). */
  toRevision: z.number().int('must be an integer').min(1).optional(),
});
export type RolloutArgs = z.infer<typeof RolloutArgsSchema>;

const PortArgSchema = z.number().int('must be an integer').min(1, 'must be a port 1-65535').max(65535, 'must be a port 1-65535');
/**
 * `orchard expose deployment NAME`: a Service selecting the deployment's pods (its template's
 * labels), created or updated through apply, so validation and errors are apply's.
 */
export const ExposeArgsSchema = z.strictObject({
  deployment: NameSchema,
  port: PortArgSchema,
  /** A container port number or name; default: `port`. */
  targetPort: z.union([PortArgSchema, NameSchema.max(15)]).optional(),
  /** The Service's name; default: the deployment's. */
  name: NameSchema.optional(),
  protocol: ServiceProtocolSchema.default('TCP'),
  /** Also open this port on the devices' own addresses. */
  publish: PortArgSchema.optional(),
  policy: TrafficPolicySchema.optional(),
});
export type ExposeArgs = z.infer<typeof ExposeArgsSchema>;

/**
 * `logs` as an MQTT command (issue 16): one bounded read (no follow: an MQTT client has no way to
 * pace a stream), at most MQTT_LOGS_MAX_BYTES of the log's end in one reply.
 */
export const LogsArgsSchema = z.strictObject({
  pod: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
    .max(253),
  container: NameSchema.optional(),
  tail: z.number().int().min(0).max(1_000_000).optional(),
  /** Seconds back from now. */
  sinceSeconds: z.number().int().min(1).optional(),
  previous: z.boolean().optional(),
});
export type LogsArgs = z.infer<typeof LogsArgsSchema>;
export const MQTT_LOGS_MAX_BYTES = 1024 * 1024;

export const CommandRequestSchema = z.discriminatedUnion('op', [
  z.strictObject({ id: z.string().min(1).max(128), op: z.literal('apply'), args: ApplyArgsSchema, replyTo: z.string().max(256).optional() }),
  z.strictObject({ id: z.string().min(1).max(128), op: z.literal('get'), args: GetArgsSchema, replyTo: z.string().max(256).optional() }),
  z.strictObject({ id: z.string().min(1).max(128), op: z.literal('delete'), args: DeleteArgsSchema, replyTo: z.string().max(256).optional() }),
  z.strictObject({ id: z.string().min(1).max(128), op: z.literal('scale'), args: ScaleArgsSchema, replyTo: z.string().max(256).optional() }),
  z.strictObject({ id: z.string().min(1).max(128), op: z.literal('rollout'), args: RolloutArgsSchema, replyTo: z.string().max(256).optional() }),
  z.strictObject({ id: z.string().min(1).max(128), op: z.literal('expose'), args: ExposeArgsSchema, replyTo: z.string().max(256).optional() }),
  z.strictObject({ id: z.string().min(1).max(128), op: z.literal('autoscale'), args: AutoscaleArgsSchema, replyTo: z.string().max(256).optional() }),
  z.strictObject({ id: z.string().min(1).max(128), op: z.literal('logs'), args: LogsArgsSchema, replyTo: z.string().max(256).optional() }),
]);
export type CommandRequest = z.infer<typeof CommandRequestSchema>;
export type CommandOp = CommandRequest['op'];

export type CommandReply = { id: string; ok: true; result: unknown } | { id: string; ok: false; error: ErrorBody };

export type ApplyAction = 'created' | 'configured' | 'unchanged';
export interface ApplyResultItem {
  kind: string;
  name: string;
  action: ApplyAction;
}
export interface ApplyResult {
  results: ApplyResultItem[];
}

export interface ListResult<T> {
  items: T[];
}

// ---- Security: join and tokens (see hub/security) ----
// The join token, request and response are in join.ts (the agent imports them without the rest of
// this module: docs/agent.md "Memory"), re-exported here.
export { JOIN_TOKEN_RE, JoinRequestSchema, JoinResponseSchema, parseJoinToken, type JoinRequest, type JoinResponse } from './join.js';

/** `orc_<12 hex id>.<32 base64url secret>`: the id is public (token list, logs, MQTT client ids). */
export const API_TOKEN_RE = /^orc_([0-9a-f]{12})\.([A-Za-z0-9_-]{32})$/;

/** The public id of an API token, or undefined when `token` is not one (clients build their MQTT client id from it). */
export function apiTokenId(token: string): string | undefined {
  return API_TOKEN_RE.exec(token.trim())?.[1];
}

/** `scrape` may read `GET /metrics` only (a Prometheus server's token: docs/observability.md). */
export const RoleSchema = z.enum(['admin', 'operator', 'viewer', 'scrape']);
export type Role = z.infer<typeof RoleSchema>;

/**
 * `GET /api/v1/whoami`: the caller's own API token. `operations` are the operations of the hub's
 * authorisation table this token may do (the dashboard shows only the actions it may take; the
 * hub still checks every request).
 */
export const WhoAmISchema = z.object({
  name: z.string(),
  id: z.string().optional(),
  role: RoleSchema,
  operations: z.array(z.string()),
});
export type WhoAmI = z.infer<typeof WhoAmISchema>;

/**
 * `orchard exec` WebSocket messages (issue 16; hub/api/routes-streams.ts): binary, the first byte
 * a channel, the rest its bytes. Client → hub: stdin, stdinEof (no bytes), resize (JSON
 * {cols, rows}). Hub → client: stdout, stderr, then one status (JSON {exitCode} or
 * {error: {code, message}}) before the hub closes the socket.
 */
export const EXEC_CHANNEL = { stdin: 0, stdout: 1, stderr: 2, status: 3, resize: 4, stdinEof: 5 } as const;

export const ExecStatusSchema = z.union([z.object({ exitCode: z.number().int() }), z.object({ error: z.object({ code: z.string(), message: z.string() }) })]);
export type ExecStatus = z.infer<typeof ExecStatusSchema>;
