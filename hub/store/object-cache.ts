import type { AnyObject } from '../../protocol/objects.js';
import type { ListOptions } from './store.js';
import { compareNames, deepFreeze } from './json-value.js';
import { shareWith } from './structural-share.js';

/**
 * The in-memory copy of every stored object plus the secondary indexes that make the hot
 * queries O(result): pods by spec.nodeName and objects by metadata.ownerName (per kind).
 * It holds frozen objects and knows nothing about revisions, persistence or transactions;
 * `put`/`remove` are the only mutators so the indexes cannot drift from the data.
 *
 * `admit` freezes a freshly parsed object for `put`, sharing its unchanged and repeated
 * subtrees with objects already cached (see structural-share.ts): replicas of a Deployment
 * hold one copy of their template, and a status write keeps the old version's spec.
 */
export class ObjectCache {
  private readonly byKind = new Map<string, Map<string, AnyObject>>();
  /** Names per kind in sorted order; built on first list, then maintained incrementally. */
  private readonly sortedNames = new Map<string, string[]>();
  private readonly podsByNode = new Map<string, Set<string>>();
  private readonly byOwner = new Map<string, Map<string, Set<string>>>();
  /**
   * The last object put per kind and per kind+owner: what a created object is shared against.
   * Entries leave with their object (unindex), so this is bounded by the live kinds and owners.
   */
  private readonly lastPut = new Map<string, AnyObject>();

  constructor(private readonly sharing = true) {}

  get(kind: string, name: string): AnyObject | undefined {
    return this.byKind.get(kind)?.get(name);
  }

  count(kind: string): number {
    return this.byKind.get(kind)?.size ?? 0;
  }

  /** Every object of a kind, unordered. */
  values(kind: string): IterableIterator<AnyObject> {
    return (this.byKind.get(kind) ?? new Map<string, AnyObject>()).values();
  }

  /** Every object of every kind, unordered (a standby's copy handed to the new leader's store). */
  all(): AnyObject[] {
    const out: AnyObject[] = [];
    for (const objects of this.byKind.values()) for (const obj of objects.values()) out.push(obj);
    return out;
  }

  list(kind: string, opts: ListOptions = {}): AnyObject[] {
    const objects = this.byKind.get(kind);
    if (objects === undefined) return [];
    let candidates: AnyObject[];
    if (opts.nodeName !== undefined || opts.ownerName !== undefined) {
      // Start from the smaller index, then filter on whatever else was asked.
      const byNode = opts.nodeName === undefined ? undefined : kind === 'Pod' ? (this.podsByNode.get(opts.nodeName) ?? EMPTY) : EMPTY;
      const byOwner = opts.ownerName === undefined ? undefined : (this.byOwner.get(kind)?.get(opts.ownerName) ?? EMPTY);
      const names = byNode === undefined ? byOwner : byOwner === undefined || byNode.size <= byOwner.size ? byNode : byOwner;
      candidates = [];
      for (const name of opts.unordered === true ? (names ?? EMPTY) : [...(names ?? EMPTY)].sort(compareNames)) {
        const obj = objects.get(name);
        if (obj !== undefined) candidates.push(obj);
      }
    } else if (opts.unordered === true) {
      candidates = Array.from(objects.values());
    } else {
      candidates = this.sorted(kind).map((name) => objects.get(name) as AnyObject);
    }
    const sel = opts.labelSelector === undefined ? [] : Object.entries(opts.labelSelector);
    if (sel.length === 0 && (opts.nodeName === undefined || opts.ownerName === undefined)) return candidates;
    return candidates.filter(
      (o) =>
        sel.every(([k, v]) => o.metadata.labels[k] === v) &&
        (opts.nodeName === undefined || nodeNameOf(o) === opts.nodeName) &&
        (opts.ownerName === undefined || o.metadata.ownerName === opts.ownerName),
    );
  }

  /**
   * Deep-freezes `fresh` (a private, unfrozen value, e.g. straight from JSON.parse) and returns
   * the object to put: fresh itself, with every subtree equal to the one at the same path in
   * the object it replaces (same kind/name) or, for a new name, in the last object of the same
   * kind and owner replaced by that (already frozen) subtree. Equal to fresh in JSON terms.
   */
  admit(fresh: AnyObject): AnyObject {
    if (!this.sharing) return deepFreeze(fresh);
    const ref = this.get(fresh.kind, fresh.metadata.name) ?? this.lastPut.get(ownerKey(fresh)) ?? this.lastPut.get(fresh.kind);
    return deepFreeze(ref === undefined ? fresh : (shareWith(fresh, ref) as AnyObject));
  }

