/**
 * Pure helpers for the service data-path bench (scripts/bench/services.ts): percentiles, the
 * "median (min–max)" cell of repeated runs, markdown tables and the target verdicts.
 */

/** Nearest-rank percentile (q in 0..1) of unsorted samples; 0 for none. */
export function percentile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil(q * s.length) - 1;
  return s[Math.min(s.length - 1, Math.max(0, rank))] ?? 0;
}

/** Repeated runs of one measurement, or why there are none (a path that could not be set up). */
export type Runs = number[] | { failed: string };

export const failed = (r: Runs): r is { failed: string } => !Array.isArray(r);

/** "median (min–max)" of the runs, the median alone for one run, or "n/a: reason". */
export function cell(r: Runs, digits = 0): string {
  if (failed(r)) return `n/a: ${r.failed}`;
  if (r.length === 0) return '—';
  const f = (x: number): string => x.toFixed(digits);
  const med = percentile(r, 0.5);
  return r.length === 1 ? f(med) : `${f(med)} (${f(Math.min(...r))}–${f(Math.max(...r))})`;
}

export function markdownTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`;
  return [line(head), `|${head.map(() => '---').join('|')}|`, ...rows.map(line)].join('\n');
}

export interface PathResult {
  bulk: Runs;
  p50: Runs;
  p99: Runs;
  conns: Runs;
}

export interface Verdict {
  target: string;
  measured: string;
  met: boolean | undefined;
}

/**
 * The three data-path targets for one proxied path against direct, per run pair (runs
 * are interleaved, so run i of both paths saw the same machine load); the median pair decides,
 * the cell shows the spread.
 */
export function verdicts(direct: PathResult, proxied: PathResult): Verdict[] {
  const pairs = (a: Runs, b: Runs, f: (x: number, y: number) => number): number[] | undefined =>
    failed(a) || failed(b) || a.length === 0 || a.length !== b.length ? undefined : a.map((x, i) => f(x, b[i] ?? 0));
  const ratio = pairs(proxied.bulk, direct.bulk, (p, d) => (p / d) * 100);
  const added = pairs(proxied.p50, direct.p50, (p, d) => p - d);
  const conns = failed(proxied.conns) || proxied.conns.length === 0 ? undefined : proxied.conns;
  const range = (xs: number[], unit: string): string => `${cell(xs)}${unit}`;
  return [
    { target: 'bulk ≥ 50 % of direct', measured: ratio ? range(ratio, ' %') : 'n/a', met: ratio ? percentile(ratio, 0.5) >= 50 : undefined },
    { target: 'added p50 ≤ 100 µs', measured: added ? range(added, ' µs') : 'n/a', met: added ? percentile(added, 0.5) <= 100 : undefined },
    { target: '≥ 3,000 new connections/s', measured: conns ? range(conns, '') : 'n/a', met: conns ? percentile(conns, 0.5) >= 3000 : undefined },
  ];
}

export const verdictWord = (met: boolean | undefined): string => (met === undefined ? 'not measured' : met ? 'met' : 'MISSED');

export interface Spread {
  n: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

/** p50 / p99 (nearest rank) / max / mean of unsorted samples; all 0 for none. */
export function spread(xs: readonly number[]): Spread {
  if (xs.length === 0) return { n: 0, p50: 0, p99: 0, max: 0, mean: 0 };
  let max = -Infinity;
  let sum = 0;
  for (const x of xs) {
    if (x > max) max = x;
    sum += x;
  }
  return { n: xs.length, p50: percentile(xs, 0.5), p99: percentile(xs, 0.99), max, mean: sum / xs.length };
}
