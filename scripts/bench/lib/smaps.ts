import { readFileSync } from 'node:fs';

/**
 * A process's memory split the way the kernel accounts it (/proc/PID/smaps_rollup, Linux ≥ 4.14):
 * RSS counts every resident page, shared file pages too (the node binary's code is ≈ 30 MiB of
 * a bare Node's ≈ 40 MiB RSS and is shared by every Node process on the device); PSS divides each
 * shared page among the processes mapping it; anonymous pages (heap, stacks, V8) are the
 * process's own. All in bytes; undefined when the process is gone.
 */
export interface Smaps {
  rss: number;
  pss: number;
  anon: number;
  /** Resident file-backed pages (RSS − anonymous). */
  file: number;
  swap: number;
}

export function parseSmapsRollup(text: string): Smaps {
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m?.[1] !== undefined ? Number(m[1]) * 1024 : 0;
  };
  const rss = kb('Rss');
  const anon = kb('Anonymous');
  return { rss, pss: kb('Pss'), anon, file: rss - anon, swap: kb('Swap') };
}

export function readSmaps(pid: number): Smaps | undefined {
  try {
    return parseSmapsRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  } catch {
    return undefined;
  }
}