  /** How many objects are kept as sharing references (for tests: bounded by live kinds + owners). */
  sharingReferences(): number {
    return this.lastPut.size;
  }

  /** Inserts or replaces; returns the object it replaced. */
  put(obj: AnyObject): AnyObject | undefined {
    let objects = this.byKind.get(obj.kind);
    if (objects === undefined) {
      objects = new Map();
      this.byKind.set(obj.kind, objects);
    }
    const name = obj.metadata.name;
    const prev = objects.get(name);
    objects.set(name, obj);
    if (prev === undefined) {
      const sorted = this.sortedNames.get(obj.kind);
      if (sorted !== undefined) sorted.splice(insertionIndex(sorted, name), 0, name);
    } else {
      this.unindex(prev);
    }
    this.index(obj);
    return prev;
  }

  /** Removes; returns what was there. */
  remove(kind: string, name: string): AnyObject | undefined {
    const objects = this.byKind.get(kind);
    const prev = objects?.get(name);
    if (objects === undefined || prev === undefined) return undefined;
    objects.delete(name);
    this.unindex(prev);
    const sorted = this.sortedNames.get(kind);
    if (sorted !== undefined) {
      const i = insertionIndex(sorted, name);
      if (sorted[i] === name) sorted.splice(i, 1);
    }
    return prev;
  }

  clear(): void {
    this.byKind.clear();
    this.sortedNames.clear();
    this.podsByNode.clear();
    this.byOwner.clear();
    this.lastPut.clear();
  }

  private sorted(kind: string): string[] {
    let sorted = this.sortedNames.get(kind);
    if (sorted === undefined) {
      sorted = [...(this.byKind.get(kind)?.keys() ?? [])].sort(compareNames);
      this.sortedNames.set(kind, sorted);
    }
    return sorted;
  }

  private index(obj: AnyObject): void {
    const name = obj.metadata.name;
    const node = nodeNameOf(obj);
    if (node !== undefined) addTo(this.podsByNode, node, name);
    const owner = obj.metadata.ownerName;
    if (owner !== undefined) {
      let owners = this.byOwner.get(obj.kind);
      if (owners === undefined) {
        owners = new Map();
        this.byOwner.set(obj.kind, owners);
      }
      addTo(owners, owner, name);
    }
    if (this.sharing) {
      this.lastPut.set(obj.kind, obj);
      if (owner !== undefined) this.lastPut.set(ownerKey(obj), obj);
    }
  }

  private unindex(obj: AnyObject): void {
    const name = obj.metadata.name;
    const node = nodeNameOf(obj);
    if (node !== undefined) removeFrom(this.podsByNode, node, name);
    const owner = obj.metadata.ownerName;
    const owners = this.byOwner.get(obj.kind);
    if (owner !== undefined && owners !== undefined) removeFrom(owners, owner, name);
    // Never keep a replaced or removed object alive just as a sharing reference.
    if (this.lastPut.get(obj.kind) === obj) this.lastPut.delete(obj.kind);
    if (owner !== undefined && this.lastPut.get(ownerKey(obj)) === obj) this.lastPut.delete(ownerKey(obj));
  }
}

const EMPTY: ReadonlySet<string> = new Set<string>();

/** lastPut key of an object's kind and owner ("Pod" alone when it has no owner). */
function ownerKey(obj: AnyObject): string {
  const owner = obj.metadata.ownerName;
  return owner === undefined ? obj.kind : `${obj.kind}\u0000${owner}`;
}

function nodeNameOf(obj: AnyObject): string | undefined {
  return obj.kind === 'Pod' ? obj.spec.nodeName : undefined;
}

function addTo(index: Map<string, Set<string>>, key: string, name: string): void {
  let names = index.get(key);
  if (names === undefined) {
    names = new Set();
    index.set(key, names);
  }
  names.add(name);
}

function removeFrom(index: Map<string, Set<string>>, key: string, name: string): void {
  const names = index.get(key);
  if (names === undefined) return;
  names.delete(name);
  if (names.size === 0) index.delete(key);
}

/** First index whose name is >= name (binary search over a sorted array). */
function insertionIndex(sorted: readonly string[], name: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as string) < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
