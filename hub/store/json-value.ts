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

export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
