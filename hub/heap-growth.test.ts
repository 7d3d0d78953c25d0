import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { applyHeapGrowth } from './heap-growth.js';

const HERE = dirname(fileURLToPath(import.meta.url));

/** Largest heapTotal (MiB) of a child that keeps ≈ 100 MiB live while churning garbage. */
function peakHeapMiB(percent: number | undefined): number {
  const script = `
    ${percent === undefined ? '' : `const { applyHeapGrowth } = await import(${JSON.stringify(join(HERE, 'heap-growth.ts'))}); applyHeapGrowth(${percent});`}
    const live = [];
    for (let i = 0; i < 100; i++) live.push(Array.from({ length: 10000 }, (_, k) => ({ k, s: 'x' + k })));
    let max = 0, keep = [];
    for (let r = 0; r < 300; r++) {
      keep.push(Array.from({ length: 20000 }, (_, k) => ({ k, s: 'y' + k })));
      if (keep.length > 20) keep = keep.slice(10);
      max = Math.max(max, process.memoryUsage().heapTotal);
    }
    console.log(Math.round(max / 1048576));`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  return Number(out.trim());
}

describe('applyHeapGrowth', () => {
  it('keeps the committed heap closer to the live set than V8 left alone does, set after start', () => {
    const free = peakHeapMiB(undefined);
    const capped = peakHeapMiB(20);
    // Node 20 (V8 11) shows well under 0.8 ×; Node 24's V8 grows less on its own, and CI saw
    // 318 vs 397 MiB (0.80 ×) there. A cap that does nothing stays near 1.0 ×.
    expect(capped).toBeLessThan(free * 0.9);
  }, 120_000);

  it('refuses a percent that is not a whole number 0–1000, and 0 changes nothing', () => {
    expect(() => applyHeapGrowth(-1)).toThrow(/0–1000/);
    expect(() => applyHeapGrowth(12.5)).toThrow(/0–1000/);
    expect(() => applyHeapGrowth(1001)).toThrow(/0–1000/);
    expect(() => applyHeapGrowth(0)).not.toThrow();
  });
});
