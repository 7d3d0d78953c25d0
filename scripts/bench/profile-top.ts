/**
 * Reads a V8 `.cpuprofile` (the fleet benches' `--hub-cpu-prof`) and prints where the time went:
 * self time by function and by source file, or, with `--callers NAME`, the self time of the
 * functions named NAME by their caller chain (`--depth` frames up). Times are the profile's
 * sample intervals summed (wall time of the sampled thread, so a synchronous fsync counts).
 *
 * Run: npx tsx scripts/bench/profile-top.ts FILE.cpuprofile [--top 40] [--callers run] [--depth 5]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '40' }, callers: { type: 'string' }, depth: { type: 'string', default: '5' } },
});
const file = positionals[0];
if (file === undefined) throw new Error('usage: profile-top.ts FILE.cpuprofile [--top N] [--callers NAME] [--depth N]');
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map<number, number>();
p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);

/** `hub/store/base-store.js`, `node_modules/zod/…`, `node:internal/…` instead of absolute paths. */
const short = (url: string): string => (url === '' ? '(native)' : url.replace(/^.*?\/(node_modules|hub|agent|protocol|scripts|cli)\//, '$1/'));
const frame = (n: ProfileNode): string => `${n.callFrame.functionName || '(anon)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
const print = (m: Map<string, number>, n: number): void => {
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n))
    console.log(`${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %  ${k}`);
};

console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled`);
if (values.callers !== undefined) {
  const depth = Number(values.depth);
  const chains = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined || n.callFrame.functionName !== values.callers) continue;
    const chain: string[] = [];
    for (let cur = parent.get(id); cur !== undefined && chain.length < depth; cur = parent.get(cur)) {
      const f = byId.get(cur);
      if (f !== undefined) chain.push(frame(f));
    }
    const k = chain.join(' < ');
    chains.set(k, (chains.get(k) ?? 0) + us);
  }
  console.log(`--- self time of ${values.callers} by caller chain`);
  print(chains, Number(values.top));
} else {
  const fns = new Map<string, number>();
  const files = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    fns.set(frame(n), (fns.get(frame(n)) ?? 0) + us);
    const f = short(n.callFrame.url);
    files.set(f, (files.get(f) ?? 0) + us);
  }
  console.log('--- self time by function');
  print(fns, Number(values.top));
  console.log('--- self time by file');
  print(files, 30);
}
