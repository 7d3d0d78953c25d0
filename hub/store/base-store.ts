import { randomUUID } from 'node:crypto';
import { OrchardError } from '../../protocol/errors.js';
import { OBJECT_KINDS, type AnyObject, type ObjectKind, type ObjectOf } from '../../protocol/objects.js';
import type { ListOptions, NewObject, Store, StoreOptions, WatchEvent, WatchListener } from './store.js';
import { ObjectCache } from './object-cache.js';
import { deepEqual } from '../hash.js';
import { deepFreeze } from './json-value.js';
import { WatchDispatcher } from './watch-dispatcher.js';

/** One cache change made inside the open transaction, with what to put back on rollback. */
interface UndoEntry {
  kind: string;
  name: string;
  prev: AnyObject | undefined;
}

/**
 * Store semantics shared by every backend: revisions, CAS, generation, the undo log that rolls
 * the cache back with the backend, and watch delivery after commit. A backend supplies only
 * durability through the hooks below; the cache is the read path, so reads never touch disk.
 *
 * Every write runs inside `transaction()`, so a lone write is simply a one-write transaction.
 * Invariant: outside a transaction the cache equals what the backend has committed.
 */
export abstract class BaseStore implements Store {
  protected readonly cache: ObjectCache;
  private readonly now: () => Date;
  private readonly dispatcher: WatchDispatcher;
  private rev = 0;
  private committedRev = 0;
  private depth = 0;
  private undo: UndoEntry[] = [];
  private pending: WatchEvent[] = [];
  private closed = false;

  protected constructor(opts: StoreOptions = {}) {
    this.now = opts.now ?? (() => new Date());
    this.cache = new ObjectCache(opts.structuralSharing ?? true);
    this.dispatcher = new WatchDispatcher(
      opts.onError ?? ((err, ev) => console.error(`orchard store: watch listener failed on ${ev.type} ${ev.object.kind}/${ev.object.metadata.name}:`, err)),
    );
  }

  // ---- backend hooks ----
  /** Runs fn inside the backend's (possibly nested) atomic unit; throwing must undo its writes. */
  protected abstract atomically<T>(fn: () => T): T;
  protected abstract persistPut(obj: AnyObject, json: string): void;
  protected abstract persistRemove(kind: string, name: string): void;
  /** Called once per outermost transaction, inside it, when the revision moved. */
  protected abstract persistRevision(rev: number): void;
  protected abstract closeBackend(): void;

  /** For backends that load state at open. */
  protected setLoadedRevision(rev: number): void {
    this.rev = rev;
    this.committedRev = rev;
  }

  // ---- reads ----
  get<K extends ObjectKind>(kind: K, name: string): ObjectOf<K> | undefined {
    this.assertOpen();
    return this.cache.get(kind, name) as ObjectOf<K> | undefined;
  }

  list<K extends ObjectKind>(kind: K, opts?: ListOptions): ObjectOf<K>[] {
    this.assertOpen();
    return this.cache.list(kind, opts) as ObjectOf<K>[];
  }

  count(kind: ObjectKind): number {
    this.assertOpen();
    return this.cache.count(kind);
  }

  revision(): number {
    this.assertOpen();
    return this.rev;
  }

  // ---- writes ----
  create<O extends NewObject<ObjectKind>>(obj: O): ObjectOf<O['kind']> {
    this.assertOpen();
    const { kind, name } = identify(obj);
    return this.transaction(() => {
      if (this.cache.get(kind, name) !== undefined) throw new OrchardError('ERR_ALREADY_EXISTS', `${kind} "${name}" already exists`);
      const rv = this.rev + 1;
      const meta: Partial<AnyObject['metadata']> = obj.metadata;
      // Shallow: write() makes the private deep copy, so the caller's object is never touched.
      const draft = {
        ...obj,
        metadata: {
          ...meta,
          uid: typeof meta.uid === 'string' && meta.uid !== '' ? meta.uid : randomUUID(),
          creationTimestamp: meta.creationTimestamp ?? this.now().toISOString(),
          labels: meta.labels ?? {},
          annotations: meta.annotations ?? {},
          resourceVersion: rv,
          generation: 1,
        },
      } as AnyObject;
      return this.write('ADDED', draft) as ObjectOf<O['kind']>;
    });
  }

  update<K extends ObjectKind>(obj: ObjectOf<K>): ObjectOf<K> {
    this.assertOpen();
    const { kind, name } = identify(obj);
    return this.transaction(() => {
      const old = this.cache.get(kind, name);
      if (old === undefined) throw new OrchardError('ERR_NOT_FOUND', `${kind} "${name}" not found`);
      const expected = obj.metadata.resourceVersion;
      if (expected !== old.metadata.resourceVersion) {
        throw new OrchardError(
          'ERR_CONFLICT',
          `${kind} "${name}" was modified: resourceVersion is ${old.metadata.resourceVersion}, update was based on ${String(expected)}`,
          { details: { kind, name, resourceVersion: old.metadata.resourceVersion } },
        );
      }
      // Identity fields are the store's, whatever the caller sent. Shallow, as in create().
      const draft = {
        ...obj,
        metadata: {
          ...obj.metadata,
          uid: old.metadata.uid,
          creationTimestamp: old.metadata.creationTimestamp,
          labels: obj.metadata.labels ?? {},
          annotations: obj.metadata.annotations ?? {},
          resourceVersion: old.metadata.resourceVersion,
          generation: old.metadata.generation,
        },
      } as AnyObject;
      if (deepEqual(draft, old)) return old as ObjectOf<K>;
      // Events have no spec: undefined on both sides, so they never bump generation.
      const specChanged = !deepEqual((draft as { spec?: unknown }).spec, (old as { spec?: unknown }).spec);
      draft.metadata.resourceVersion = this.rev + 1;
      if (specChanged) draft.metadata.generation = old.metadata.generation + 1;
      return this.write('MODIFIED', draft) as ObjectOf<K>;
    });
  }

