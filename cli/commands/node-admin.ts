import { z } from 'zod';
import { resolveResource, usageError } from '../args.js';
import { objectRef } from '../format.js';
import type { CommandContext, CommandDef } from './command.js';

/**
 * Node management, as kubectl spells it: cordon, uncordon, drain, `label node`, `taint node`.
 * Each is one POST under /api/v1/nodes/NAME/ (role operator).
 */

const EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const;
type Effect = (typeof EFFECTS)[number];

function oneNode(ctx: CommandContext): string {
  const [name, extra] = ctx.positionals;
  if (name === undefined || name === '') throw usageError('missing node name');
  if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
  return name;
}

function nodePath(name: string, action: string): string {
  return `/api/v1/nodes/${encodeURIComponent(name)}/${action}`;
}

export const cordonCommand: CommandDef = {
  name: 'cordon',
  summary: 'Mark a node unschedulable (its pods stay; new pods go elsewhere)',
  usage: 'orchard cordon NODE',
  options: {},
  async run(ctx) {
    const name = oneNode(ctx);
    await (await ctx.client()).post(nodePath(name, 'cordon'), {});
    ctx.io.stdout.write(`${objectRef('Node', name)} cordoned\n`);
    return 0;
  },
};

export const uncordonCommand: CommandDef = {
  name: 'uncordon',
  summary: 'Mark a node schedulable again',
  usage: 'orchard uncordon NODE',
  options: {},
  async run(ctx) {
    const name = oneNode(ctx);
    await (await ctx.client()).post(nodePath(name, 'uncordon'), {});
    ctx.io.stdout.write(`${objectRef('Node', name)} uncordoned\n`);
    return 0;
  },
};

const DrainResultSchema = z.object({ evicted: z.array(z.string()), kept: z.array(z.string()) });

export const drainCommand: CommandDef = {
  name: 'drain',
  summary: 'Cordon a node and move its pods elsewhere (global pods stay)',
  usage: `orchard drain NODE

Cordons the node, then deletes every pod on it except those of global deployments; their
deployments create replacements, which the scheduler places on other nodes.`,
  options: {},
  async run(ctx) {
    const name = oneNode(ctx);
    const raw = await (await ctx.client()).post(nodePath(name, 'drain'), {});
    const r = DrainResultSchema.safeParse(raw);
    const out = ctx.io.stdout;
    out.write(`${objectRef('Node', name)} cordoned\n`);
    if (r.success) {
      for (const p of r.data.evicted) out.write(`evicted ${objectRef('Pod', p)}\n`);
      out.write(`${objectRef('Node', name)} drained (${r.data.evicted.length} evicted, ${r.data.kept.length} global kept)\n`);
    } else out.write(`${objectRef('Node', name)} drained\n`);
    return 0;
  },
};

/** `k=v` sets, `k-` removes. */
export function parseLabelArgs(args: readonly string[]): { set: Record<string, string>; remove: string[] } {
  const set: Record<string, string> = {};
  const remove: string[] = [];
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq > 0) set[a.slice(0, eq)] = a.slice(eq + 1);
    else if (eq < 0 && a.length > 1 && a.endsWith('-')) remove.push(a.slice(0, -1));
    else throw usageError(`label "${a}" must look like key=value (set) or key- (remove)`);
  }
  return { set, remove };
}

/** `key=value:Effect` / `key:Effect` add; `key:Effect-` / `key-` remove (kubectl's taint syntax). */
export function parseTaintArgs(args: readonly string[]): {
  add: Array<{ key: string; value?: string; effect: Effect }>;
  remove: Array<{ key: string; effect?: Effect }>;
} {
  const add: Array<{ key: string; value?: string; effect: Effect }> = [];
  const remove: Array<{ key: string; effect?: Effect }> = [];
  const effectOf = (text: string, arg: string): Effect => {
    const e = EFFECTS.find((x) => x === text);
    if (e === undefined) throw usageError(`taint "${arg}": effect "${text}" is not one of ${EFFECTS.join(', ')}`);
    return e;
  };
  for (const a of args) {
    const removing = a.endsWith('-');
    const body = removing ? a.slice(0, -1) : a;
    const colon = body.lastIndexOf(':');
    if (removing) {
      if (colon < 0) {
        if (body === '' || body.includes('=')) throw usageError(`taint "${a}" must look like key- or key:Effect-`);
        remove.push({ key: body });
      } else {
        const key = body.slice(0, colon);
        if (key === '' || key.includes('=')) throw usageError(`taint "${a}" must look like key- or key:Effect-`);
        remove.push({ key, effect: effectOf(body.slice(colon + 1), a) });
      }
      continue;
    }
    if (colon <= 0) throw usageError(`taint "${a}" must look like key=value:Effect or key:Effect`);
    const effect = effectOf(body.slice(colon + 1), a);
    const kv = body.slice(0, colon);
    const eq = kv.indexOf('=');
    if (eq === 0) throw usageError(`taint "${a}" has an empty key`);
    add.push(eq < 0 ? { key: kv, effect } : { key: kv.slice(0, eq), value: kv.slice(eq + 1), effect });
  }
  return { add, remove };
}

function nodeAndEdits(ctx: CommandContext, what: string): { name: string; edits: string[] } {
  const [typeArg, nameArg, ...edits] = ctx.positionals;
  const ref = resolveResource(typeArg, ['Node']);
  const name = ref.name ?? nameArg;
  if (name === undefined) throw usageError('missing node name');
  const rest = ref.name !== undefined && nameArg !== undefined ? [nameArg, ...edits] : edits;
  if (rest.length === 0) throw usageError(`missing ${what} (see --help)`);
  return { name, edits: rest };
}

export const labelCommand: CommandDef = {
  name: 'label',
  summary: 'Set or remove node labels',
  usage: `orchard label node NAME key=value [key2=value2 ...] [key-]

key=value sets a label, key- removes one. Your edits win over labels the agent reports
(--labels) and stay after its next report; orchard.dev/ labels belong to the hub.`,
  options: {},
  async run(ctx) {
    const { name, edits } = nodeAndEdits(ctx, 'labels');
    const body = parseLabelArgs(edits);
    await (await ctx.client()).post(nodePath(name, 'labels'), body);
    ctx.io.stdout.write(`${objectRef('Node', name)} labeled\n`);
    return 0;
  },
};

export const taintCommand: CommandDef = {
  name: 'taint',
  summary: 'Add or remove node taints',
  usage: `orchard taint node NAME key=value:Effect [key:Effect ...] [key:Effect-] [key-]

Effects: NoSchedule (new pods need a toleration), PreferNoSchedule (avoided when possible),
NoExecute (also evicts running pods that do not tolerate it). A trailing - removes.`,
  options: {},
  async run(ctx) {
    const { name, edits } = nodeAndEdits(ctx, 'taints');
    const body = parseTaintArgs(edits);
    await (await ctx.client()).post(nodePath(name, 'taints'), body);
    const verb = body.add.length === 0 ? 'untainted' : 'tainted';
    ctx.io.stdout.write(`${objectRef('Node', name)} ${verb}\n`);
    return 0;
  },
};
