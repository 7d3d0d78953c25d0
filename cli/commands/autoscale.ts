import type { AutoscaleArgs } from '../../protocol/api.js';
import { flagBool, flagString, requireDuration, requireInt, resolveResource, usageError } from '../args.js';
import { objectRef } from '../format.js';
import type { CommandDef } from './command.js';

export const autoscaleCommand: CommandDef = {
  name: 'autoscale',
  summary: "Scale a deployment on its pods' CPU/memory use (Kubernetes HPA's algorithm)",
  usage: `orchard autoscale deployment NAME --max N [--min N] [--cpu-percent P] [--memory-percent P] [--downscale-window DURATION]
       orchard autoscale deployment NAME --off

Sets the deployment's spec.autoscale; a flag left out keeps what is set (a new policy needs
--max and a target). Targets are average use in percent of the pods' requests; every container
needs a request (or a limit) of that resource.

Flags:
  --min N                fewest pods (default 1)
  --max N                most pods
  --cpu-percent P        target average CPU use, percent of requests
  --memory-percent P     target average memory use, percent of requests
  --downscale-window D   scale-down stabilisation window (e.g. 2m; default the hub's, 5m)
  --off                  stop autoscaling (replicas stay where they are)`,
  options: {
    min: { type: 'string' },
    max: { type: 'string' },
    'cpu-percent': { type: 'string' },
    'memory-percent': { type: 'string' },
    'downscale-window': { type: 'string' },
    off: { type: 'boolean' },
  },
  async run(ctx) {
    const [typeArg, nameArg, extra] = ctx.positionals;
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const ref = resolveResource(typeArg, ['Deployment']);
    const name = ref.name ?? nameArg;
    if (name === undefined) throw usageError('missing deployment name');
    const body: Omit<AutoscaleArgs, 'name'> = {};
    const int = (flag: string, min: number): number | undefined => {
      const text = flagString(ctx.flags, flag);
      return text === undefined ? undefined : requireInt(flag, text, min);
    };
    if (flagBool(ctx.flags, 'off')) {
      if (['min', 'max', 'cpu-percent', 'memory-percent', 'downscale-window'].some((f) => flagString(ctx.flags, f) !== undefined))
        throw usageError('--off takes no other autoscale flag');
      body.off = true;
    } else {
      const min = int('min', 1);
      const max = int('max', 1);
      const cpu = int('cpu-percent', 1);
      const mem = int('memory-percent', 1);
      const window = flagString(ctx.flags, 'downscale-window');
      if (min !== undefined) body.minReplicas = min;
      if (max !== undefined) body.maxReplicas = max;
      if (cpu !== undefined) body.cpuPercent = cpu;
      if (mem !== undefined) body.memoryPercent = mem;
      if (window !== undefined) body.scaleDownStabilizationWindowSeconds = window.trim() === '0' ? 0 : Math.round(requireDuration('downscale-window', window));
      if (Object.keys(body).length === 0) throw usageError('nothing to set: give --max N and --cpu-percent P (or --memory-percent P), or --off');
    }
    const client = await ctx.client();
    await client.post(`/api/v1/deployments/${encodeURIComponent(name)}/autoscale`, body);
    ctx.io.stdout.write(`${objectRef('Deployment', name)} ${body.off === true ? 'no longer autoscaled' : 'autoscaled'}\n`);
    return 0;
  },
};
