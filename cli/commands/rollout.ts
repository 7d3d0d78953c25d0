import { z } from 'zod';
import { validationError } from '../../protocol/errors.js';
import { ImagePullProgressSchema, RolloutStatusSchema } from '../../protocol/objects.js';
import { flagBool, flagString, requireInt, resolveResource, usageError } from '../args.js';
import type { HubClient } from '../client.js';
import { objectRef, table } from '../format.js';
import type { CommandContext, CommandDef } from './command.js';

/**
 * `orchard rollout status|history|undo|pause|resume|restart|promote deployment/NAME`, over
 * /api/v1/deployments/NAME/rollout/… (hub/api/routes-rollout.ts). `status` follows the
 * rollout until it ends: exit 0 when it completed, 1 when it failed or was rolled back.
 */

const PodViewSchema = z.object({
  name: z.string(),
  node: z.string().optional(),
  revision: z.number().optional(),
  updated: z.boolean(),
  ready: z.boolean(),
  phase: z.string(),
  problem: z.string().optional(),
  pull: ImagePullProgressSchema.optional(),
});

export const RolloutStatusViewSchema = z.object({
  name: z.string(),
  generation: z.number(),
  observedGeneration: z.number(),
  replicas: z.number(),
  updatedReplicas: z.number(),
  readyReplicas: z.number(),
  availableReplicas: z.number(),
  updateRevision: z.string().optional(),
  currentRevision: z.string().optional(),
  revision: z.number().optional(),
  paused: z.boolean(),
  rollout: RolloutStatusSchema.optional(),
  pods: z.array(PodViewSchema),
});
export type RolloutStatusView = z.infer<typeof RolloutStatusViewSchema>;

const HistorySchema = z.object({
  items: z.array(
    z.object({
      revision: z.number(),
      hash: z.string(),
      changeCause: z.string().optional(),
      images: z.array(z.string()),
      update: z.boolean(),
      stable: z.boolean(),
    }),
  ),
});

const POLL_MS = 500;

function target(ctx: CommandContext): string {
  const [typeArg, nameArg, extra] = ctx.positionals;
  if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
  const ref = resolveResource(typeArg, ['Deployment']);
  const name = ref.name ?? nameArg;
  if (name === undefined) throw usageError('missing deployment name (deployment/NAME)');
  return name;
}

const base = (name: string): string => `/api/v1/deployments/${encodeURIComponent(name)}/rollout`;

