import { stringify } from 'yaml';
import {
  OBJECT_KINDS,
  type AnyObject,
  type ConfigMapObject,
  type Deployment,
  type EventObject,
  type NodeObject,
  type Pod,
  type PersistentVolumeObject,
  type RevisionObject,
  type SecretObject,
  type ServiceObject,
} from '../../protocol/objects.js';
import { servicesTable } from '../services.js';
import { flagString, resolveResource, usageError } from '../args.js';
import { objectRef } from '../format.js';
import { getObject, listObjects, sortEvents } from '../resources.js';
import { configMapsTable, deploymentsTable, eventsTable, nodesTable, podsTable, revisionsTable, secretsTable, volumesTable } from '../tables.js';
import type { CommandDef } from './command.js';

export const OUTPUT_FORMATS = ['wide', 'json', 'yaml', 'name'] as const;
type OutputFormat = (typeof OUTPUT_FORMATS)[number] | 'table';

function outputFormat(text: string | undefined): OutputFormat {
  if (text === undefined) return 'table';
  if ((OUTPUT_FORMATS as readonly string[]).includes(text)) return text as OutputFormat;
  throw usageError(`-o "${text}" is not one of: ${OUTPUT_FORMATS.join(', ')}`);
}

export const getCommand: CommandDef = {
  name: 'get',
  summary: 'List nodes, deployments, pods, services or events',
  usage: `orchard get nodes|deployments|pods|services|events|configmaps|secrets|revisions|volumes [NAME] [-o wide|json|yaml|name]

Types also accept singular and short forms: node/no, deployment/deploy, pod/po, service/svc, event/ev, configmap/cm, revision/rev,
and TYPE/NAME (e.g. deploy/web).

Flags:
  -o, --output FORMAT   wide, json, yaml or name (default: a table)`,
  options: { output: { type: 'string', short: 'o' } },
  async run(ctx) {
    const [typeArg, nameArg, extra] = ctx.positionals;
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const ref = resolveResource(typeArg, OBJECT_KINDS);
    if (ref.name !== undefined && nameArg !== undefined) throw usageError(`give the name once: "${typeArg ?? ''}" already names the object`);
    const name = ref.name ?? nameArg;
    const format = outputFormat(flagString(ctx.flags, 'output'));
    const client = await ctx.client();
    const out = ctx.io.stdout;

    let items: AnyObject[];
    let raw: unknown;
    if (name === undefined) ({ items, raw } = await listObjects(client, ref.kind, ref.plural));
    else {
      const one = await getObject(client, ref.kind, ref.plural, name);
      items = [one.item];
      raw = one.raw;
    }

    // Machine formats print what the hub sent, untouched by our schema defaults.
    if (format === 'json') {
      out.write(`${JSON.stringify(raw, null, 2)}\n`);
      return 0;
    }
    if (format === 'yaml') {
      out.write(stringify(raw));
      return 0;
    }
    if (items.length === 0) {
      // kubectl prints this on stderr so scripts reading stdout see nothing.
      ctx.io.stderr.write('No resources found.\n');
      return 0;
    }
    if (format === 'name') {
      for (const o of items) out.write(`${objectRef(o.kind, o.metadata.name)}\n`);
      return 0;
    }

    const wide = format === 'wide';
    const now = ctx.io.now();
    switch (ref.kind) {
      case 'Node': {
        // PODS needs the pod list; one extra request, worth it for the most-used column.
        const pods = (await listObjects(client, 'Pod', 'pods')).items;
        out.write(nodesTable(items as NodeObject[], pods, now, wide));
        break;
      }
      case 'Deployment':
        out.write(deploymentsTable(items as Deployment[], now, wide));
        break;
      case 'Pod':
        out.write(podsTable(items as Pod[], now, wide));
        break;
      case 'Event':
        out.write(eventsTable(sortEvents(items as EventObject[]), now));
        break;
      case 'ConfigMap':
        out.write(configMapsTable(items as ConfigMapObject[], now));
        break;
      case 'Secret':
        out.write(secretsTable(items as SecretObject[], now));
        break;
      case 'Revision':
        out.write(revisionsTable(items as RevisionObject[], now));
        break;
      case 'Volume':
        out.write(volumesTable(items as PersistentVolumeObject[], now));
        break;
      case 'Service':
        out.write(servicesTable(items as ServiceObject[], now, wide));
        break;
    }
    return 0;
  },
};
