import { promises as fsp } from 'node:fs';
import { pathAllowed } from './host-path.js';

/**
 * Resolves a mount source on the host the way the kernel will when the engine bind-mounts it,
 * but one component at a time with lstat/readlink, so a symbolic link is examined instead of
 * silently followed (issue 13; the class of Kubernetes' CVE-2017-1002101). The result is the
 * canonical path (no links left in it), and it must lie under one of `roots`: the real path of
 * the pod's own volume, or the hostPath allow-list. A link that stays under the roots is fine; one
 * that leaves them (absolute, `..`, a chain, in any component) is an `escape`.
 *
 * Callers hand the canonical path, not the one they asked for, to the engine, and resolve again
 * right before every container start: a component swapped for a link after this check is then
 * seen at the next start. What is left is the moment between the last check and the engine's
 * own mount (docs/security.md, "Volume paths").
 *
 * `create` makes missing directories (emptyDir subPaths, hostPath DirectoryOrCreate), one
 * component at a time and only where the new directory lies under a root: `mkdir -p` through a
 * planted link would create directories anywhere on the host.
 */

export type Resolution =
  | { kind: 'ok'; path: string; directory: boolean }
  /** `path` is where the links lead (outside every root); `link` → `target` is the first link followed. */
  | { kind: 'escape'; path: string; link?: string; target?: string }
  | { kind: 'missing'; path: string }
  /** A loop of links, or a file where a directory is needed. */
  | { kind: 'invalid'; path: string; reason: string };

/** As Linux's MAXSYMLINKS. */
const MAX_LINKS = 40;
/** Bounds re-tries when a created directory keeps vanishing under a racing writer. */
const MAX_CREATES = 64;

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

function pushSegments(stack: string[], path: string): void {
  const segs = path.split('/').filter((s) => s !== '' && s !== '.');
  for (let i = segs.length - 1; i >= 0; i--) stack.push(segs[i] ?? '');
}

/** Resolves absolute `path` without trusting any symbolic link in it; never follows one blindly. */
export async function resolveBeneath(path: string, roots: readonly string[], opts: { create?: boolean } = {}): Promise<Resolution> {
  if (!path.startsWith('/')) return { kind: 'invalid', path, reason: 'not an absolute path' };
  const pending: string[] = [];
  pushSegments(pending, path);
  let cur = '/';
  let directory = true;
  let links = 0;
  let creates = 0;
  let first: { link: string; target: string } | undefined;
  const escape = (where: string): Resolution => ({ kind: 'escape', path: where, ...(first !== undefined ? first : {}) });

  while (pending.length > 0) {
    const seg = pending.pop() ?? '';
    if (!directory) return { kind: 'invalid', path: cur, reason: `${cur} is not a directory` };
    if (seg === '..') {
      // `cur` has no links in it, so its lexical parent is its real parent (what the kernel does).
      cur = parentOf(cur);
      continue;
    }
    const next = cur === '/' ? `/${seg}` : `${cur}/${seg}`;
    let st: Awaited<ReturnType<typeof fsp.lstat>>;
    try {
      st = await fsp.lstat(next);
    } catch (err) {
      if (errCode(err) !== 'ENOENT') throw err;
      if (opts.create === true && pathAllowed(next, roots) && creates < MAX_CREATES) {
        creates++;
        try {
          // Not recursive: the parent is `cur`, checked above; mkdir never follows a link in its last component.
          await fsp.mkdir(next);
        } catch (e) {
          if (errCode(e) !== 'EEXIST') throw e;
        }
        pending.push(seg); // look again: whatever is there now (even a racing link) is examined like the rest
        continue;
      }
      return first !== undefined && !pathAllowed(next, roots) ? escape(next) : { kind: 'missing', path: next };
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) return { kind: 'invalid', path: next, reason: 'too many levels of symbolic links' };
      const target = await fsp.readlink(next);
      first ??= { link: next, target };
      if (target.startsWith('/')) cur = '/';
      pushSegments(pending, target);
      directory = true;
      continue;
    }
    cur = next;
    directory = st.isDirectory();
  }
  if (!pathAllowed(cur, roots)) return escape(cur);
  return { kind: 'ok', path: cur, directory };
}
