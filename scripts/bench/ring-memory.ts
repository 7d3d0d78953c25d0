/**
 * What the hub's usage history costs at fleet scale: N rings of the default hour (60 slots), as
 * the hub keeps them (RingPool: shared slabs, hub/metrics/ring.ts) next to the layout it had until
 * 2026-12-06 (three typed arrays per ring, each with its own ArrayBuffer), each in its own child
 * process: RSS and heap growth after the rings are made, and the mean of 5 full GCs with them alive.
 *
 * Run: node --import tsx scripts/bench/ring-memory.ts [--rings 110000] [--runs 3]
 * (110,000 = 10,000 nodes + 100,000 pods.) Prints a Markdown table.
 */
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { RingPool } from '../../hub/metrics/ring.js';

const SIZE = 60;

interface Sample {
  layout: string;
  rssMiB: number;
  heapMiB: number;
  gcMs: number;
}

function measure(layout: string, rings: number): Sample {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run the child with --expose-gc');
  const keep: unknown[] = [];
  gc();
  const m0 = process.memoryUsage();
  if (layout === 'pool') {
    const pool = new RingPool(SIZE, 60_000);
    for (let i = 0; i < rings; i++) {
      const r = pool.ring();
      r.push(i * 1000, 0.5, 1e6);
      keep.push(r);
    }
  } else {
    for (let i = 0; i < rings; i++) {
      const a = [new Uint32Array(SIZE), new Float32Array(SIZE), new Float32Array(SIZE)] as const;
      a[0][1] = 1;
      a[1][1] = 0.5;
      a[2][1] = 1e6;
      keep.push(a);
    }
  }
  gc();
  const m1 = process.memoryUsage();
  const t = performance.now();
  for (let i = 0; i < 5; i++) gc();
  const gcMs = (performance.now() - t) / 5;
  if (keep.length !== rings) throw new Error('lost rings');
  return { layout, rssMiB: (m1.rss - m0.rss) / 2 ** 20, heapMiB: (m1.heapUsed - m0.heapUsed) / 2 ** 20, gcMs };
}

const { values } = parseArgs({
  options: { rings: { type: 'string', default: '110000' }, runs: { type: 'string', default: '3' }, child: { type: 'string' } },
  strict: true,
});
const rings = Number(values.rings);
if (values.child !== undefined) {
  process.stdout.write(JSON.stringify(measure(values.child, rings)));
} else {
  const rows: Sample[] = [];
  for (let run = 0; run < Number(values.runs); run++) {
    for (const layout of ['three-buffers', 'pool']) {
      const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', import.meta.filename, '--child', layout, '--rings', String(rings)], {
        encoding: 'utf8',
      });
      rows.push(JSON.parse(out) as Sample);
    }
  }
  console.log(`${rings} rings of ${SIZE} slots, Node ${process.version}`);
  console.log('| layout | RSS growth | heap growth | full GC, mean of 5 |\n|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.layout} | ${r.rssMiB.toFixed(1)} MiB | ${r.heapMiB.toFixed(1)} MiB | ${r.gcMs.toFixed(1)} ms |`);
}
