import { createCipheriv, createDecipheriv, createHash, randomBytes, scryptSync } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { OrchardError } from '../../../protocol/errors.js';
import { writeFileAtomicSync } from '../../security/atomic-file.js';
import type { Compare, EtcdClient } from './etcd-client.js';

/**
 * The hub's identity shared by every hub of an etcd group (issue 19): the CA certificate and key,
 * `auth.json` (join and API tokens, node credentials) and `secrets.key`, kept in etcd under
 * `<prefix>bootstrap/<file>`, each encrypted with AES-256-GCM under a key derived (scrypt) from
 * the group's HA secret, which the operator gives every hub and etcd never sees. K3s keeps its
 * bootstrap data the same way, under its server token.
 *
 * - A hub that becomes leader first **downloads** what etcd holds into its data dir (so a standby
 *   with an empty data dir serves with the group's CA, tokens and keys), starts, then **uploads**
 *   what etcd lacks (the first hub of a group, or files made at first start).
 * - While it leads, every change of `auth.json` and `secrets.key` is queued to etcd behind the
 *   store's own writes, fenced and covered by `sync()` (the API answers a token creation only
 *   once etcd has it).
 * Each hub keeps its own server certificate (its own names), signed by the shared CA.
 *
 * **Large files go in parts.** `auth.json` holds a credential per node: at 10,000 nodes it seals
 * to ≈ 2.3 MB, more than etcd takes in one request (`--max-request-bytes`, 1.5 MiB by default;
 * the fleet bench found every later write stuck behind it). A sealed blob over
 * BOOTSTRAP_PART_BYTES is stored as parts under `<file>.parts/<sha256 prefix>/<n>` and the file's
 * key holds a manifest `{v: 1, parts, sha256}` naming them. A new version's parts go under a new
 * name, before the manifest, and the old parts are deleted after it, all in one store batch (one
 * etcd transaction, or the store's redo log when larger): a reader at any moment finds a manifest
 * whose parts are all there, and checks the SHA-256 of what it joins.
 */

export const BOOTSTRAP_FILES = ['ca.crt', 'ca.key', 'auth.json', 'secrets.key'] as const;
export type BootstrapFile = (typeof BOOTSTRAP_FILES)[number];

const BlobSchema = z.strictObject({ v: z.literal(1), nonce: z.string(), tag: z.string(), data: z.string() });

/** The 32-byte key of a hub group: scrypt of its HA secret, salted with the group's prefix. */
export function bootstrapKey(secret: string, prefix: string): Buffer {
  if (secret.length < 16) throw new OrchardError('ERR_VALIDATION', 'the HA secret must be at least 16 characters (e.g. openssl rand -base64 32)');
  return scryptSync(secret, `orchard-bootstrap:${prefix}`, 32);
}

export function sealBootstrap(key: Buffer, file: string, content: string): string {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.from(file));
  const data = Buffer.concat([c.update(content, 'utf8'), c.final()]);
  return JSON.stringify({ v: 1, nonce: nonce.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64') });
}

export function openBootstrap(key: Buffer, file: string, blob: string): string {
  let parsed: z.infer<typeof BlobSchema>;
  try {
    parsed = BlobSchema.parse(JSON.parse(blob));
  } catch (err) {
    throw new OrchardError('ERR_STORE', `etcd's bootstrap/${file} is not an Orchard bootstrap blob`, { cause: err });
  }
  try {
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(parsed.nonce, 'base64'));
    d.setAAD(Buffer.from(file));
    d.setAuthTag(Buffer.from(parsed.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(parsed.data, 'base64')), d.final()]).toString('utf8');
  } catch (err) {
    throw new OrchardError('ERR_VALIDATION', `cannot decrypt etcd's bootstrap/${file}: this hub's HA secret is not the one its group was made with`, {
      cause: err,
    });
  }
}

const keyOf = (prefix: string, file: string): string => `${prefix}bootstrap/${file}`;

