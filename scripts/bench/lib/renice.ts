import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * Sets the nice value of every thread of `pid` (Linux: setpriority(2) on a pid reaches only the
 * thread with that id, so each task in /proc/PID/task is set). Raising it needs no privilege;
 * lowering it back needs root (CAP_SYS_NICE), as the benches run. Returns the threads set.
 */
export function reniceProcess(pid: number, nice: number): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      setPriority(Number(tid), nice);
      n++;
    } catch {
      // A thread that ended meanwhile.
    }
  }
  return n;
}
