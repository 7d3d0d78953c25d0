import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { OrchardError } from '../../protocol/errors.js';
import type { AnyObject } from '../../protocol/objects.js';
import type { StoreOptions } from './store.js';
import { BaseStore } from './base-store.js';

export interface SqliteStoreOptions extends StoreOptions {
  /** How long a write waits for a lock held by another connection (e.g. a backup). Default 5000. */
  busyTimeoutMs?: number;
}

export const DB_FILE = 'orchard.db';

/**
 * The embedded default store: SQLite in WAL mode with synchronous=FULL, so a write that returned
 * survives power loss (a Pi's usual way to stop). All objects are loaded into BaseStore's cache
 * at open and the cache is write-through: reads never touch disk. Each store transaction is one
 * SQLite transaction (nested ones are savepoints), and the revision is written to `meta` in the
 * same transaction so it survives restarts even when its object was deleted.
 */
export class SqliteStore extends BaseStore {
  private readonly db: Database.Database;
  private readonly stmts: {
    put: Database.Statement<[string, string, number, string]>;
    remove: Database.Statement<[string, string]>;
    setRevision: Database.Statement<[number]>;
  };
  private readonly txn: (fn: () => unknown) => unknown;

  private constructor(db: Database.Database, opts: SqliteStoreOptions) {
    super(opts);
    this.db = db;
    this.stmts = {
      put: db.prepare(
        'INSERT INTO objects (kind, name, rv, json) VALUES (?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET rv = excluded.rv, json = excluded.json',
      ),
      remove: db.prepare('DELETE FROM objects WHERE kind = ? AND name = ?'),
      setRevision: db.prepare("INSERT INTO meta (key, value) VALUES ('revision', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
    };
    // IMMEDIATE takes the write lock up front so a concurrent reader cannot make the commit fail midway.
    this.txn = db.transaction((fn: () => unknown) => fn()).immediate;
    this.load();
  }

  /** Opens (creating if needed) `<dataDir>/orchard.db`. Throws ERR_STORE if it cannot. */
  static open(dataDir: string, opts: SqliteStoreOptions = {}): SqliteStore {
    let db: Database.Database | undefined;
    try {
      fs.mkdirSync(dataDir, { recursive: true });
      db = new Database(path.join(dataDir, DB_FILE));
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') throw new Error(`journal_mode is ${String(mode)}; this filesystem does not support WAL`);
      db.pragma('synchronous = FULL');
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
      db.exec(`
        CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, name TEXT NOT NULL, rv INTEGER NOT NULL, json TEXT NOT NULL, PRIMARY KEY (kind, name));
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      `);
      return new SqliteStore(db, opts);
    } catch (err) {
      db?.close();
      if (OrchardError.is(err)) throw err;
      throw new OrchardError('ERR_STORE', `cannot open store in ${dataDir}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /** The SQLite file's path, for diagnostics and backups. */
  get filename(): string {
    return this.db.name;
  }

  protected atomically<T>(fn: () => T): T {
    try {
      return this.txn(fn) as T;
    } catch (err) {
      if (OrchardError.is(err) || !(err instanceof Database.SqliteError)) throw err;
      // COMMIT/SAVEPOINT faults (disk full, I/O error) — the cache is rolled back by the caller.
      throw new OrchardError('ERR_STORE', `store commit failed: ${err.message}`, { cause: err });
    }
  }

  protected persistPut(obj: AnyObject, json: string): void {
    this.stmts.put.run(obj.kind, obj.metadata.name, obj.metadata.resourceVersion, json);
  }

  protected persistRemove(kind: string, name: string): void {
    this.stmts.remove.run(kind, name);
  }

  protected persistRevision(rev: number): void {
    this.stmts.setRevision.run(rev);
  }

  protected closeBackend(): void {
    if (this.db.open) this.db.close();
  }

  private load(): void {
    let maxRv = 0;
    const rows = this.db.prepare('SELECT kind, name, rv, json FROM objects ORDER BY kind, name').iterate() as IterableIterator<{
      kind: string;
      name: string;
      rv: number;
      json: string;
    }>;
    for (const row of rows) {
      let obj: AnyObject;
      try {
        obj = JSON.parse(row.json) as AnyObject;
      } catch (err) {
        throw new OrchardError('ERR_STORE', `stored ${row.kind} "${row.name}" is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, {
          cause: err,
        });
      }
      if (obj?.kind !== row.kind || obj.metadata?.name !== row.name) {
        throw new OrchardError('ERR_STORE', `stored ${row.kind} "${row.name}" holds an object named ${String(obj?.kind)}/${String(obj?.metadata?.name)}`);
      }
      // Rows come ordered by name, so a Deployment's replicas arrive together and share.
      this.cache.put(this.cache.admit(obj));
      if (row.rv > maxRv) maxRv = row.rv;
    }
    const meta = this.db.prepare("SELECT value FROM meta WHERE key = 'revision'").get() as { value: number } | undefined;
    // max() guards against a meta row older than the objects (it is written in the same transaction, so this is belt and braces).
    this.setLoadedRevision(Math.max(meta?.value ?? 0, maxRv));
  }
}
