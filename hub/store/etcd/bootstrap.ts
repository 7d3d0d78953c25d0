import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
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

/** Writes every identity file etcd holds into `dataDir` (replacing local ones); returns their names. */
export async function downloadIdentity(client: EtcdClient, prefix: string, dataDir: string, key: Buffer): Promise<BootstrapFile[]> {
  const got: BootstrapFile[] = [];
  const contents = new Map<BootstrapFile, string>();
  // Decrypt all before writing any: a wrong secret changes nothing on disk.
  for (const f of BOOTSTRAP_FILES) {
    const kv = await client.get(keyOf(prefix, f));
    if (kv !== undefined) contents.set(f, openBootstrap(key, f, kv.value.toString('utf8')));
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
export async function uploadMissingIdentity(client: EtcdClient, prefix: string, dataDir: string, key: Buffer, fence: () => Compare): Promise<BootstrapFile[]> {
  const put: BootstrapFile[] = [];
  for (const f of BOOTSTRAP_FILES) {
    const path = join(dataDir, f);
    if (!existsSync(path)) continue;
    const k = keyOf(prefix, f);
    const r = await client.txn(
      [fence(), { key: k, target: 'CREATE', createRevision: 0 }],
      [{ put: { key: k, value: sealBootstrap(key, f, readFileSync(path, 'utf8')) } }],
    );
    if (r.succeeded) put.push(f);
  }
  return put;
}

/** The hub's `identityMirror`: queues each new content, sealed, behind the store's writes. */
export function identityMirror(queue: (key: string, value: string) => void, prefix: string, key: Buffer): (file: string, content: string) => void {
  return (file, content) => {
    if (!(BOOTSTRAP_FILES as readonly string[]).includes(file)) return;
    queue(keyOf(prefix, file), sealBootstrap(key, file, content));
  };
}
