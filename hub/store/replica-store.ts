import { OrchardError } from '../../protocol/errors.js';
import type { AnyObject } from '../../protocol/objects.js';
import { BaseStore } from './base-store.js';
import type { StoreOptions } from './store.js';

/**
 * A read-only copy of another process's store: the same reads (get, list with its indexes,
 * count, revision) as the store it copies, because it is the same BaseStore cache, but every
 * write through the Store interface is refused with ERR_NOT_LEADER — a standby hub
 * (hub/ha/store-mirror.ts) serves reads from it and must never make a write of its own.
 *
 * The copy changes only through `reset`, `putObject`, `removeObject` and `setRevision`, which
 * the mirror calls with what etcd holds (already committed elsewhere): no revision check, no
 * generation bump, no watch event. Each call is synchronous, so a reader between two calls sees
 * one or the other, never half of one; the mirror applies one etcd transaction per event-loop
 * turn.
 */
export class ReplicaStore extends BaseStore {
  constructor(opts: StoreOptions = {}) {
    super(opts);
  }

  /** Replaces the whole copy (a full load from etcd). */
  reset(objects: readonly AnyObject[], revision: number): void {
    this.assertOpen();
    this.cache.clear();
    for (const obj of objects) this.cache.put(this.cache.admit(obj));
    this.setLoadedRevision(revision);
  }

  /** `obj` must be private to this store (freshly parsed): it is frozen and kept. */
  putObject(obj: AnyObject): void {
    this.assertOpen();
    this.cache.put(this.cache.admit(obj));
  }

  removeObject(kind: string, name: string): void {
    this.assertOpen();
    this.cache.remove(kind, name);
  }

  /**
   * Every object of the copy, whatever its kind, unordered: the frozen objects themselves (shared,
   * never copied), for a store taking the copy over (EtcdStore.open with a snapshot).
   */
  objects(): AnyObject[] {
    this.assertOpen();
    return this.cache.all();
  }

  setRevision(revision: number): void {
    this.assertOpen();
    this.setLoadedRevision(revision);
  }

  // ---- the Store's own writes: refused ----
  protected atomically<T>(_fn: () => T): T {
    throw readOnly();
  }
  protected persistPut(_obj: AnyObject, _json: string): void {
    throw readOnly();
  }
  protected persistRemove(_kind: string, _name: string): void {
    throw readOnly();
  }
  protected persistRevision(_rev: number): void {
    throw readOnly();
  }
  protected closeBackend(): void {}
}

function readOnly(): OrchardError {
  return new OrchardError('ERR_NOT_LEADER', 'this copy of the store is read-only (a standby hub): writes go to the leader');
}
