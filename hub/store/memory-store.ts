import type { AnyObject } from '../../protocol/objects.js';
import type { StoreOptions } from './store.js';
import { BaseStore } from './base-store.js';

/**
 * The store with no durability: same semantics as SqliteStore (it shares BaseStore), for unit
 * tests and the fleet simulator. Rollback is entirely the base class's undo log.
 */
export class MemoryStore extends BaseStore {
  constructor(opts: StoreOptions = {}) {
    super(opts);
  }

  protected atomically<T>(fn: () => T): T {
    return fn();
  }

  protected persistPut(_obj: AnyObject, _json: string): void {}
  protected persistRemove(_kind: string, _name: string): void {}
  protected persistRevision(_rev: number): void {}
  protected closeBackend(): void {}
}