/** A sealed blob larger than this (bytes; the blob is ASCII) is stored in parts. */
export const BOOTSTRAP_PART_BYTES = 512 * 1024;
const ManifestSchema = z.strictObject({ v: z.literal(1), parts: z.number().int().min(1).max(1_000_000), sha256: z.string().regex(/^[0-9a-f]{64}$/) });
type Manifest = z.infer<typeof ManifestSchema>;
const partsPrefix = (prefix: string, file: string, sha256: string): string => `${keyOf(prefix, file)}.parts/${sha256.slice(0, 16)}/`;
const partKey = (prefix: string, file: string, sha256: string, n: number): string => `${partsPrefix(prefix, file, sha256)}${String(n).padStart(6, '0')}`;

/** What etcd holds for a file, as far as a writer must know it to delete old parts: its manifest, if split. */
export type BootstrapShapes = Map<string, Manifest>;
export interface RawWrite {
  key: string;
  /** undefined = delete. */
  value: string | undefined;
}

/**
 * The writes that store `sealed` as `file`, in order: the blob at the file's key when it fits one
 * part; else its parts, then the manifest. The parts of `previous` (the manifest etcd held) go last.
 */
export function bootstrapWrites(
  prefix: string,
  file: string,
  sealed: string,
  previous: Manifest | undefined,
): { writes: RawWrite[]; manifest: Manifest | undefined } {
  const writes: RawWrite[] = [];
  let manifest: Manifest | undefined;
  if (sealed.length <= BOOTSTRAP_PART_BYTES) writes.push({ key: keyOf(prefix, file), value: sealed });
  else {
    const sha256 = createHash('sha256').update(sealed).digest('hex');
    const parts = Math.ceil(sealed.length / BOOTSTRAP_PART_BYTES);
    for (let n = 0; n < parts; n++)
      writes.push({ key: partKey(prefix, file, sha256, n), value: sealed.slice(n * BOOTSTRAP_PART_BYTES, (n + 1) * BOOTSTRAP_PART_BYTES) });
    manifest = { v: 1, parts, sha256 };
    writes.push({ key: keyOf(prefix, file), value: JSON.stringify(manifest) });
  }
  if (previous !== undefined && previous.sha256 !== manifest?.sha256) {
    for (let n = 0; n < previous.parts; n++) writes.push({ key: partKey(prefix, file, previous.sha256, n), value: undefined });
  }
  return { writes, manifest };
}

/** The manifest a split file's key holds, or undefined for a plain sealed blob. */
export function parseManifest(text: string): Manifest | undefined {
  try {
    const m = ManifestSchema.safeParse(JSON.parse(text));
    return m.success ? m.data : undefined;
  } catch {
    return undefined;
  }
}

/** Where `file`'s parts live (all versions): a watcher keeps the keys under it to join them. */
export function bootstrapPartsPrefix(prefix: string, file: string): string {
  return `${keyOf(prefix, file)}.parts/`;
}

/** The sealed blob a manifest names, joined from `parts` (key → value), or undefined when one is missing or the SHA-256 differs. */
export function joinParts(prefix: string, file: string, manifest: Manifest, parts: ReadonlyMap<string, string>): string | undefined {
  let sealed = '';
  for (let n = 0; n < manifest.parts; n++) {
    const p = parts.get(partKey(prefix, file, manifest.sha256, n));
    if (p === undefined) return undefined;
    sealed += p;
  }
  return createHash('sha256').update(sealed).digest('hex') === manifest.sha256 ? sealed : undefined;
}

