import { stringify } from 'yaml';
import { z } from 'zod';
import { RoleSchema } from '../../protocol/api.js';
import { validationError } from '../../protocol/errors.js';
import { flagString, parseLabels, requireDuration, requireInt, usageError, type Flags } from '../args.js';
import { ageSince, formatAge, formatLabels, table } from '../format.js';
import type { CommandDef } from './command.js';

/**
 * Join tokens (for `orchard agent --join`) and API tokens (for this CLI, with a role).
 * The hub answers a create with `{token, ...}`; the secret is shown only then.
 */

export interface TokenCreateRequest {
  type: 'join' | 'api';
  ttlSeconds?: number;
  uses?: number;
  labels?: Record<string, string>;
  role?: z.infer<typeof RoleSchema>;
  name?: string;
}

const TokenCreatedSchema = z.object({ token: z.string().min(1) }).loose();

// The hub's listing (hub/security TokenListing). Secrets are never listed.
const JoinTokenInfoSchema = z.object({
  id: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().optional(),
  uses: z.number().optional(),
  used: z.number().default(0),
  labels: z.record(z.string(), z.string()).default({}),
  usable: z.boolean().default(true),
});
const ApiTokenInfoSchema = z.object({
  id: z.string(),
  name: z.string().default(''),
  role: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().optional(),
  usable: z.boolean().default(true),
});
const TokenListSchema = z.object({
  joinTokens: z.array(JoinTokenInfoSchema).default([]),
  apiTokens: z.array(ApiTokenInfoSchema).default([]),
});

function expiresText(iso: string | undefined, now: number): string {
  if (iso === undefined) return '<never>';
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return iso;
  return at <= now ? 'expired' : `in ${formatAge(at - now)}`;
}

export function buildTokenRequest(f: Flags): TokenCreateRequest {
  const roleText = flagString(f, 'role');
  const ttl = flagString(f, 'ttl');
  const uses = flagString(f, 'uses');
  const labels = flagString(f, 'labels');
  const name = flagString(f, 'name');
  const req: TokenCreateRequest = { type: roleText === undefined ? 'join' : 'api' };
  if (roleText !== undefined) {
    const role = RoleSchema.safeParse(roleText);
    if (!role.success) throw usageError(`--role "${roleText}" is not one of: ${RoleSchema.options.join(', ')}`);
    if (labels !== undefined) throw usageError('--labels applies to join tokens (node labels), not to API tokens with --role');
    req.role = role.data;
    if (name !== undefined) req.name = name;
  } else if (name !== undefined) throw usageError('--name applies to API tokens (with --role)');
  if (ttl !== undefined) req.ttlSeconds = Math.ceil(requireDuration('ttl', ttl));
  if (uses !== undefined) req.uses = requireInt('uses', uses, 1);
  if (labels !== undefined) req.labels = parseLabels(labels);
  return req;
}

export const tokenCreateCommand: CommandDef = {
  name: 'token create',
  summary: 'Create a join token (or an API token with --role); prints only the token',
  usage: `orchard token create [--ttl 24h] [--uses N] [--labels k=v,...] [--role admin|operator|viewer [--name NAME]]

Without --role: a join token for 'orchard agent --join'; --labels are given to nodes joining with it.
With --role: an API token for this CLI and the web API.

Flags:
  --ttl DURATION   lifetime, e.g. 30m, 24h, 7d (default: the hub's)
  --uses N         how many times it may be used
  --labels k=v,..  labels for nodes that join with it
  --role ROLE      admin, operator or viewer: makes an API token
  --name NAME      a name for an API token, shown by 'token list'`,
  options: { ttl: { type: 'string' }, uses: { type: 'string' }, labels: { type: 'string' }, role: { type: 'string' }, name: { type: 'string' } },
  async run(ctx) {
    if (ctx.positionals.length > 0) throw usageError(`unexpected argument "${ctx.positionals[0] ?? ''}"`);
    const body = buildTokenRequest(ctx.flags);
    const client = await ctx.client();
    const raw = await client.post('/api/v1/tokens', body);
    const r = TokenCreatedSchema.safeParse(raw);
    if (!r.success) throw validationError(r.error, 'response from hub for POST /api/v1/tokens');
    ctx.io.stdout.write(`${r.data.token}\n`);
    return 0;
  },
};

export const tokenListCommand: CommandDef = {
  name: 'token list',
  summary: 'List tokens (never their secrets)',
  usage: `orchard token list [-o json|yaml]`,
  options: { output: { type: 'string', short: 'o' } },
  async run(ctx) {
    if (ctx.positionals.length > 0) throw usageError(`unexpected argument "${ctx.positionals[0] ?? ''}"`);
    const format = flagString(ctx.flags, 'output');
    if (format !== undefined && format !== 'json' && format !== 'yaml') throw usageError(`-o "${format}" is not one of: json, yaml`);
    const client = await ctx.client();
    const { parsed, raw } = await client.getParsed('/api/v1/tokens', TokenListSchema);
    const out = ctx.io.stdout;
    if (format === 'json') out.write(`${JSON.stringify(raw, null, 2)}\n`);
    else if (format === 'yaml') out.write(stringify(raw));
    else if (parsed.joinTokens.length === 0 && parsed.apiTokens.length === 0) ctx.io.stderr.write('No resources found.\n');
    else {
      const now = ctx.io.now();
      if (parsed.joinTokens.length > 0) {
        const rows = parsed.joinTokens.map((t) => [
          t.id,
          `${t.used}/${t.uses ?? '∞'}`,
          expiresText(t.expiresAt, now),
          t.usable ? 'usable' : 'unusable',
          formatLabels(t.labels),
          ageSince(t.createdAt, now),
        ]);
        out.write(`JOIN TOKENS\n${table(['ID', 'USED', 'EXPIRES', 'STATE', 'LABELS', 'AGE'], rows)}`);
      }
      if (parsed.apiTokens.length > 0) {
        if (parsed.joinTokens.length > 0) out.write('\n');
        const rows = parsed.apiTokens.map((t) => [t.id, t.name, t.role, expiresText(t.expiresAt, now), t.usable ? 'usable' : 'expired', ageSince(t.createdAt, now)]);
        out.write(`API TOKENS\n${table(['ID', 'NAME', 'ROLE', 'EXPIRES', 'STATE', 'AGE'], rows)}`);
      }
    }
    return 0;
  },
};
