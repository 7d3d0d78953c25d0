import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { OrchardError } from '../protocol/errors.js';
import { ADMIN_TOKEN_FILE, AUTH_FILE } from './security/auth-store.js';
import { writeFileAtomicSync } from './security/atomic-file.js';
import { PKI_FILES } from './security/pki.js';
import { SECRETS_KEY_FILE } from './secrets/keyring.js';
import type { EtcdClient } from './store/etcd/etcd-client.js';
import { markBackup, unmarkBackup } from './store/etcd/epoch-base.js';
import { DB_FILE } from './store/sqlite-store.js';

/**
 * `orchard hub backup` / `restore` (issue 19): everything a new machine needs to be this hub.
 *
 * A backup is a directory (tar it to move it): the hub's identity files from its data dir (CA and
 * its key, server certificate, `auth.json` with every token and node credential, the admin token,
 * the secrets encryption key), the objects — `orchard.db` made by SQLite's `VACUUM INTO` (a
 * consistent copy taken while the hub runs), or `etcd.snapshot` (etcd's own snapshot of the
 * whole keyspace, restored with `etcdctl snapshot restore`, holding a marker that makes the
 * restored group's next leader raise its epoch) — and `backup.json` with the SHA-256 of each file,
 * checked before a restore writes anything.
 *
 * The identity files are secrets (the CA key signs node certificates, `secrets.key` decrypts
 * every Secret): the directory is created 0700 and its files 0600.
 */

export const BACKUP_MANIFEST = 'backup.json';
export const ETCD_SNAPSHOT_FILE = 'etcd.snapshot';
const IDENTITY_FILES = [PKI_FILES.caCert, PKI_FILES.caKey, PKI_FILES.cert, PKI_FILES.key, AUTH_FILE, ADMIN_TOKEN_FILE, SECRETS_KEY_FILE] as const;

const ManifestSchema = z.strictObject({
  format: z.literal('orchard-hub-backup/1'),
  createdAt: z.iso.datetime(),
  store: z.enum(['sqlite', 'etcd']),
  etcdPrefix: z.string().optional(),
  files: z.record(z.string().regex(/^[A-Za-z0-9._-]+$/), z.string().regex(/^[0-9a-f]{64}$/)),
});
export type BackupManifest = z.infer<typeof ManifestSchema>;

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

export interface BackupOptions {
  dataDir: string;
  out: string;
  /** etcd: the client and prefix of the hub group; absent = SQLite in dataDir. */
  etcd?: { client: EtcdClient; prefix: string };
  now?: () => Date;
}

