import { flagString, requireInt, resolveResource, usageError } from '../args.js';
import { objectRef } from '../format.js';
import type { CommandDef } from './command.js';

export const scaleCommand: CommandDef = {
  name: 'scale',
  summary: 'Set the replica count of a deployment',
  usage: `orchard scale deployment NAME --replicas N

Flags:
  --replicas N   desired number of pods (0 or more)`,
  options: { replicas: { type: 'string' } },
  async run(ctx) {
    const [typeArg, nameArg, extra] = ctx.positionals;
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const ref = resolveResource(typeArg, ['Deployment']);
    const name = ref.name ?? nameArg;
    if (name === undefined) throw usageError('missing deployment name');
    const text = flagString(ctx.flags, 'replicas');
    if (text === undefined) throw usageError('--replicas N is required');
    const replicas = requireInt('replicas', text, 0);
    const client = await ctx.client();
    await client.post(`/api/v1/deployments/${encodeURIComponent(name)}/scale`, { replicas });
    ctx.io.stdout.write(`${objectRef('Deployment', name)} scaled\n`);
    return 0;
  },
};
