/**
 * The hostPath allow-list rule, shared by the agent (which enforces it) and the hub's scheduler
 * (which applies it from the list a node reports), so both sides always agree.
 * `/srv/data` is under `/srv`; `/srvx` is not; `..` never escapes (paths are normalised first).
 */

/** Absolute path with `.`/`..`/duplicate slashes resolved; undefined for a relative path. */
export function normalizePath(path: string): string | undefined {
  if (!path.startsWith('/')) return undefined;
  const out: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return `/${out.join('/')}`;
}

export function pathAllowed(path: string, allow: readonly string[]): boolean {
  const p = normalizePath(path);
  if (p === undefined) return false;
  return allow.some((a) => {
    const prefix = normalizePath(a);
    return prefix !== undefined && (prefix === '/' || p === prefix || p.startsWith(`${prefix}/`));
  });
}
