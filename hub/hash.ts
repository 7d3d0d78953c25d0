import { createHash } from 'node:crypto';

/** JSON with object keys sorted, so equal values always serialise (and hash) the same. */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
}

export function shortHash(value: unknown, length = 10): string {
  return createHash('sha256').update(stableStringify(value)).digest('hex').slice(0, length);
}

/**
 * Equal as JSON: `stableStringify(a) === stableStringify(b)`, compared structurally without
 * building the strings (controllers compare every reported pod status, so this runs ~10⁵×/s at
 * fleet scale). Object keys holding undefined are absent; undefined elsewhere, NaN and ±Infinity
 * read as null, as JSON.stringify writes them.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const na = asJsonScalar(a);
  const nb = asJsonScalar(b);
  if (na !== OBJECT || nb !== OBJECT) return na === nb;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  let aKeys = 0;
  for (const k of Object.keys(ao)) {
    if (ao[k] === undefined) continue;
    aKeys++;
    if (!Object.hasOwn(bo, k) || bo[k] === undefined || !deepEqual(ao[k], bo[k])) return false;
  }
  let bKeys = 0;
  for (const k of Object.keys(bo)) if (bo[k] !== undefined) bKeys++;
  return aKeys === bKeys;
}

const OBJECT = Symbol('object');

/** A scalar as JSON would write it (null for undefined/NaN/±Infinity), or OBJECT. */
function asJsonScalar(v: unknown): unknown {
  if (typeof v === 'object' && v !== null) return OBJECT;
  if (v === undefined || (typeof v === 'number' && !Number.isFinite(v))) return null;
  return v;
}
