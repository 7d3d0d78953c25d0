import { usageError } from '../args.js';
import type { CommandDef } from './command.js';
import { deleteTargets } from './delete.js';

export const nodeDeleteCommand: CommandDef = {
  name: 'node delete',
  summary: 'Remove a node from the cluster (its credential stops working)',
  usage: 'orchard node delete NAME [NAME ...]',
  options: {},
  async run(ctx) {
    if (ctx.positionals.length === 0) throw usageError('missing node name');
    return deleteTargets(
      await ctx.client(),
      ctx.positionals.map((name) => ({ kind: 'Node' as const, name })),
      ctx.io,
    );
  },
};
