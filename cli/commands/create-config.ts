import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { z } from 'zod';
import { OrchardError, validationError } from '../../protocol/errors.js';
import { API_VERSION, ConfigKeySchema, NameSchema } from '../../protocol/manifest.js';
import { flagBool, flagStrings, usageError } from '../args.js';
import { objectRef } from '../format.js';
import type { CommandContext, CommandDef } from './command.js';

/**
 * `orchard create secret generic NAME` and `orchard create configmap NAME` with kubectl's
 * --from-literal k=v and --from-file [key=]path. The object is built here and sent through the
 * normal apply route, so the hub validates it exactly as a manifest (and encrypts the secret).
 */

const ApplyResultSchema = z.object({ results: z.array(z.object({ kind: z.string(), name: z.string(), action: z.string() })) });
const MAX_FILE_BYTES = 1024 * 1024;

export interface ConfigEntries {
  /** key → raw bytes. */
  entries: Map<string, Buffer>;
}

/** Parses --from-literal k=v and --from-file [key=]path into key → bytes; duplicate keys are an error. */
export async function readEntries(literals: readonly string[], files: readonly string[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const put = (key: string, value: Buffer, from: string): void => {
    if (!ConfigKeySchema.safeParse(key).success) throw usageError(`${from}: key "${key}" must be letters, digits, "-", "_" or "."`);
    if (out.has(key)) throw usageError(`${from}: key "${key}" is given more than once`);
    out.set(key, value);
  };
  for (const l of literals) {
    const eq = l.indexOf('=');
    if (eq <= 0) throw usageError(`--from-literal "${l}" must be KEY=VALUE`);
    put(l.slice(0, eq), Buffer.from(l.slice(eq + 1), 'utf8'), '--from-literal');
  }
  for (const f of files) {
    const eq = f.indexOf('=');
    const key = eq > 0 ? f.slice(0, eq) : basename(f);
    const path = eq > 0 ? f.slice(eq + 1) : f;
    let size: number;
    try {
      const st = await stat(path);
      if (!st.isFile()) throw new Error('not a regular file');
      size = st.size;
    } catch (err) {
      throw new OrchardError('ERR_VALIDATION', `--from-file: cannot read ${path}: ${(err as Error).message}`);
    }
    if (size > MAX_FILE_BYTES) throw new OrchardError('ERR_VALIDATION', `--from-file: ${path} is ${size} bytes; at most 1 MiB`);
    put(key, await readFile(path), '--from-file');
  }
  return out;
}

export function secretManifest(name: string, entries: ReadonlyMap<string, Buffer>): object {
  const data: Record<string, string> = {};
  for (const [k, v] of entries) data[k] = v.toString('base64');
  return { apiVersion: API_VERSION, kind: 'Secret', metadata: { name }, type: 'Opaque', data };
}

/** Valid UTF-8 goes to `data`, anything else to `binaryData` (base64), as kubectl does. */
export function configMapManifest(name: string, entries: ReadonlyMap<string, Buffer>): object {
  const data: Record<string, string> = {};
  const binaryData: Record<string, string> = {};
  for (const [k, v] of entries) {
    const text = v.toString('utf8');
    if (Buffer.from(text, 'utf8').equals(v)) data[k] = text;
    else binaryData[k] = v.toString('base64');
  }
  return { apiVersion: API_VERSION, kind: 'ConfigMap', metadata: { name }, data, binaryData };
}

async function send(ctx: CommandContext, manifest: object): Promise<number> {
  const client = await ctx.client();
  const raw = await client.post('/api/v1/apply', JSON.stringify([manifest]), 'application/json');
  const r = ApplyResultSchema.safeParse(raw);
  if (!r.success) throw validationError(r.error, 'response from hub for POST /api/v1/apply');
  for (const item of r.data.results) ctx.io.stdout.write(`${objectRef(item.kind, item.name)} ${item.action}\n`);
  return 0;
}

function checkName(name: string | undefined, what: string): string {
  if (name === undefined) throw usageError(`${what} NAME is required`);
  const r = NameSchema.safeParse(name);
  if (!r.success) throw usageError(`name "${name}": ${r.error.issues[0]?.message ?? 'invalid'}`);
  return name;
}

const OPTIONS = {
  'from-literal': { type: 'string', multiple: true },
  'from-file': { type: 'string', multiple: true },
  'dry-run': { type: 'boolean' },
} as const;

const FLAGS_HELP = `Flags:
  --from-literal KEY=VALUE     a key and its value (repeatable)
  --from-file [KEY=]PATH       a key whose value is the file's content; KEY defaults to the file name (repeatable)
  --dry-run                    print the manifest instead of sending it (secret values base64, not encrypted)`;

export const createSecretCommand: CommandDef = {
  name: 'create secret',
  summary: 'Create or update a Secret (encrypted at rest on the hub)',
  usage: `orchard create secret generic NAME [--from-literal KEY=VALUE]... [--from-file [KEY=]PATH]...

${FLAGS_HELP}`,
  options: OPTIONS,
  async run(ctx) {
    const [type, nameArg, extra] = ctx.positionals;
    if (type !== 'generic') throw usageError(`secret type "${type ?? ''}" is not supported; use: orchard create secret generic NAME`);
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const name = checkName(nameArg, 'create secret generic');
    const entries = await readEntries(flagStrings(ctx.flags, 'from-literal'), flagStrings(ctx.flags, 'from-file'));
    const manifest = secretManifest(name, entries);
    if (flagBool(ctx.flags, 'dry-run')) {
      ctx.io.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
      return 0;
    }
    return send(ctx, manifest);
  },
};

export const createConfigMapCommand: CommandDef = {
  name: 'create configmap',
  summary: 'Create or update a ConfigMap',
  usage: `orchard create configmap NAME [--from-literal KEY=VALUE]... [--from-file [KEY=]PATH]...

${FLAGS_HELP}`,
  options: OPTIONS,
  async run(ctx) {
    const [nameArg, extra] = ctx.positionals;
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const name = checkName(nameArg, 'create configmap');
    const entries = await readEntries(flagStrings(ctx.flags, 'from-literal'), flagStrings(ctx.flags, 'from-file'));
    const manifest = configMapManifest(name, entries);
    if (flagBool(ctx.flags, 'dry-run')) {
      ctx.io.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
      return 0;
    }
    return send(ctx, manifest);
  },
};

const RotateResultSchema = z.object({ keyId: z.string(), reencrypted: z.number(), retired: z.array(z.string()) });

export const secretRotateKeyCommand: CommandDef = {
  name: 'secret rotate-key',
  summary: 'Rotate the hub key that encrypts Secrets at rest (admin)',
  usage: `orchard secret rotate-key

A new key becomes active, every Secret is re-encrypted with it, then the old key is forgotten.
Values do not change: no deployment rolls.`,
  options: {},
  async run(ctx) {
    if (ctx.positionals.length > 0) throw usageError(`unexpected argument "${ctx.positionals[0] ?? ''}"`);
    const client = await ctx.client();
    const raw = await client.post('/api/v1/secrets/rotate-key', {});
    const r = RotateResultSchema.safeParse(raw);
    if (!r.success) throw validationError(r.error, 'response from hub for POST /api/v1/secrets/rotate-key');
    ctx.io.stdout.write(
      `secrets key rotated: new key ${r.data.keyId}, ${r.data.reencrypted} secret(s) re-encrypted, ${r.data.retired.length} old key(s) retired\n`,
    );
    return 0;
  },
};

export const CONFIG_COMMANDS: readonly CommandDef[] = [createSecretCommand, createConfigMapCommand, secretRotateKeyCommand];
