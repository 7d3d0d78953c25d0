import { z } from 'zod';
import { LabelsSchema, NameSchema } from './pod-spec.js';

/**
 * Agent upgrades from the hub (issue 17, docs/agent.md "Upgrades"): the hub keeps agent files
 * (versions), signs each with its CA key, and a rollout (AgentRollout) tells at most N nodes at a
 * time to take one. The agent downloads the file over HTTPS (pinned CA, its node credential),
 * checks the SHA-256 and the CA's signature of `signedStatement()`, stages it, and its launcher
 * swaps it in and rolls it back by itself when the new agent does not report in by a deadline.
 */

/** Version strings: semver-like, safe in a file name and a URL path segment. */
export const AgentVersionStringSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[0-9A-Za-z][0-9A-Za-z.+_-]*$/, 'must be letters, digits and . + _ - (like 0.2.0 or 0.2.0-rc.1), starting with a letter or digit');

/** Largest agent file the hub accepts and an agent downloads (the single-file agent is a few MB). */
export const MAX_AGENT_FILE_BYTES = 64 * 1024 * 1024;

const Sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');
/** Base64 signature (RSA PKCS#1 v1.5 over SHA-256 with the hub CA's key). */
const SignatureSchema = z
  .string()
  .min(16)
  .max(2048)
  .regex(/^[A-Za-z0-9+/=]+$/, 'must be base64');

/** One stored agent file, as the hub lists it. */
export const AgentVersionSchema = z.strictObject({
  version: AgentVersionStringSchema,
  sha256: Sha256Schema,
  size: z.number().int().min(1).max(MAX_AGENT_FILE_BYTES),
  signature: SignatureSchema,
  createdAt: z.string(),
});
export type AgentVersion = z.infer<typeof AgentVersionSchema>;

/**
 * What the CA signs: the version, the file's hash and size together, so a signed file cannot be
 * served as another version (a downgrade) nor a signature moved to another file.
 */
export function signedStatement(v: { version: string; sha256: string; size: number }): string {
  return `orchard-agent-file\nversion=${v.version}\nsha256=${v.sha256}\nsize=${v.size}\n`;
}

/** hub → agent on `orchard/v1/nodes/{node}/upgrade` (retained, QoS 1; empty payload = nothing to do). */
export const AgentUpgradeMessageSchema = z.strictObject({
  node: NameSchema,
  /** The AgentRollout's name: an agent acts on one rollout's command once. */
  rollout: NameSchema,
  version: AgentVersionStringSchema,
  sha256: Sha256Schema,
  size: z.number().int().min(1).max(MAX_AGENT_FILE_BYTES),
  signature: SignatureSchema,
  /** HTTPS path on the hub's API port (GET with the node credential as Basic auth). */
  path: z.string().regex(/^\/api\/v1\/agent-versions\/[0-9A-Za-z.+_-]+\/file$/),
  /** Seconds the new agent has, from its start, to report in before its launcher rolls back. */
  deadlineSeconds: z.number().int().min(5).max(86_400),
  at: z.string(),
  /** The publishing leader's epoch (protocol/messages.ts EpochSchema); absent from a single hub. */
  epoch: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
});
export type AgentUpgradeMessage = z.infer<typeof AgentUpgradeMessageSchema>;

export const AGENT_UPGRADE_DEFAULTS = { maxParallel: 1, deadlineSeconds: 300 } as const;

/** `POST /api/v1/agent-rollouts` (`orchard node upgrade`): exactly one of nodes, selector, all. */
export const AgentUpgradeRequestSchema = z
  .strictObject({
    nodes: z.array(NameSchema).max(10_000).optional(),
    selector: LabelsSchema.optional(),
    all: z.literal(true).optional(),
    /** Default: the newest stored version. */
    to: AgentVersionStringSchema.optional(),
    maxParallel: z.number().int().min(1).max(1000).default(AGENT_UPGRADE_DEFAULTS.maxParallel),
    deadlineSeconds: z.number().int().min(5).max(86_400).default(AGENT_UPGRADE_DEFAULTS.deadlineSeconds),
  })
  .refine((r) => [r.nodes !== undefined && r.nodes.length > 0, r.selector !== undefined, r.all === true].filter(Boolean).length === 1, {
    message: 'name nodes, or give selector, or all: true (exactly one)',
    path: ['nodes'],
  });
export type AgentUpgradeRequest = z.infer<typeof AgentUpgradeRequestSchema>;