/** Writes a backup directory; refuses an existing `out`. Returns the manifest. */
export async function backupHub(opts: BackupOptions): Promise<BackupManifest> {
  if (existsSync(opts.out)) throw new OrchardError('ERR_ALREADY_EXISTS', `${opts.out} already exists; give a new directory`);
  if (!existsSync(join(opts.dataDir, PKI_FILES.caCert)) && !existsSync(join(opts.dataDir, AUTH_FILE))) {
    throw new OrchardError('ERR_NOT_FOUND', `${opts.dataDir} holds no hub (no ${PKI_FILES.caCert} or ${AUTH_FILE})`);
  }
  const tmp = `${opts.out}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  try {
    const files: Record<string, string> = {};
    for (const f of IDENTITY_FILES) {
      const src = join(opts.dataDir, f);
      if (!existsSync(src)) continue;
      writeFileAtomicSync(join(tmp, f), readFileSync(src), 0o600);
    }
    if (opts.etcd) {
      const target = join(tmp, ETCD_SNAPSHOT_FILE);
      // The snapshot carries a marker, so the leader of a cluster restored from it raises epochs
      // above everything agents saw (store/etcd/epoch-base.ts).
      const marker = await markBackup(opts.etcd.client, opts.etcd.prefix, (opts.now ?? (() => new Date()))());
      try {
        const ws = createWriteStream(target, { mode: 0o600 });
        try {
          await opts.etcd.client.snapshot((chunk) => ws.write(chunk));
        } finally {
          await new Promise<void>((resolve, reject) => ws.end((err?: Error | null) => (err ? reject(err) : resolve())));
        }
        if (statSync(target).size === 0) throw new OrchardError('ERR_STORE', 'etcd sent an empty snapshot');
      } catch (err) {
        // No snapshot: a marker left behind would make the next leader raise its epoch for nothing.
        await opts.etcd.client.delete(marker).catch(() => undefined);
        throw err;
      }
      await unmarkBackup(opts.etcd.client, marker);
    } else {
      const db = join(opts.dataDir, DB_FILE);
      if (!existsSync(db)) throw new OrchardError('ERR_NOT_FOUND', `${db} does not exist (is this hub on etcd? pass --store)`);
      // A second connection, read-only: VACUUM INTO takes a consistent copy while the hub writes (WAL).
      const conn = new Database(db, { readonly: true, fileMustExist: true });
      try {
        conn.pragma('busy_timeout = 10000');
        conn.prepare('VACUUM INTO ?').run(join(tmp, DB_FILE));
      } finally {
        conn.close();
      }
    }
    for (const f of [...IDENTITY_FILES, DB_FILE, ETCD_SNAPSHOT_FILE]) if (existsSync(join(tmp, f))) files[f] = sha256(join(tmp, f));
    const manifest: BackupManifest = {
      format: 'orchard-hub-backup/1',
      createdAt: (opts.now ?? (() => new Date()))().toISOString(),
      store: opts.etcd ? 'etcd' : 'sqlite',
      ...(opts.etcd ? { etcdPrefix: opts.etcd.prefix } : {}),
      files,
    };
    writeFileAtomicSync(join(tmp, BACKUP_MANIFEST), JSON.stringify(manifest, null, 2) + '\n', 0o600);
    renameSync(tmp, opts.out);
    return manifest;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (OrchardError.is(err)) throw err;
    throw new OrchardError('ERR_STORE', `backup failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** Reads and checks a backup directory: the manifest parses and every file matches its hash. */
export function verifyBackup(from: string): BackupManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(join(from, BACKUP_MANIFEST), 'utf8'));
  } catch (err) {
    throw new OrchardError('ERR_VALIDATION', `${from} is not an Orchard hub backup (no readable ${BACKUP_MANIFEST})`, { cause: err });
  }
  const r = ManifestSchema.safeParse(raw);
  if (!r.success)
    throw new OrchardError('ERR_VALIDATION', `${join(from, BACKUP_MANIFEST)}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const m = r.data;
  for (const [f, hash] of Object.entries(m.files)) {
    const p = join(from, f);
    if (!existsSync(p)) throw new OrchardError('ERR_VALIDATION', `backup file ${f} is missing`);
    if (sha256(p) !== hash) throw new OrchardError('ERR_VALIDATION', `backup file ${f} does not match its SHA-256 in ${BACKUP_MANIFEST} (damaged or altered)`);
  }
  const objects = m.store === 'sqlite' ? DB_FILE : ETCD_SNAPSHOT_FILE;
  if (!(objects in m.files)) throw new OrchardError('ERR_VALIDATION', `a ${m.store} backup must hold ${objects}`);
  return m;
}

/**
 * Restores a backup into `dataDir` (the hub must be stopped). Checks everything first, then
 * writes each file atomically; refuses a data dir that already holds a hub unless `force`.
 * For an etcd backup only the identity files are written here: the snapshot is restored into
 * etcd's members with `etcdctl snapshot restore` (returned as `etcdSnapshot`).
 */
export function restoreHub(opts: { from: string; dataDir: string; force?: boolean }): { manifest: BackupManifest; restored: string[]; etcdSnapshot?: string } {
  const manifest = verifyBackup(opts.from);
  const occupied = [DB_FILE, AUTH_FILE, PKI_FILES.caKey].filter((f) => existsSync(join(opts.dataDir, f)));
  if (occupied.length > 0 && !opts.force) {
    throw new OrchardError('ERR_ALREADY_EXISTS', `${opts.dataDir} already holds a hub (${occupied.join(', ')}); stop that hub and pass --force to replace it`);
  }
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const restored: string[] = [];
  for (const f of Object.keys(manifest.files)) {
    if (f === ETCD_SNAPSHOT_FILE) continue;
    if (f === DB_FILE) for (const side of ['-wal', '-shm']) rmSync(join(opts.dataDir, DB_FILE + side), { force: true });
    writeFileAtomicSync(join(opts.dataDir, f), readFileSync(join(opts.from, f)), 0o600);
    restored.push(f);
  }
  return { manifest, restored, ...(manifest.store === 'etcd' ? { etcdSnapshot: join(opts.from, ETCD_SNAPSHOT_FILE) } : {}) };
}