async function fetchStatus(client: HubClient, name: string): Promise<RolloutStatusView> {
  const path = `${base(name)}/status`;
  const raw = await client.get(path);
  const r = RolloutStatusViewSchema.safeParse(raw);
  if (!r.success) throw validationError(r.error, `response from hub for GET ${path}`);
  return r.data;
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)}MB`;
}

/** `[#####-----] 3/5 layers 1.2MB/2.0MB`; bytes when known, else layers. */
export function progressBar(p: z.infer<typeof ImagePullProgressSchema>, width = 20): string {
  const frac = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : p.layersTotal > 0 ? p.layersDone / p.layersTotal : 0;
  const filled = Math.max(0, Math.min(width, Math.round(frac * width)));
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${p.layersDone}/${p.layersTotal} layers ${mb(p.bytesDone)}/${mb(p.bytesTotal)}`;
}

/** The lines describing the rollout now; printed again only when they change. */
export function describeProgress(s: RolloutStatusView): string[] {
  const lines: string[] = [];
  const phase = s.rollout?.phase;
  const dep = `deployment "${s.name}"`;
  if (phase === 'Paused') lines.push(`${dep} rollout is paused (orchard rollout resume deployment/${s.name})`);
  else if (phase === 'CanaryPaused')
    lines.push(
      `${dep} canary is waiting: ${s.updatedReplicas} pod(s) of revision ${s.revision ?? '?'} — run 'orchard rollout promote deployment/${s.name}' to continue`,
    );
  else if (s.updatedReplicas < s.replicas)
    lines.push(`Waiting for ${dep} rollout to finish: ${s.updatedReplicas} out of ${s.replicas} new replicas have been updated...`);
  else if (s.pods.some((p) => !p.updated))
    lines.push(`Waiting for ${dep} rollout to finish: ${s.pods.filter((p) => !p.updated).length} old replicas are pending termination...`);
  else lines.push(`Waiting for ${dep} rollout to finish: ${s.availableReplicas} of ${s.updatedReplicas} updated replicas are available...`);
  // One progress bar per node for image pulls in flight.
  const byNode = new Map<string, z.infer<typeof ImagePullProgressSchema>>();
  for (const p of s.pods) if (p.pull !== undefined) byNode.set(`${p.node ?? '<unscheduled>'}\0${p.pull.image}`, p.pull);
  for (const [key, pull] of [...byNode].sort(([a], [b]) => (a < b ? -1 : 1))) {
    lines.push(`  ${key.split('\0')[0]}: pulling ${pull.image} ${progressBar(pull)}`);
  }
  for (const p of s.pods)
    if (p.updated && !p.ready && p.problem !== undefined && p.pull === undefined) lines.push(`  ${p.name}${p.node ? ` on ${p.node}` : ''}: ${p.problem}`);
  return lines;
}

type Outcome = { done: false } | { done: true; ok: boolean; message: string };

/** Has the rollout that was under way when we started (`startHash`) ended? */
export function outcome(s: RolloutStatusView, startHash: string | undefined): Outcome {
  const r = s.rollout;
  if (r?.rolledBackFrom !== undefined && r.rolledBackFrom.hash === startHash) {
    return {
      done: true,
      ok: false,
      message: `deployment "${s.name}" rollout of revision ${r.rolledBackFrom.revision} failed and was rolled back: ${r.rolledBackFrom.reason}`,
    };
  }
  if (startHash !== undefined && s.updateRevision !== undefined && s.updateRevision !== startHash) {
    return {
      done: true,
      ok: false,
      message: `deployment "${s.name}" was changed while waiting (now revision ${s.revision ?? '?'}); run 'orchard rollout status' again`,
    };
  }
  if (r === undefined) {
    // A hub or controller that reports no rollout state (global mode): count ready pods.
    const ok = s.observedGeneration >= s.generation && s.readyReplicas >= s.replicas && s.pods.length === s.replicas;
    return ok ? { done: true, ok: true, message: `deployment "${s.name}" successfully rolled out` } : { done: false };
  }
  if (r.phase === 'Failed') return { done: true, ok: false, message: `deployment "${s.name}" rollout failed: ${r.message ?? 'progress deadline exceeded'}` };
  if (r.phase === 'Complete' || r.phase === 'RolledBack') return { done: true, ok: true, message: `deployment "${s.name}" successfully rolled out` };
  return { done: false };
}

export const rolloutStatusCommand: CommandDef = {
  name: 'rollout status',
  summary: 'Follow a rollout until it completes (exit 0) or fails / is rolled back (exit 1)',
  usage: `orchard rollout status deployment/NAME [--once]

Prints progress as it changes, with a progress bar per node for image pulls.

Flags:
  --once   print the state once; exit 0 if complete, 1 if failed, 3 if still in progress`,
  options: { once: { type: 'boolean' } },
  async run(ctx) {
    const name = target(ctx);
    const client = await ctx.client();
    let s = await fetchStatus(client, name);
    // Wait until the controller has seen the latest spec, so we follow the right revision.
    while (s.observedGeneration < s.generation && !flagBool(ctx.flags, 'once')) {
      await sleep(POLL_MS);
      s = await fetchStatus(client, name);
    }
    const startHash = s.updateRevision;
    let last = '';
    for (;;) {
      const o = outcome(s, startHash);
      if (o.done) {
        (o.ok ? ctx.io.stdout : ctx.io.stderr).write(`${o.ok ? '' : 'error: '}${o.message}\n`);
        return o.ok ? 0 : 1;
      }
      const text = describeProgress(s).join('\n');
      if (text !== last) {
        ctx.io.stdout.write(`${text}\n`);
        last = text;
      }
      if (flagBool(ctx.flags, 'once')) return 3;
      await sleep(POLL_MS);
      s = await fetchStatus(client, name);
    }
  },
};

export const rolloutHistoryCommand: CommandDef = {
  name: 'rollout history',
  summary: "List a deployment's revisions with their change causes",
  usage: 'orchard rollout history deployment/NAME',
  options: {},
  async run(ctx) {
    const name = target(ctx);
    const client = await ctx.client();
    const path = `${base(name)}/history`;
    const r = HistorySchema.safeParse(await client.get(path));
    if (!r.success) throw validationError(r.error, `response from hub for GET ${path}`);
    ctx.io.stdout.write(`${objectRef('Deployment', name)}\n`);
    const rows = r.data.items.map((i) => [
      String(i.revision),
      i.changeCause ?? '<none>',
      i.images.join(','),
      [i.update ? 'update' : '', i.stable ? 'stable' : ''].filter(Boolean).join(',') || '-',
    ]);
    ctx.io.stdout.write(table(['REVISION', 'CHANGE-CAUSE', 'IMAGES', 'STATE'], rows));
    return 0;
  },
};

export const rolloutUndoCommand: CommandDef = {
  name: 'rollout undo',
  summary: 'Roll a deployment back to the previous (or a given) revision',
  usage: `orchard rollout undo deployment/NAME [--to-revision N]

Nodes keep the images of the current and previous revisions, so an undo works with no
registry reachable.

Flags:
  --to-revision N   the revision to return to (default: the previous one)`,
  options: { 'to-revision': { type: 'string' } },
  async run(ctx) {
    const name = target(ctx);
    const text = flagString(ctx.flags, 'to-revision');
    const body = text === undefined ? {} : { toRevision: requireInt('to-revision', text, 1) };
    const client = await ctx.client();
    const r = (await client.post(`${base(name)}/undo`, body)) as { revision?: number; skipped?: boolean } | undefined;
    ctx.io.stdout.write(
      r?.skipped
        ? `${objectRef('Deployment', name)} skipped rollback (already at revision ${r.revision ?? '?'})\n`
        : `${objectRef('Deployment', name)} rolled back to revision ${r?.revision ?? '?'}\n`,
    );
    return 0;
  },
};

function simple(action: 'pause' | 'resume' | 'restart' | 'promote', summary: string, done: string): CommandDef {
  return {
    name: `rollout ${action}`,
    summary,
    usage: `orchard rollout ${action} deployment/NAME`,
    options: {},
    async run(ctx) {
      const name = target(ctx);
      const client = await ctx.client();
      await client.post(`${base(name)}/${action}`, {});
      ctx.io.stdout.write(`${objectRef('Deployment', name)} ${done}\n`);
      return 0;
    },
  };
}

export const rolloutPauseCommand = simple('pause', 'Pause a rollout (scaling and self-healing go on)', 'paused');
export const rolloutResumeCommand = simple('resume', 'Resume a paused rollout', 'resumed');
export const rolloutRestartCommand = simple('restart', 'Replace every pod through a rollout (a new revision)', 'restarted');
export const rolloutPromoteCommand = simple('promote', 'Let a canary rollout continue to every replica', 'promoted');

export const ROLLOUT_COMMANDS: readonly CommandDef[] = [
  rolloutStatusCommand,
  rolloutHistoryCommand,
  rolloutUndoCommand,
  rolloutPauseCommand,
  rolloutResumeCommand,
  rolloutRestartCommand,
  rolloutPromoteCommand,
];

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
