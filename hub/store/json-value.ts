/**
 * Helpers for the plain JSON values the store holds. Stored objects always come from
 * JSON.parse, so there are no Dates, Maps, cycles or undefined fields to worry about.
 */

/** Freezes v and everything reachable from it; returns v. */
export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}

/**
 * Structural equality with JSON's semantics: object key order does not matter and a key whose
 * value is undefined counts as absent (JSON.stringify drops it), so a caller's draft compares
 * equal to the stored object it was cloned from.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  let aKeys = 0;
  for (const k in ao) {
    if (!Object.hasOwn(ao, k) || ao[k] === undefined) continue;
    aKeys++;
    if (!Object.hasOwn(bo, k) || !jsonEqual(ao[k], bo[k])) return false;
  }
  let bKeys = 0;
  for (const k in bo) if (Object.hasOwn(bo, k) && bo[k] !== undefined) bKeys++;
  return aKeys === bKeys;
}

export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
