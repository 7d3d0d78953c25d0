/**
 * Idle memory of the single-file agent (dist/orchard-agent.mjs) against the tsc build of the same
 * agent (node dist/cli/main.js agent): bundling changes module-load cost (issue 17).
 *
 * A real hub and, one after the other, each agent as a real process joined to it, on this
 * machine's Docker Engine with no pods. Each agent idles `--idle` seconds after it is Ready; then
 * its RSS and peak RSS come from /proc (scripts/bench/lib/proc-stats.ts) and its V8 heap from a
 * probe preloaded with `--import` (process.memoryUsage() every 2 s into a temp file). Runs
 * alternate bundle/tsc so both see the same machine load; prints the load average too.
 *
 * Run: npm run build && npx tsx scripts/bench/agent-bundle-memory.ts [--runs 1] [--idle 60]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Cluster } from '../../test/helpers/cluster.js';
import { AGENT_BUNDLE, CLI } from '../../test/helpers/procs.js';
import { readProcStats } from './lib/proc-stats.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '1' }, idle: { type: 'string', default: '60' } } });
const runs = Number(values.runs);
const idleMs = Number(values.idle) * 1000;
const mb = (n: number): string => (n / 2 ** 20).toFixed(1);
const load = (): string =>
  execFileSync('uptime', { encoding: 'utf8' })
    .trim()
    .replace(/^.*load average: /, '');

const dir = mkdtempSync(join(tmpdir(), 'orchard-bundle-mem-'));
const probe = join(dir, 'heap-probe.mjs');
writeFileSync(
  probe,
  `import { writeFileSync } from 'node:fs';
const out = process.env.ORCHARD_HEAP_PROBE_OUT;
if (out) setInterval(() => writeFileSync(out, JSON.stringify(process.memoryUsage())), 2000).unref();
`,
);

const c = new Cluster();
try {
  await c.startHub();
  console.log(`load average at start: ${load()}`);
  console.log('variant  run  RSS MiB  peak RSS MiB  heap used MiB  heap total MiB  external MiB  CPU s (incl. start)');
  for (let run = 1; run <= runs; run++) {
    for (const variant of ['bundle', 'tsc'] as const) {
      const short = `${variant}${run}`;
      const out = join(dir, `${short}.json`);
      process.env.ORCHARD_HEAP_PROBE_OUT = out;
      const importProbe = `--import=${pathToFileURL(probe).href}`;
      const launch = variant === 'bundle' ? [process.execPath, importProbe, AGENT_BUNDLE] : [process.execPath, importProbe, CLI, 'agent'];
      const p = await c.startAgent(short, { launch });
      await c.waitNodeReady(short, 60_000);
      await new Promise((r) => setTimeout(r, idleMs));
      const st = readProcStats(p.child.pid ?? 0);
      const heap = JSON.parse(readFileSync(out, 'utf8')) as { heapUsed: number; heapTotal: number; external: number };
      console.log(
        [
          variant.padEnd(7),
          String(run).padStart(3),
          mb(st?.rssBytes ?? 0).padStart(8),
          mb(st?.peakRssBytes ?? 0).padStart(13),
          mb(heap.heapUsed).padStart(14),
          mb(heap.heapTotal).padStart(15),
          mb(heap.external).padStart(13),
          String(st?.cpuSeconds ?? 0).padStart(8),
        ].join('  '),
      );
      await p.stop();
    }
  }
  console.log(`load average at end: ${load()}`);
} finally {
  await c.cleanup();
  rmSync(dir, { recursive: true, force: true });
}
