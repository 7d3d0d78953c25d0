/**
 * Structural sharing for the store's cache (issue 4: 100k pods must fit a Pi-class hub).
 *
 * Stored objects are deep-frozen, so identical subtrees can be one object: nobody can mutate
 * them. `shareWith(fresh, ref, alt?)` rewrites a freshly parsed (unfrozen, private) JSON value so
 * every subtree equal to the subtree at the same path in `ref` (an object already in the
 * cache) IS that subtree, and equal strings are ref's strings. One bottom-up pass, O(size of
 * fresh): a node is replaced by ref's node when all its children came out identical to ref's
 * children and both have the same keys (or likewise for `alt`), so no subtree is compared twice.
 *
 * The cache picks `ref`: for an update the previous version (status writes keep the old
 * spec, labels, containers... and the parsed copies become young garbage at once instead of
 * replacing long-lived objects), for a create the last object of the same kind and owner (a
 * sibling replica: same template, so the same containers, labels, tolerations). For an update
 * the sibling is also `alt`, tried where the previous version differs: a pod's first Running
 * status has no previous conditions or container statuses to share with, but its sibling that
 * just went Running has the same condition types, image and often the same timestamps (40 B of
 * string each, ≈ 400 B a pod at 100,000 pods before this, by heap snapshot). Reusing
 * what the cache already holds needs no intern pool, so there is no key memory and nothing
 * to bound: a shared subtree lives exactly as long as some stored object uses it.
 *
 * Equality is deepEqual's (hub/hash.ts): key order is not compared (the store already treats a reordered
 * but equal object as unchanged), and JSON values have no undefined, Dates or cycles.
 */
export function shareWith(fresh: unknown, ref: unknown, alt?: unknown): unknown {
  // Covers equal primitives too: for strings this hands back ref's (or alt's) copy, so fresh's is garbage.
  if (fresh === ref) return ref;
  if (fresh === alt) return alt;
  if (typeof fresh !== 'object' || fresh === null) return fresh;
  const isArray = Array.isArray(fresh);
  const r = sameShape(ref, isArray);
  const a = sameShape(alt, isArray);
  if (r === undefined && a === undefined) return fresh;
  const f = fresh as Record<string, unknown>;
  const keys = isArray ? (fresh as unknown[]).length : ownKeys(f);
  // A reference whose key count differs can never be the result, so a child equal to both
  // should come from the other one (else a node equal to alt as a whole came out fresh).
  let sameR = r !== undefined && (isArray ? (r as unknown as unknown[]).length : ownKeys(r)) === keys;
  let sameA = a !== undefined && (isArray ? (a as unknown as unknown[]).length : ownKeys(a)) === keys;
  const altFirst = sameA && !sameR;
  // for...in over an array visits its indices as strings, in order (JSON arrays have no holes).
  for (const k in f) {
    const rv = r !== undefined && Object.hasOwn(r, k) ? r[k] : undefined;
    const av = a !== undefined && Object.hasOwn(a, k) ? a[k] : undefined;
    const v = f[k];
    const child = altFirst ? shareWith(v, av, rv) : shareWith(v, rv, av);
    // An own data property (JSON.parse made it), so this assigns even for "__proto__".
    if (child !== v) f[k] = child;
    if (child !== rv) sameR = false;
    if (child !== av) sameA = false;
  }
  if (sameR) return r;
  if (sameA) return a;
  return fresh;
}

/** `v` as a record when it is the same kind of container (array or plain object) as the fresh value. */
function sameShape(v: unknown, isArray: boolean): Record<string, unknown> | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v) !== isArray) return undefined;
  return v as Record<string, unknown>;
}

function ownKeys(o: Record<string, unknown>): number {
  let n = 0;
  for (const k in o) if (Object.hasOwn(o, k)) n++;
  return n;
}
