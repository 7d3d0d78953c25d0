/**
 * The import rules of DESIGN.md and STYLE.md, checked on the real source (scripts/test.sh runs
 * this before the tiers; `npx tsx scripts/check-imports.ts` by hand):
 *
 * - protocol/ imports only zod, the node built-ins in PROTOCOL_BUILTINS, and itself;
 * - hub/, agent/ and cli/ import protocol/ and themselves, never each other — except cli/main.ts,
 *   the `orchard` binary, which loads hub/main.ts or agent/main.ts on demand (literal dynamic
 *   imports, so tools and bundlers see them);
 * - shipped code never imports test-only modules (TEST_ONLY), which stay out of dist/;
 * - no import cycles among shipped modules (type-only imports included: a cycle of types today
 *   is a load-order crash the day someone adds a value import).
 *
 * Imports are read with TypeScript's own pre-processor, so `import()` and `export … from` count.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const ROOMS = ['protocol', 'hub', 'agent', 'cli'] as const;
export type Room = (typeof ROOMS)[number];

/** Node built-ins protocol/ truly needs: zlib for the deflated wire encoding (messages.ts). */
export const PROTOCOL_BUILTINS = new Set(['node:zlib']);

/** Test-only modules: shipped code must not import them (they are excluded from the build). */
export const TEST_ONLY = /(\.test\.ts|\/test-[\w-]+\.ts|\/testing\.ts|\/store-contract\.ts|\/fake-[\w-]+\.ts)$/;

/** The binary's entry point may load the two long-running processes. */
const CLI_PROCESS_ENTRIES = new Map<string, Set<string>>([['cli/main.ts', new Set(['hub/main.ts', 'agent/main.ts'])]]);

export interface ImportEdge {
  from: string;
  to: string;
  specifier: string;
}
export interface Violation {
  file: string;
  rule: string;
  detail: string;
}

function roomOf(path: string): Room | undefined {
  const top = path.split('/')[0];
  return (ROOMS as readonly string[]).includes(top ?? '') ? (top as Room) : undefined;
}

/** Every import of one file: repo-relative target paths for relative specifiers, bare names otherwise. */
export function importsOf(file: string, source: string): ImportEdge[] {
  const info = ts.preProcessFile(source, true, true);
  return info.importedFiles.map(({ fileName }) => {
    if (!fileName.startsWith('.')) return { from: file, to: fileName, specifier: fileName };
    const target = join(dirname(file), fileName).split(sep).join('/').replace(/\.js$/, '.ts');
    return { from: file, to: target, specifier: fileName };
  });
}

/** The layer rules for one edge (cycles are checked on the whole graph). */
export function edgeViolations(e: ImportEdge): Violation[] {
  const out: Violation[] = [];
  const from = roomOf(e.from);
  if (from === undefined) return out;
  const shipped = !TEST_ONLY.test(e.from);
  const relativeImport = e.specifier.startsWith('.');
  if (from === 'protocol' && shipped && !relativeImport && e.to !== 'zod' && !PROTOCOL_BUILTINS.has(e.to)) {
    out.push({ file: e.from, rule: 'protocol-deps', detail: `protocol/ imports only zod and ${[...PROTOCOL_BUILTINS].join(', ')}; found '${e.to}'` });
  }
  if (relativeImport) {
    const to = roomOf(e.to);
    if (to === undefined && !e.to.startsWith('test/') && !e.to.startsWith('scripts/')) {
      out.push({ file: e.from, rule: 'outside-rooms', detail: `imports '${e.specifier}' outside protocol/, hub/, agent/, cli/` });
    } else if (to !== undefined && to !== from && to !== 'protocol' && !CLI_PROCESS_ENTRIES.get(e.from)?.has(e.to)) {
      out.push({ file: e.from, rule: 'layers', detail: `${from}/ must not import ${to}/ ('${e.specifier}'); reach it over HTTP or MQTT through protocol/` });
    }
    if (shipped && (e.to.startsWith('test/') || e.to.startsWith('scripts/') || TEST_ONLY.test(e.to))) {
      out.push({ file: e.from, rule: 'test-only', detail: `shipped code imports test-only '${e.specifier}'` });
    }
  }
  return out;
}

/** Each elementary cycle found by a depth-first search, reported once (as its sorted node list). */
export function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): void => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (!graph.has(m)) continue;
      const s = state.get(m);
      if (s === 'open') {
        const cycle = stack.slice(stack.indexOf(m));
        const key = [...cycle].sort().join(' ');
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push([...cycle, m]);
        }
      } else if (s === undefined) visit(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

export function checkRepo(repo: string): Violation[] {
  const files = ROOMS.flatMap((r) => walk(join(repo, r))).map((p) => relative(repo, p).split(sep).join('/'));
  const violations: Violation[] = [];
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const edges = importsOf(file, readFileSync(join(repo, file), 'utf8'));
    for (const e of edges) violations.push(...edgeViolations(e));
    if (!TEST_ONLY.test(file))
      graph.set(
        file,
        edges.filter((e) => e.specifier.startsWith('.')).map((e) => e.to),
      );
  }
  for (const c of findCycles(graph)) violations.push({ file: c[0] ?? '', rule: 'cycle', detail: c.join(' → ') });
  return violations;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const v = checkRepo(repo);
  for (const x of v) console.error(`${x.file}: [${x.rule}] ${x.detail}`);
  console.log(v.length === 0 ? 'imports: layers, test-only and cycles OK' : `imports: ${v.length} violation(s)`);
  process.exitCode = v.length === 0 ? 0 : 1;
}