/** The sealed blob etcd holds for `file` (joined from its parts when split), and its manifest; undefined when absent. */
export async function readSealed(client: EtcdClient, prefix: string, file: string): Promise<{ sealed: string; manifest: Manifest | undefined } | undefined> {
  // A writer replacing the file between our two reads deletes the parts we were about to read:
  // read the manifest again (parts are never rewritten under the same name).
  for (let attempt = 1; ; attempt++) {
    const kv = await client.get(keyOf(prefix, file));
    if (kv === undefined) return undefined;
    const text = kv.value.toString('utf8');
    const manifest = parseManifest(text);
    if (manifest === undefined) return { sealed: text, manifest: undefined };
    const got = await client.range(partsPrefix(prefix, file, manifest.sha256), { prefix: true });
    const sealed = joinParts(prefix, file, manifest, new Map(got.kvs.map((p) => [p.key, p.value.toString('utf8')])));
    if (sealed !== undefined) return { sealed, manifest };
    if (attempt === 3) {
      throw new OrchardError('ERR_STORE', `etcd's bootstrap/${file} names ${manifest.parts} part(s) that are missing or do not match its SHA-256`);
    }
  }
}

/** Writes every identity file etcd holds into `dataDir` (replacing local ones); returns their names. */
export async function downloadIdentity(client: EtcdClient, prefix: string, dataDir: string, key: Buffer, shapes?: BootstrapShapes): Promise<BootstrapFile[]> {
  const got: BootstrapFile[] = [];
  const contents = new Map<BootstrapFile, string>();
  // Decrypt all before writing any: a wrong secret changes nothing on disk.
  for (const f of BOOTSTRAP_FILES) {
    const r = await readSealed(client, prefix, f);
    if (r === undefined) continue;
    contents.set(f, openBootstrap(key, f, r.sealed));
    if (r.manifest !== undefined) shapes?.set(f, r.manifest);
    else shapes?.delete(f);
  }
  for (const [f, content] of contents) {
    const path = join(dataDir, f);
    if (existsSync(path) && readFileSync(path, 'utf8') === content) continue;
    writeFileAtomicSync(path, content, 0o600);
    got.push(f);
  }
  return got;
}

/** Puts every identity file of `dataDir` that etcd lacks (fenced, and only if still absent); returns their names. */
export async function uploadMissingIdentity(
  client: EtcdClient,
  prefix: string,
  dataDir: string,
  key: Buffer,
  fence: () => Compare,
  shapes?: BootstrapShapes,
): Promise<BootstrapFile[]> {
  const put: BootstrapFile[] = [];
  for (const f of BOOTSTRAP_FILES) {
    const path = join(dataDir, f);
    if (!existsSync(path)) continue;
    const k = keyOf(prefix, f);
    if ((await client.get(k)) !== undefined) continue;
    const { writes, manifest } = bootstrapWrites(prefix, f, sealBootstrap(key, f, readFileSync(path, 'utf8')), undefined);
    // Parts first, each its own request (one may be all etcd takes at once); the file's key last,
    // and only if still absent: parts left by a hub that died here are named by no manifest.
    const last = writes.pop()!;
    for (const w of writes) {
      const r = await client.txn([fence()], [{ put: { key: w.key, value: w.value! } }]);
      if (!r.succeeded) throw new OrchardError('ERR_NOT_LEADER', 'this hub lost leadership while uploading its identity');
    }
    const r = await client.txn([fence(), { key: k, target: 'CREATE', createRevision: 0 }], [{ put: { key: k, value: last.value! } }]);
    if (r.succeeded) {
      put.push(f);
      if (manifest !== undefined) shapes?.set(f, manifest);
    }
  }
  return put;
}

/**
 * The hub's `identityMirror`: queues each new content, sealed, behind the store's writes, as one
 * batch (parts, manifest, old parts deleted). `shapes` is what etcd holds (downloadIdentity fills it).
 */
export function identityMirror(
  queue: (writes: RawWrite[]) => void,
  prefix: string,
  key: Buffer,
  shapes: BootstrapShapes = new Map(),
): (file: string, content: string) => void {
  return (file, content) => {
    if (!(BOOTSTRAP_FILES as readonly string[]).includes(file)) return;
    const { writes, manifest } = bootstrapWrites(prefix, file, sealBootstrap(key, file, content), shapes.get(file));
    queue(writes);
    if (manifest !== undefined) shapes.set(file, manifest);
    else shapes.delete(file);
  };
}
