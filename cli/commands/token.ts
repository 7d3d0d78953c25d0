import { stringify } from 'yaml';
import { z } from 'zod';
import { RoleSchema } from '../../protocol/api.js';
import { NameSchema } from '../../protocol/manifest.js';
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
  replaceNode?: string;
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
  replaceNode: z.string().optional(),
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
  const replaceNode = flagString(f, 'replace-node');
  const req: TokenCreateRequest = { type: roleText === undefined ? 'join' : 'api' };
  if (roleText !== undefined) {
    const role = RoleSchema.safeParse(roleText);
    if (!role.success) throw usageError(`--role "${roleText}" is not one of: ${RoleSchema.options.join(', ')}`);
    if (labels !== undefined) throw usageError('--labels applies to join tokens (node labels), not to API tokens with --role');
    if (replaceNode !== undefined) throw usageError('--replace-node applies to join tokens, not to API tokens with --role');
    req.role = role.data;
    if (name !== undefined) req.name = name;
  } else if (name !== undefined) throw usageError('--name applies to API tokens (with --role)');
  if (ttl !== undefined) req.ttlSeconds = Math.ceil(requireDuration('ttl', ttl));
  if (uses !== undefined) req.uses = requireInt('uses', uses, 1);
  if (labels !== undefined) req.labels = parseLabels(labels);
  if (replaceNode !== undefined) {
    const n = NameSchema.safeParse(replaceNode);
    if (!n.success) throw usageError(`--replace-node "${replaceNode}" is not a node name (lowercase letters, digits and '-', at most 63)`);
    req.replaceNode = n.data;
  }
  return req;
}

export const tokenCreateCommand: CommandDef = {
  name: 'token create',
  summary: 'Create a join token (or an API token with --role); prints only the token',
  usage: `orchard token create [--ttl 24h] [--uses N] [--labels k=v,...] [--replace-node NODE] [--role ${RoleSchema.options.join('|')} [--name NAME]]

Without --role: a join token for 'orchard agent --join'; --labels are given to nodes joining with it
(the node cannot change them). A join token cannot join a name that is already enrolled, unless
it is made with --replace-node NODE: then it joins exactly NODE (and no other name), replacing
its credential (a re-imaged device that lost its identity.json). One use unless --uses says more.
With --role: an API token for this CLI and the web API.

Flags:
  --ttl DURATION   lifetime, e.g. 30m, 24h, 7d (default: the hub's)
  --uses N         how many times it may be used
  --labels k=v,..  labels for nodes that join with it
  --replace-node NODE  the token re-enrols the already enrolled NODE, and joins no other name
  --role ROLE      admin, operator, viewer, or scrape (reads GET /metrics only, for a
                   Prometheus server): makes an API token
  --name NAME      a name for an API token, shown by 'token list'`,
  options: {
    ttl: { type: 'string' },
    uses: { type: 'string' },
    labels: { type: 'string' },
    'replace-node': { type: 'string' },
    role: { type: 'string' },
    name: { type: 'string' },
  },
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
        // The REPLACES column only when a token re-enrols a node, so the usual listing stays narrow.
        const replacing = parsed.joinTokens.some((t) => t.replaceNode !== undefined);
        const header = ['ID', 'USED', 'EXPIRES', 'STATE', 'LABELS', ...(replacing ? ['REPLACES'] : []), 'AGE'];
        const cells = replacing ? rows.map((r, i) => [...r.slice(0, 5), parsed.joinTokens[i]?.replaceNode ?? '-', ...r.slice(5)]) : rows;
        out.write(`JOIN TOKENS\n${table(header, cells)}`);
      }
      if (parsed.apiTokens.length > 0) {
        if (parsed.joinTokens.length > 0) out.write('\n');
        const rows = parsed.apiTokens.map((t) => [
          t.id,
          t.name,
          t.role,
          expiresText(t.expiresAt, now),
          t.usable ? 'usable' : 'expired',
          ageSince(t.createdAt, now),
        ]);
        out.write(`API TOKENS\n${table(['ID', 'NAME', 'ROLE', 'EXPIRES', 'STATE', 'AGE'], rows)}`);
      }
    }
    return 0;
  },
};
