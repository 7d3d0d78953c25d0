/**
 * Text output helpers: kubectl-style aligned tables (columns padded to the widest cell,
 * three spaces apart, no trailing spaces) and short ages.
 */

const COLUMN_GAP = 3;

export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>, indent = ''): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, col) => Math.max(...all.map((r) => (r[col] ?? '').length)));
  const lines = all.map(
    (r) =>
      indent +
      headers
        .map((_, col) => {
          const cell = r[col] ?? '';
          return col === headers.length - 1 ? cell : cell.padEnd((widths[col] ?? 0) + COLUMN_GAP);
        })
        .join('')
        .trimEnd(),
  );
  return `${lines.join('\n')}\n`;
}

/** Whole-unit age like kubectl's short form: 45s, 3m, 2h, 4d. Clock skew never shows negative. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** Age of an ISO timestamp at `now`, or `<unknown>` when absent or unparsable. */
export function ageSince(iso: string | undefined, now: number): string {
  if (iso === undefined) return '<unknown>';
  const t = Date.parse(iso);
  return Number.isNaN(t) ? '<unknown>' : formatAge(now - t);
}

export function formatLabels(labels: Readonly<Record<string, string>> | undefined): string {
  const entries = Object.entries(labels ?? {});
  return entries.length === 0 ? '<none>' : entries.map(([k, v]) => `${k}=${v}`).join(',');
}

/** `Deployment`, `web` → `deployment/web`, the form kubectl prints after apply/delete. */
export function objectRef(kind: string, name: string): string {
  return `${kind.toLowerCase()}/${name}`;
}

/**
 * `Key:   value` lines for describe output; values spanning several lines (labels) continue
 * under the value column.
 */
export function fields(pairs: ReadonlyArray<readonly [string, string | readonly string[]]>, indent = ''): string {
  const width = Math.max(...pairs.map(([k]) => k.length + 1)) + 2;
  let out = '';
  for (const [key, value] of pairs) {
    const values = typeof value === 'string' ? [value] : value.length === 0 ? ['<none>'] : value;
    values.forEach((v, i) => {
      const head = i === 0 ? `${key}:` : '';
      out += `${indent}${head.padEnd(width)}${v}`.trimEnd() + '\n';
    });
  }
  return out;
}
