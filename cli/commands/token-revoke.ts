import { z } from 'zod';
import { usageError } from '../args.js';
import type { CommandDef } from './command.js';

const RevokedSchema = z.object({ id: z.string(), kind: z.enum(['join', 'api']).optional(), disconnected: z.number().default(0) });

export const tokenRevokeCommand: CommandDef = {
  name: 'token revoke',
  summary: 'Revoke join or API tokens by id (see token list); takes effect at once',
  usage: `orchard token revoke ID [ID ...]

An API token stops working for HTTP at once and its MQTT sessions are closed. A join token can
join no more nodes; nodes that already joined keep their own credentials (orchard node delete).`,
  options: {},
  async run(ctx) {
    if (ctx.positionals.length === 0) throw usageError('missing token id (orchard token list shows them)');
    const client = await ctx.client();
    for (const id of ctx.positionals) {
      const r = RevokedSchema.parse(await client.delete(`/api/v1/tokens/${encodeURIComponent(id)}`));
      const extra = r.disconnected > 0 ? ` (${r.disconnected} MQTT session${r.disconnected === 1 ? '' : 's'} closed)` : '';
      ctx.io.stdout.write(`${r.kind ?? 'token'} token ${r.id} revoked${extra}\n`);
    }
    return 0;
  },
};
