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
    const d = (await client.post(`/api/v1/deployments/${encodeURIComponent(name)}/scale`, { replicas })) as
      { spec?: { autoscale?: { minReplicas?: number; maxReplicas?: number } } } | undefined;
    ctx.io.stdout.write(`${objectRef('Deployment', name)} scaled\n`);
    // The autoscaler takes it from here at its next pass (docs/observability.md "Scaling by hand").
    const a = d?.spec?.autoscale;
    if (a !== undefined) {
      const note =
        replicas === 0
          ? 'autoscaling is off until replicas is set above 0'
          : `it is autoscaled (min ${a.minReplicas ?? 1}, max ${a.maxReplicas ?? '?'}): the autoscaler may change this at its next pass; use 'orchard autoscale' to change the bounds`;
      ctx.io.stderr.write(`note: ${note}\n`);
    }
    return 0;
  },
};
