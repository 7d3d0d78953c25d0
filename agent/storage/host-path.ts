/**
 * hostPath allow-list parsing on the agent; the rule itself lives in protocol/host-path.ts so the
 * hub's scheduler applies exactly the same one from the list the node reports.
 */
import { normalizePath, pathAllowed } from '../../protocol/host-path.js';

export { normalizePath, pathAllowed };

/** Parses `--host-path-allow /srv,/data` (absolute paths, normalised). */
export function parseAllowList(text: string): string[] {
  const out: string[] = [];
  for (const raw of text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')) {
    const p = normalizePath(raw);
    if (p === undefined) throw new Error(`--host-path-allow: "${raw}" must be an absolute path`);
    out.push(p);
  }
  return out;
}
