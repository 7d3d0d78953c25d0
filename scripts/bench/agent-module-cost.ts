/**
 * What loading each of the agent's heavy dependencies costs (issue 17: "module load cost"): for
 * each module, a fresh `node --expose-gc` child measures V8 heap used, external memory, RSS and
 * anonymous memory (/proc/self/smaps_rollup) after gc() before and after importing it. Modules
 * load from node_modules and from the tsc build (dist/), so run `npm run build` first; inside the
 * single-file bundle the numbers differ a little (one script, minified), the ranking does not.
 *
 *   npx tsx scripts/bench/agent-module-cost.ts [--node /path/to/node] [--runs 3] [--flags='--lite-mode …']
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { REPO } from '../../test/helpers/procs.js';
import { cell } from './lib/stats.js';

const { values } = parseArgs({
  options: { node: { type: 'string', default: process.execPath }, runs: { type: 'string', default: '3' }, flags: { type: 'string', default: '' } },
  strict: true,
});
const flags = values.flags.split(' ').filter(Boolean);

const dist = (p: string): string => pathToFileURL(join(REPO, 'dist', p)).href;
/** name → code run after the baseline reading (top-level await allowed). */
const CASES: Array<[string, string]> = [
  ['(nothing)', ''],
  ['zod', "await import('zod');"],
  ['protocol schemas (manifest + messages)', `await import(${JSON.stringify(dist('protocol/messages.js'))});`],
  ['mqtt', "await import('mqtt');"],
  ['dockerode', "await import('dockerode');"],
  ['systeminformation', "await import('systeminformation');"],
  ['node:tls + a secure context', "const tls = await import('node:tls'); globalThis.keep = tls.createSecureContext({});"],
  ['node:zlib deflate', "const z = await import('node:zlib'); globalThis.keep = z.deflateRawSync(Buffer.alloc(1000));"],
  ['agent/main (whole agent, tsc build)', `await import(${JSON.stringify(dist('agent/main.js'))});`],
];

const probe = (body: string): string => `
import { readFileSync } from 'node:fs';
const anon = () => Number(/^Anonymous:\\s+(\\d+)/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))[1]) * 1024;
const read = () => { gc(); gc(); const m = process.memoryUsage(); return { heap: m.heapUsed, ext: m.external, rss: m.rss, anon: anon() }; };
const a = read();
${body}
await new Promise((r) => setTimeout(r, 200));
const b = read();
process.stdout.write(JSON.stringify({ heap: b.heap - a.heap, ext: b.ext - a.ext, rss: b.rss - a.rss, anon: b.anon - a.anon }));
`;

const runs = Number(values.runs);
const mb = (n: number): number => n / 2 ** 20;
console.log(
  `node ${execFileSync(values.node, ['--version'], { encoding: 'utf8' }).trim()} ${flags.join(' ')}; ${runs} runs, median (min–max) MiB of growth after import, after gc()`,
);
console.log('| module | V8 heap used | external | RSS | anonymous |\n|---|---|---|---|---|');
for (const [name, body] of CASES) {
  const r = { heap: [] as number[], ext: [] as number[], rss: [] as number[], anon: [] as number[] };
  for (let i = 0; i < runs; i++) {
    const out = execFileSync(values.node, [...flags, '--expose-gc', '--input-type=module', '-e', probe(body)], { cwd: REPO, encoding: 'utf8' });
    const d = JSON.parse(out) as { heap: number; ext: number; rss: number; anon: number };
    r.heap.push(mb(d.heap));
    r.ext.push(mb(d.ext));
    r.rss.push(mb(d.rss));
    r.anon.push(mb(d.anon));
  }
  console.log(`| ${name} | ${cell(r.heap, 1)} | ${cell(r.ext, 1)} | ${cell(r.rss, 1)} | ${cell(r.anon, 1)} |`);
}
