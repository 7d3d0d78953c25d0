/**
 * Structural sharing for the store's cache (issue 4: 100k pods must fit a Pi-class hub).
 *
 * Stored objects are deep-frozen, so identical subtrees can be one object: nobody can mutate
 * them. `shareWith(fresh, ref)` rewrites a freshly parsed (unfrozen, private) JSON value so
 * every subtree equal to the subtree at the same path in `ref` (an object already in the
 * cache) IS that subtree, and equal strings are ref's strings. One bottom-up pass, O(size of
 * fresh): a node is replaced by ref's node when all its children came out identical to ref's
 * children and both have the same keys, so no subtree is compared twice.
 *
 * The cache picks `ref`: for an update the previous version (status writes keep the old
 * spec, labels, containers... and the parsed copies become young garbage at once instead of
 * replacing long-lived objects), for a create the last object of the same kind and owner (a
 * sibling replica: same template, so the same containers, labels, tolerations). Reusing
 * what the cache already holds needs no intern pool, so there is no key memory and nothing
 * to bound: a shared subtree lives exactly as long as some stored object uses it.
 *
 * Equality is deepEqual's (hub/hash.ts): key order is not compared (the store already treats a reordered
 * but equal object as unchanged), and JSON values have no undefined, Dates or cycles.
 */
export function shareWith(fresh: unknown, ref: unknown): unknown {
  // Covers equal primitives too: for strings this hands back ref's copy, so fresh's is garbage.
  if (fresh === ref) return ref;
  if (typeof fresh !== 'object' || fresh === null || typeof ref !== 'object' || ref === null) return fresh;
  if (Array.isArray(fresh)) {
    if (!Array.isArray(ref)) return fresh;
    const r = ref as readonly unknown[];
    let same = fresh.length === r.length;
    for (let i = 0; i < fresh.length; i++) {
      const rv = i < r.length ? r[i] : undefined;
      const child = shareWith(fresh[i], rv);
      if (child === rv) fresh[i] = child;
      else same = false;
    }
    return same ? ref : fresh;
  }
  if (Array.isArray(ref)) return fresh;
  const f = fresh as Record<string, unknown>;
  const r = ref as Record<string, unknown>;
  let same = true;
  let keys = 0;
  for (const k in f) {
    keys++;
    const rv = Object.hasOwn(r, k) ? r[k] : undefined;
    const child = shareWith(f[k], rv);
    // An own data property (JSON.parse made it), so this assigns even for "__proto__".
    if (child === rv) f[k] = child;
    else same = false;
  }
  if (!same) return fresh;
  let refKeys = 0;
  for (const k in r) if (Object.hasOwn(r, k)) refKeys++;
  return refKeys === keys ? ref : fresh;
}
