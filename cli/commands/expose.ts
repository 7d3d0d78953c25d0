import { ExposeArgsSchema, type ApplyResult } from '../../protocol/api.js';
import { parseOrThrow } from '../../protocol/errors.js';
import { flagBool, flagString, requireInt, resolveResource, usageError } from '../args.js';
import { objectRef } from '../format.js';
import type { CommandDef } from './command.js';

const POLICIES = ['preferLocal', 'local', 'cluster'];

export const exposeCommand: CommandDef = {
  name: 'expose',
  summary: "Create a service for a deployment's pods",
  usage: `orchard expose deployment NAME --port P [--target-port T] [--name SVC] [--udp] [--publish PORT] [--policy preferLocal|local|cluster]

The service selects the deployment's pods by its template's labels. Applied like any manifest:
running it again with the same flags changes nothing.

Flags:
  --port P            the port clients dial on the service's address (NAME:P)
  --target-port T     the container port (a number or a container port name; default P)
  --name SVC          the service's name (default: the deployment's)
  --udp               a UDP port (default TCP)
  --publish PORT      also open PORT on every device's own addresses (clients outside the fleet)
  --policy POLICY     preferLocal (default: a ready endpoint on the client's node first), local, cluster`,
  options: {
    port: { type: 'string' },
    'target-port': { type: 'string' },
    name: { type: 'string' },
    udp: { type: 'boolean' },
    publish: { type: 'string' },
    policy: { type: 'string' },
  },
  async run(ctx) {
    const [typeArg, nameArg, extra] = ctx.positionals;
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const ref = resolveResource(typeArg, ['Deployment']);
    const deployment = ref.name ?? nameArg;
    if (deployment === undefined) throw usageError('missing deployment name');
    const portText = flagString(ctx.flags, 'port');
    if (portText === undefined) throw usageError('--port P is required');
    const target = flagString(ctx.flags, 'target-port');
    const publish = flagString(ctx.flags, 'publish');
    const policy = flagString(ctx.flags, 'policy');
    if (policy !== undefined && !POLICIES.includes(policy)) throw usageError(`--policy "${policy}" is not one of: ${POLICIES.join(', ')}`);
    const name = flagString(ctx.flags, 'name');
    const body = parseOrThrow(
      ExposeArgsSchema.omit({ deployment: true }),
      {
        port: requireInt('port', portText, 1),
        ...(target !== undefined ? { targetPort: /^\d+$/.test(target) ? Number(target) : target } : {}),
        ...(name !== undefined ? { name } : {}),
        protocol: flagBool(ctx.flags, 'udp') ? 'UDP' : 'TCP',
        ...(publish !== undefined ? { publish: requireInt('publish', publish, 1) } : {}),
        ...(policy !== undefined ? { policy } : {}),
      },
      'expose flags',
    );
    const client = await ctx.client();
    const r = (await client.post(`/api/v1/deployments/${encodeURIComponent(deployment)}/expose`, body)) as ApplyResult;
    for (const item of r.results) ctx.io.stdout.write(`${objectRef(item.kind, item.name)} ${item.action}\n`);
    return 0;
  },
};
