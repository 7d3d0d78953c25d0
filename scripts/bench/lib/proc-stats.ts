import { readFileSync } from 'node:fs';

/**
 * Per-process resource use read from /proc (Linux), so the bench can measure the hub process
 * alone from outside it — even while its event loop is saturated.
 */
export interface ProcStats {
  rssBytes: number;
  /** Peak resident set size (VmHWM) since the process started. */
  peakRssBytes: number;
  /** utime + stime. */
  cpuSeconds: number;
}

/** USER_HZ: 100 on every mainstream Linux build (sysconf(_SC_CLK_TCK)). */
const CLK_TCK = 100;

export function readProcStats(pid: number): ProcStats | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
      return m?.[1] !== undefined ? Number(m[1]) * 1024 : 0;
    };
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name (which may contain spaces): utime is field 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return { rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM'), cpuSeconds: (utime + stime) / CLK_TCK };
  } catch {
    return undefined;
  }
}
