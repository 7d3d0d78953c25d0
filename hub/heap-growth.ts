import v8 from 'node:v8';

/**
 * How much V8 may grow the hub's heap past what survived the last full GC, in percent.
 *
 * V8 picks this factor itself from GC and mutator speed, up to 4× on a machine with plenty of
 * memory. In the fleet bench (10,000 nodes, 100,000 pods) that made the peak depend on luck: the
 * same code peaked at 950–1,006 MiB in ten runs and at 1,055 MiB in one, where the committed heap
 * jumped from ≈ 510 to 613 MiB over ≈ 330 MiB live. Capped at 40 %, the committed heap follows
 * the live set (895 MiB peak, 455 MiB heap) at no CPU cost visible next to the run-to-run
 * variation (96.7 s of hub CPU against 93–109 s). docs/benchmarks-fleet.md has the runs.
 * 15 % was tried in an earlier round: +61 % hub CPU.
 */
export const DEFAULT_HEAP_GROWING_PERCENT = 40;

/**
 * Sets V8's heap growing factor for this process (`--heap-growing-percent`); 0 leaves V8's own
 * heuristic. V8 reads it at every GC, so setting it after start works (checked by
 * heap-growth.test.ts in a child process). Process-wide: call it from a process entry point
 * (`orchard hub`, the fleet bench's hub), not from a library that may share its process.
 */
export function applyHeapGrowth(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0 || percent > 1000) throw new RangeError(`heap growing percent must be a whole number 0–1000 (got ${percent})`);
  if (percent > 0) v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}