  delete<K extends ObjectKind>(kind: K, name: string, expectedResourceVersion?: number): ObjectOf<K> | undefined {
    this.assertOpen();
    return this.transaction(() => {
      const old = this.cache.get(kind, name);
      if (old === undefined) return undefined;
      if (expectedResourceVersion !== undefined && expectedResourceVersion !== old.metadata.resourceVersion) {
        throw new OrchardError(
          'ERR_CONFLICT',
          `${kind} "${name}" was modified: resourceVersion is ${old.metadata.resourceVersion}, delete expected ${expectedResourceVersion}`,
          { details: { kind, name, resourceVersion: old.metadata.resourceVersion } },
        );
      }
      const rv = this.rev + 1;
      const gone = deepFreeze({ ...old, metadata: { ...old.metadata, resourceVersion: rv } } as AnyObject);
      this.guard(kind, name, () => this.persistRemove(kind, name));
      this.cache.remove(kind, name);
      this.undo.push({ kind, name, prev: old });
      this.rev = rv;
      this.pending.push(deepFreeze({ type: 'DELETED', object: gone }));
      return gone as ObjectOf<K>;
    });
  }

  pruneEvents(keep: number): number {
    this.assertOpen();
    const excess = this.cache.count('Event') - Math.max(0, Math.floor(keep));
    if (excess <= 0) return 0;
    const oldest = [...this.cache.values('Event')].sort((a, b) => a.metadata.resourceVersion - b.metadata.resourceVersion).slice(0, excess);
    this.transaction(() => {
      for (const ev of oldest) this.delete('Event', ev.metadata.name);
    });
    return oldest.length;
  }

  transaction<T>(fn: () => T): T {
    this.assertOpen();
    const outermost = this.depth === 0;
    const mark = { undo: this.undo.length, pending: this.pending.length, rev: this.rev };
    this.depth++;
    let result: T;
    try {
      result = this.atomically(() => {
        const r = fn();
        if (isThenable(r)) throw new OrchardError('ERR_STORE', 'store transaction functions must be synchronous (got a promise); nothing was written');
        if (outermost && this.rev !== mark.rev) this.guard('meta', 'revision', () => this.persistRevision(this.rev));
        return r;
      });
    } catch (err) {
      this.rollbackTo(mark);
      throw err;
    } finally {
      this.depth--;
    }
    if (!outermost) return result;
    const events = this.pending;
    this.undo = [];
    this.pending = [];
    this.committedRev = this.rev;
    this.dispatcher.publish(events);
    return result;
  }

  watch(listener: WatchListener, kinds?: readonly ObjectKind[]): () => void {
    this.assertOpen();
    return this.dispatcher.subscribe(listener, kinds, this.committedRev);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dispatcher.clear();
    this.cache.clear();
    this.closeBackend();
  }

  protected assertOpen(): void {
    if (this.closed) throw new OrchardError('ERR_STORE', 'the store is closed');
  }

  /** Persists, caches and journals one put of a (shallow) draft. */
  private write(type: 'ADDED' | 'MODIFIED', draft: AnyObject): AnyObject {
    let json: string;
    try {
      json = JSON.stringify(draft);
    } catch (err) {
      throw new OrchardError(
        'ERR_VALIDATION',
        `${draft.kind} "${draft.metadata.name}" is not JSON-serialisable: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    // Parse back: the stored copy shares nothing with the caller and is exactly what a reload
    // gives; admit() then swaps its unchanged/repeated subtrees for ones already cached.
    const stored = this.cache.admit(JSON.parse(json) as AnyObject);
    const kind = stored.kind;
    const name = stored.metadata.name;
    this.guard(kind, name, () => this.persistPut(stored, json));
    const prev = this.cache.put(stored);
    this.undo.push({ kind, name, prev });
    this.rev = stored.metadata.resourceVersion;
    this.pending.push(deepFreeze({ type, object: stored, ...(type === 'MODIFIED' && prev !== undefined ? { old: prev } : {}) }));
    return stored;
  }

  private rollbackTo(mark: { undo: number; pending: number; rev: number }): void {
    for (let i = this.undo.length - 1; i >= mark.undo; i--) {
      const u = this.undo[i] as UndoEntry;
      if (u.prev === undefined) this.cache.remove(u.kind, u.name);
      else this.cache.put(u.prev);
    }
    this.undo.length = mark.undo;
    this.pending.length = mark.pending;
    this.rev = mark.rev;
  }

  /** Backend faults become ERR_STORE naming the object; nothing reached the cache. */
  private guard(kind: string, name: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (OrchardError.is(err)) throw err;
      throw new OrchardError('ERR_STORE', `store write failed for ${kind} "${name}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
}

const KNOWN_KINDS: ReadonlySet<string> = new Set(OBJECT_KINDS);

function identify(obj: { kind?: unknown; metadata?: { name?: unknown } }): { kind: ObjectKind; name: string } {
  const kind = obj?.kind;
  if (typeof kind !== 'string' || !KNOWN_KINDS.has(kind)) {
    throw new OrchardError('ERR_UNKNOWN_KIND', `the store does not hold kind ${JSON.stringify(kind)}`);
  }
  const name = obj.metadata?.name;
  if (typeof name !== 'string' || name === '') {
    throw new OrchardError('ERR_VALIDATION', `${kind}: metadata.name must be a non-empty string`, {
      details: { issues: [{ path: 'metadata.name', message: 'must be a non-empty string' }] },
    });
  }
  return { kind: kind as ObjectKind, name };
}

function isThenable(v: unknown): boolean {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}
