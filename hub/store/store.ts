import type { AnyObject, ObjectKind, ObjectOf } from '../../protocol/objects.js';

/**
 * The hub's object store: the one place desired and observed state lives (etcd's role in
 * Kubernetes). Every write gets the next store-wide revision as its `metadata.resourceVersion`,
 * which is both the compare-and-set key and the watch resume point.
 *
 * Objects handed out are deep-frozen snapshots shared with the store's cache: callers
 * `structuredClone` before modifying. The store is synchronous and single-process: a write
 * that returns has been committed (and, for SQLite, fsynced).
 */

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';
export interface WatchEvent {
  type: WatchEventType;
  /** For DELETED: the last stored state, with the resourceVersion of the delete. */
  object: AnyObject;
  /**
   * For MODIFIED: the state this write replaced, so a listener can skip changes it does not
   * care about (e.g. status-only pod writes) without keeping its own copy of every object.
   */
  old?: AnyObject;
}
export type WatchListener = (ev: WatchEvent) => void;

type ServerSetMeta = 'uid' | 'resourceVersion' | 'generation' | 'creationTimestamp';
type NewObjectByKind = {
  [P in ObjectKind]: Omit<ObjectOf<P>, 'metadata'> & {
    metadata: Omit<ObjectOf<P>['metadata'], ServerSetMeta> & Partial<Pick<ObjectOf<P>['metadata'], 'uid' | 'creationTimestamp'>>;
  };
};
/**
 * An object to create: metadata.uid/resourceVersion/generation/creationTimestamp are set by the
 * store. An indexed access (not a plain Omit) so a union of kinds stays a discriminated union:
 * Omit over a union would keep only the shared keys and reject `spec`.
 */
export type NewObject<K extends ObjectKind> = NewObjectByKind[K];

export interface ListOptions {
  /** Equality match on every given label; `{}` matches everything. */
  labelSelector?: Record<string, string>;
  ownerName?: string;
  /** Pods only: `spec.nodeName`. Served from an index, so it costs O(result). */
  nodeName?: string;
  /**
   * The caller does not need name order: without nodeName/ownerName the objects come in the cache's
   * own order (a copy of its map, no lookup per name); with them, in the index's order (no sort). A scrape of 100,000 pods spent ≈ 40–65 ms
   * looking each sorted name up in the hub's large heap (docs/benchmarks.md, 2026-12-05).
   */
  unordered?: boolean;
}

export interface StoreOptions {
  /** Clock for creationTimestamp; injectable for tests. */
  now?: () => Date;
  /** Receives what a throwing watch listener threw; the write and other listeners carry on. */
  onError?: (err: unknown, ev: WatchEvent) => void;
  /**
   * Share equal subtrees between cached objects (a pod's unchanged spec with its previous
   * version, a Deployment's replicas' template with each other). Default true; false only to
   * measure what it saves (scripts/bench/store-memory.ts).
   */
  structuralSharing?: boolean;
}

/** How long a write's answer (API, MQTT command) waits for a remote store to confirm it (etcd: a quorum's fsync). */
export const WRITE_BARRIER_MS = 10_000;

export interface Store {
  get<K extends ObjectKind>(kind: K, name: string): ObjectOf<K> | undefined;
  /** Sorted by name (code-unit order), unless `opts.unordered`. */
  list<K extends ObjectKind>(kind: K, opts?: ListOptions): ObjectOf<K>[];
  count(kind: ObjectKind): number;
  /** ERR_ALREADY_EXISTS when kind/name is taken. generation starts at 1. */
  create<O extends NewObject<ObjectKind>>(obj: O): ObjectOf<O['kind']>;
  /**
   * Compare-and-set on obj.metadata.resourceVersion (ERR_CONFLICT on mismatch, ERR_NOT_FOUND if
   * gone). Bumps metadata.generation when `spec` changed (deep-equal), never on status-only
   * writes. uid and creationTimestamp always stay as stored. An update that changes nothing
   * writes nothing, emits no event and returns the stored object (same resourceVersion) — so
   * level-triggered controllers rewriting the same status do not wear the disk.
   */
  update<K extends ObjectKind>(obj: ObjectOf<K>): ObjectOf<K>;
  /**
   * Deletes; with expectedResourceVersion does CAS (ERR_CONFLICT on mismatch). Returns the
   * deleted object (carrying the delete's resourceVersion) or undefined when there was none.
   */
  delete<K extends ObjectKind>(kind: K, name: string, expectedResourceVersion?: number): ObjectOf<K> | undefined;
  /**
   * Runs fn atomically: every write inside commits together or none does (fn throws → rollback,
   * and no watch events are emitted). Reads inside fn see fn's own writes. fn must be
   * synchronous (a returned promise is rolled back with ERR_STORE). Nested calls join the outer
   * transaction: their writes commit with it; a nested fn that throws undoes only its own writes
   * (a savepoint) before the error reaches the outer fn.
   */
  transaction<T>(fn: () => T): T;
  /**
   * Listener is called synchronously after each commit, once per write, in commit order
   * (an object written twice in one transaction yields two events). Only writes committed after
   * subscribing are delivered. Writes made by a listener are delivered after the current batch,
   * so every listener sees one global order. A listener that throws does not break the store or
   * other listeners (reported via StoreOptions.onError).
   */
  watch(listener: WatchListener, kinds?: readonly ObjectKind[]): () => void;
  /** The store-wide revision (highest resourceVersion ever assigned); survives restarts. */
  revision(): number;
  /** Deletes the oldest Event objects (lowest resourceVersion) beyond `keep`; returns how many. */
  pruneEvents?(keep: number): number;
  /**
   * The durability barrier of a remote backend (etcd): resolves when every write committed before
   * the call is durable; rejects with ERR_TIMEOUT after `timeoutMs`, or ERR_NOT_LEADER once this
   * hub's writes are fenced off. Absent when every committed write is already durable (SQLite).
   * The web API and MQTT commands await it before they report a write as done.
   */
  sync?(timeoutMs?: number, upTo?: number): Promise<void>;
  /**
   * With `sync`: the position of the last committed write. `sync(t, mark)` waits for the writes up
   * to that mark only, not for those committed after it.
   */
  writeMark?(): number;
  /** Idempotent; any later call throws ERR_STORE. */
  close(): void;
}
