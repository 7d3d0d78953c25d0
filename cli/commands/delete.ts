import { OrchardError } from '../../protocol/errors.js';
import { OBJECT_KINDS, kindFromPlural, pluralOf, type ObjectKind } from '../../protocol/objects.js';
import { flagStrings, resolveResource, usageError } from '../args.js';
import { isTransportError, type HubClient } from '../client.js';
import { objectRef } from '../format.js';
import type { Io } from '../io.js';
import { parseManifestDocuments, readManifestSources } from './apply.js';
import type { CommandDef } from './command.js';

// Events and revisions are history, not things users remove. Whether the hub allows the
// rest (e.g. ConfigMap) is the hub's call; its refusal comes back as a clear error.
const DELETABLE: readonly ObjectKind[] = OBJECT_KINDS.filter((k) => k !== 'Event' && k !== 'Revision');

interface Target {
  kind: ObjectKind;
  name: string;
}

/** `kind` + `metadata.name` of every document; a document without them is an error naming it. */
export function targetsFromDocuments(docs: readonly unknown[], source: string): Target[] {
  return docs.map((doc, i) => {
    const where = `${source === '-' ? 'stdin' : source} document ${i + 1}`;
    const o = (doc ?? {}) as { kind?: unknown; metadata?: { name?: unknown } };
    if (typeof o.kind !== 'string') throw new OrchardError('ERR_VALIDATION', `${where}: kind is required`);
    const kind = kindFromPlural(o.kind.toLowerCase());
    if (kind === undefined || !DELETABLE.includes(kind)) throw new OrchardError('ERR_UNKNOWN_KIND', `${where}: cannot delete kind "${o.kind}"`);
    const name = o.metadata?.name;
    if (typeof name !== 'string' || name === '') throw new OrchardError('ERR_VALIDATION', `${where}: metadata.name is required`);
    return { kind, name };
  });
}

/**
 * Deletes each target in turn; one failure does not stop the rest (as kubectl), but makes
 * the exit code 1.
 */
export async function deleteTargets(client: HubClient, targets: readonly Target[], io: Io): Promise<number> {
  let code = 0;
  for (const t of targets) {
    try {
      await client.delete(`/api/v1/${pluralOf(t.kind)}/${encodeURIComponent(t.name)}`);
      io.stdout.write(`${objectRef(t.kind, t.name)} deleted\n`);
    } catch (err) {
      // An unreachable hub fails every target alike: stop at the first.
      if (!OrchardError.is(err) || isTransportError(err)) throw err;
      io.stderr.write(`error: ${objectRef(t.kind, t.name)}: ${err.message}\n`);
      code = 1;
    }
  }
  return code;
}

export const deleteCommand: CommandDef = {
  name: 'delete',
  summary: 'Delete objects by name or from manifest files',
  usage: `orchard delete deployment|pod|configmap|secret NAME [NAME ...]
orchard delete -f FILE|DIR|-

Flags:
  -f, --filename FILE|DIR|-   delete the objects the manifests name (repeatable)`,
  options: { filename: { type: 'string', short: 'f', multiple: true } },
  async run(ctx) {
    const files = flagStrings(ctx.flags, 'filename');
    let targets: Target[];
    if (files.length > 0) {
      if (ctx.positionals.length > 0) throw usageError('give either -f or TYPE NAME, not both');
      targets = [];
      for (const src of await readManifestSources(files, ctx.io)) targets.push(...targetsFromDocuments(parseManifestDocuments(src), src.name));
      if (targets.length === 0) throw new OrchardError('ERR_VALIDATION', 'no objects to delete: the manifests are empty');
    } else {
      const [typeArg, ...names] = ctx.positionals;
      const ref = resolveResource(typeArg, DELETABLE);
      if (ref.name !== undefined) names.unshift(ref.name);
      if (names.length === 0) throw usageError(`missing ${ref.kind.toLowerCase()} name`);
      targets = names.map((name) => ({ kind: ref.kind, name }));
    }
    return deleteTargets(await ctx.client(), targets, ctx.io);
  },
};
