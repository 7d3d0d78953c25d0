import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { resolve } from 'node:path';

/**
 * Secrets on a device live only in memory: the agent writes secret files under a directory on
 * tmpfs and bind-mounts them read-only into containers, so they never touch the SD card. On
 * Debian /run is tmpfs; elsewhere (or in a container) the agent mounts a small tmpfs itself when
 * it runs as root, and otherwise refuses to write secrets there at all.
 */

export interface MountEntry {
  target: string;
  fstype: string;
}

const MEMORY_FS = new Set(['tmpfs', 'ramfs']);

/** Parses /proc/mounts (octal escapes like \040 for a space in a path). */
export function parseMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 3 || f[1] === undefined || f[2] === undefined) continue;
    out.push({ target: f[1].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8))), fstype: f[2] });
  }
  return out;
}

/** The mount `path` lives on: the longest (last, when mounted over) mount target that is a prefix. */
export function mountOf(path: string, mounts: readonly MountEntry[]): MountEntry | undefined {
  const p = resolve(path);
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const t = m.target;
    const under = t === '/' || p === t || p.startsWith(`${t}/`);
    if (under && (best === undefined || t.length >= best.target.length)) best = m;
  }
  return best;
}

export function onMemoryFs(path: string, mounts: readonly MountEntry[]): boolean {
  const m = mountOf(path, mounts);
  return m !== undefined && MEMORY_FS.has(m.fstype);
}

export async function readMounts(file = '/proc/mounts'): Promise<MountEntry[]> {
  try {
    return parseMounts(await fsp.readFile(file, 'utf8'));
  } catch {
    return [];
  }
}

export interface TmpfsResult {
  ok: boolean;
  /** True when this call mounted a tmpfs at `dir`. */
  mounted: boolean;
  /** Why not, when !ok. */
  reason?: string;
}

/**
 * Makes `dir` (0700) and ensures it is on tmpfs: already (e.g. under /run), or by mounting one
 * there when allowed and root. Never throws; the result says why secrets cannot be stored.
 */
export async function ensureTmpfsDir(dir: string, opts: { mount: boolean; sizeBytes?: number; mountsFile?: string }): Promise<TmpfsResult> {
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    return { ok: false, mounted: false, reason: `cannot create ${dir}: ${(err as Error).message}` };
  }
  const before = mountOf(dir, await readMounts(opts.mountsFile));
  if (before !== undefined && MEMORY_FS.has(before.fstype)) return { ok: true, mounted: false };
  const fstype = before?.fstype ?? 'unknown';
  if (!opts.mount) return { ok: false, mounted: false, reason: `${dir} is on ${fstype}, not tmpfs` };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return {
      ok: false,
      mounted: false,
      reason: `${dir} is on ${fstype}, not tmpfs, and the agent is not root so cannot mount one (use --secrets-dir on a tmpfs such as /run or /dev/shm)`,
    };
  }
  const size = Math.max(1, Math.ceil((opts.sizeBytes ?? 32 * 1024 * 1024) / 1024));
  const err = await new Promise<Error | null>((res) =>
    execFile('mount', ['-t', 'tmpfs', '-o', `size=${size}k,mode=0700,nosuid,nodev,noexec`, 'tmpfs', dir], { timeout: 10_000 }, (e) => res(e)),
  );
  if (err !== null)
    return { ok: false, mounted: false, reason: `${dir} is on ${fstype}, not tmpfs, and mounting a tmpfs failed: ${err.message.split('\n')[0] ?? ''}` };
  const after = mountOf(dir, await readMounts(opts.mountsFile));
  if (after === undefined || !MEMORY_FS.has(after.fstype))
    return { ok: false, mounted: false, reason: `mounted a tmpfs at ${dir} but it does not show in /proc/mounts` };
  return { ok: true, mounted: true };
}
