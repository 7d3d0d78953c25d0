import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { OrchardError, validationError } from '../../protocol/errors.js';
import { MAX_BODY_BYTES } from '../../protocol/api.js';
import { flagStrings, usageError } from '../args.js';
import { objectRef } from '../format.js';
import type { Io } from '../io.js';
import type { CommandDef } from './command.js';

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

export interface ManifestSource {
  /** File path, or `-` for stdin. */
  name: string;
  text: string;
}

/** Expands `-f` values: a file, every manifest file in a directory (sorted), or stdin. */
export async function readManifestSources(paths: readonly string[], io: Io): Promise<ManifestSource[]> {
  if (paths.length === 0) throw usageError('-f FILE|DIR|- is required');
  const out: ManifestSource[] = [];
  for (const p of paths) {
    if (p === '-') {
      out.push({ name: '-', text: await io.readStdin() });
      continue;
    }
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (err) {
      throw new OrchardError('ERR_VALIDATION', `cannot read ${p}: ${(err as Error).message}`);
    }
    if (!isDir) {
      out.push({ name: p, text: await readFile(p, 'utf8') });
      continue;
    }
    const files = (await readdir(p, { withFileTypes: true }))
      .filter((e) => e.isFile() && MANIFEST_EXTENSIONS.has(extname(e.name).toLowerCase()))
      .map((e) => e.name)
      .sort();
    if (files.length === 0) throw new OrchardError('ERR_VALIDATION', `directory ${p} holds no .yaml, .yml or .json files`);
    for (const f of files) out.push({ name: join(p, f), text: await readFile(join(p, f), 'utf8') });
  }
  return out;
}

/**
 * Parses locally so YAML syntax errors name the file (the hub only sees one joined body).
 * Returns the documents' contents; empty documents are dropped.
 */
export function parseManifestDocuments(src: ManifestSource): unknown[] {
  const docs = parseAllDocuments(src.text);
  // parseAllDocuments returns an EmptyStream (not an array) for empty input.
  if (!Array.isArray(docs)) return [];
  const out: unknown[] = [];
  for (const doc of docs) {
    const first = doc.errors[0];
    if (first !== undefined) {
      throw new OrchardError('ERR_BAD_YAML', `${src.name === '-' ? 'stdin' : src.name}: ${first.message.split('\n')[0] ?? first.message}`);
    }
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

const ApplyResultSchema = z.object({
  results: z.array(z.object({ kind: z.string(), name: z.string(), action: z.string() })),
});

export const applyCommand: CommandDef = {
  name: 'apply',
  summary: 'Create or update objects from manifest files',
  usage: `orchard apply -f FILE|DIR|- [-f ...]

Sends the manifests (YAML or JSON; a directory means its *.yaml, *.yml and *.json files,
sorted by name; - means stdin) to the hub in one request, so a bad document changes nothing.

Flags:
  -f, --filename FILE|DIR|-   manifest source (repeatable)`,
  options: { filename: { type: 'string', short: 'f', multiple: true } },
  async run(ctx) {
    if (ctx.positionals.length > 0) throw usageError(`unexpected argument "${ctx.positionals[0] ?? ''}"`);
    const sources = await readManifestSources(flagStrings(ctx.flags, 'filename'), ctx.io);
    const texts: string[] = [];
    for (const src of sources) {
      if (parseManifestDocuments(src).length > 0) texts.push(src.text);
    }
    if (texts.length === 0) throw new OrchardError('ERR_VALIDATION', 'no objects to apply: the manifests are empty');
    // One body: the hub validates every document before writing any (all or nothing).
    const body = texts.join('\n---\n');
    if (Buffer.byteLength(body) > MAX_BODY_BYTES) {
      throw new OrchardError('ERR_PAYLOAD_TOO_LARGE', `manifests total ${Buffer.byteLength(body)} bytes; the hub accepts at most ${MAX_BODY_BYTES}`);
    }
    const client = await ctx.client();
    const raw = await client.post('/api/v1/apply', body, 'application/yaml');
    const r = ApplyResultSchema.safeParse(raw);
    if (!r.success) throw validationError(r.error, 'response from hub for POST /api/v1/apply');
    for (const item of r.data.results) ctx.io.stdout.write(`${objectRef(item.kind, item.name)} ${item.action}\n`);
    return 0;
  },
};
