/**
 * Kubernetes-style resource quantities. CPU in millicores (`250m`, `0.5`, `2`), memory and
 * storage in bytes (`64Mi`, `1G`, `128974848`, `1.5Gi`). Parsers return undefined on bad input
 * so schemas can report the field; they never throw.
 */

const CPU_RE = /^(\d+(?:\.\d+)?|\.\d+)(m?)$/;
const MEM_RE = /^(\d+(?:\.\d+)?|\.\d+)(?:e(\d+))?(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?$/;

const MEM_UNITS: Record<string, number> = {
  '': 1,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  Pi: 1024 ** 5,
  Ei: 1024 ** 6,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

export type Quantity = string | number;

/** CPU quantity → integer millicores, or undefined if malformed or negative. */
export function parseCpuMillis(q: Quantity): number | undefined {
  if (typeof q === 'number') {
    return Number.isFinite(q) && q >= 0 ? Math.round(q * 1000) : undefined;
  }
  const m = CPU_RE.exec(q.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  if (!Number.isFinite(n)) return undefined;
  return m[2] === 'm' ? Math.round(n) : Math.round(n * 1000);
}

/** Memory/storage quantity → integer bytes, or undefined if malformed or negative. */
export function parseBytes(q: Quantity): number | undefined {
  if (typeof q === 'number') {
    return Number.isFinite(q) && q >= 0 ? Math.round(q) : undefined;
  }
  const m = MEM_RE.exec(q.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * (m[2] ? 10 ** Number(m[2]) : 1);
  const suffix = m[3] ?? '';
  // `m` (milli) is legal in Kubernetes memory quantities but meaningless for bytes.
  const value = suffix === 'm' ? n / 1000 : n * (MEM_UNITS[suffix] ?? NaN);
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER) return undefined;
  return Math.round(value);
}

export function formatCpu(millis: number): string {
  return millis % 1000 === 0 ? String(millis / 1000) : `${millis}m`;
}

export function formatBytes(bytes: number): string {
  const units: Array<[string, number]> = [
    ['Gi', 1024 ** 3],
    ['Mi', 1024 ** 2],
    ['Ki', 1024],
  ];
  for (const [u, f] of units) {
    if (bytes >= f) {
      const v = bytes / f;
      return `${Number.isInteger(v) ? v : v.toFixed(1)}${u}`;
    }
  }
  return String(bytes);
}
