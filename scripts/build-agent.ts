/**
 * Builds the single-file agent: dist/orchard-agent.mjs (+ .map), everything agent/standalone.ts
 * imports bundled by esbuild, so a device needs only Node (20, 22 or 24) and Docker.
 * `npm run build` runs it after tsc; by hand:
 *
 *   npx tsx scripts/build-agent.ts [--version V] [--outfile PATH]
 *
 * --version (or env ORCHARD_VERSION) sets the version the agent reports (default: package.json's);
 * --outfile (default dist/orchard-agent.mjs) lets a test build an "other" version beside it.
 * Prints the file's size and gzip size. It fails when the bundle's graph holds a native addon,
 * anything under hub/ or cli/, or an import left to node_modules (bundleViolations below).
 */
import { build, type BuildOptions, type BuildResult, type Metafile, type Plugin } from 'esbuild';
import { existsSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

export const REPO = fileURLToPath(new URL('..', import.meta.url));
export const AGENT_ENTRY = join(REPO, 'agent', 'standalone.ts');
export const AGENT_OUTFILE = join(REPO, 'dist', 'orchard-agent.mjs');
/** The launcher systemd runs (agent/launcher-main.ts: swaps and rolls back agent files on upgrades; docs/agent.md). */
export const LAUNCHER_ENTRY = join(REPO, 'agent', 'launcher-main.ts');
export const LAUNCHER_OUTFILE = join(REPO, 'dist', 'orchard-agent-launcher.mjs');

/**
 * V8 flags for the agent on small devices (docs/agent.md "Memory"), measured with
 * scripts/bench/agent-bundle-memory.ts. scripts/install-agent.sh writes the same list into the unit.
 * `--jitless` turns WebAssembly off: nothing in the agent may need it (Node 22 compiles undici's
 * llhttp to WebAssembly when node:http is ES-imported: see httpViaRequire below).
 * `--no-node-snapshot`: Node bootstraps by running its built-in JS (from the code cache in the
 * binary) instead of deserializing its start-up snapshot, so the snapshot's pages of the `node`
 * binary are never read: 2.7 MiB less file-backed RSS at 10 pods on Node 20 (docs/agent.md).
 * `--no-icu-timezone-data`: local time (the agent formats none, but its dependencies ask for it)
 * comes from the C library instead of ICU's time-zone data and code: 0.7 MiB less file-backed.
 */
export const AGENT_V8_FLAGS: readonly string[] = [
  '--max-semi-space-size=1',
  '--single-threaded-gc',
  '--v8-pool-size=1',
  '--jitless',
  '--no-node-snapshot',
  '--no-icu-timezone-data',
];

/**
 * glibc malloc settings for the agent, set by the unit (`Environment=`, scripts/install-agent.sh,
 * kept equal by a test): one arena for all threads, freed memory given back to the kernel past
 * 128 KiB (an explicit threshold also stops glibc from raising it, and the mmap threshold, as the
 * process frees large blocks), and blocks of 32 KiB and more in mappings of their own. The last
 * ends a 5 MiB malloc mode: after the bundle loads, glibc's main heap holds either ≈ 3.9 or
 * ≈ 8.6 MiB with the same V8 heap, the difference freed blocks under a live one that cannot be
 * trimmed. `--no-node-snapshot` was thought to end it (fourth pass, 0 of 4 starts), but it came
 * back in 2 of 11 starts of the fifth pass (0 of 11 with the threshold), and the threshold also
 * keeps glibc's heap 1.5-2.6 MiB smaller at 50 pods. Cost: socket reads of 64 KiB are mapped and
 * unmapped (+0.1-0.3 % of a core at 50 pods in the fourth pass, within noise in the fifth).
 * docs/agent.md "Memory".
 */
export const AGENT_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '1', MALLOC_TRIM_THRESHOLD_: '131072', MALLOC_MMAP_THRESHOLD_: '32768' };

/** The launcher: Node builtins only, so nothing to stub; small on purpose (it stays resident). */
export async function buildLauncher(outfile = LAUNCHER_OUTFILE): Promise<number> {
  const r = await build({
    entryPoints: [LAUNCHER_ENTRY],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
    absWorkingDir: REPO,
  });
  const external = Object.values(r.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.external && !i.path.startsWith('node:')).map((i) => i.path));
  if (external.length > 0) throw new Error(`the launcher must use Node builtins only; it imports ${external.join(', ')}`);
  return statSync(outfile).size;
}

/**
 * Optional packages our dependencies try to require inside try/catch and do without (ws:
 * bufferutil, utf-8-validate; debug: supports-color; systeminformation: the macOS temperature
 * sensors). They are not installed; rather than leave a run-time lookup in node_modules, each
 * becomes a module that fails exactly as a missing package does, which the caller already handles.
 */
export const ABSENT_OPTIONAL = ['bufferutil', 'utf-8-validate', 'supports-color', 'osx-temperature-sensor', 'macos-temperature-sensor'];

const absentStub = (name: string): string => `
const err = new Error(${JSON.stringify(`Cannot find module '${name}' (left out of the single-file Orchard agent)`)});
err.code = 'MODULE_NOT_FOUND';
throw err;
`;

const stubs: Plugin = {
  name: 'orchard-stubs',
  setup(b) {
    const absent = new RegExp(`^(${ABSENT_OPTIONAL.join('|')})$`);
    b.onResolve({ filter: absent }, (a) => ({ path: a.path, namespace: 'orchard-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'orchard-stub' }, (a) => ({ contents: absentStub(a.path), loader: 'js' }));
  },
};

/**
 * The agent's own `import … from 'node:http'` becomes a require() (one CommonJS shim module). On
 * Node 22, an ES import of node:http builds its ES module facade, which reads every export, the
 * lazy `http.WebSocket` getter included: that loads undici, which compiles llhttp to WebAssembly,
 * and with `--jitless` (AGENT_V8_FLAGS) there is no WebAssembly, so the agent would die before its
 * first line. require() hands over the exports object without reading them (Node 20 and 24 build
 * the facade without that getter; the CommonJS dependencies already require() http).
 * `node:tls` likewise (agent/link.ts): its facade would read the lazy `tls.rootCertificates` getter,
 * which builds the whole bundled root store as strings the agent never uses (it pins the hub CA);
 * mqtt.js already require()s tls.
 */
const httpViaRequire: Plugin = {
  name: 'orchard-http-via-require',
  setup(b) {
    b.onResolve({ filter: /^(node:)?(http|tls)$/ }, (a) =>
      a.kind === 'import-statement' ? { path: `node:${a.path.replace(/^node:/, '')}`, namespace: 'orchard-cjs-builtin' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'orchard-cjs-builtin' }, (a) => ({ contents: `module.exports = require(${JSON.stringify(a.path)});`, loader: 'js' }));
  },
};

/**
 * zod's `z` namespace carries `z.locales`, its error messages in ≈ 50 languages: ≈ 0.29 MB of the
 * bundle that V8 keeps (as source text) for the agent's life, and none of it runs. The agent never
 * switches locale; zod installs English itself on the first schema it builds, from locales/en.js,
 * which this keeps. In the bundle `z.locales` (and `z.core.locales`) hold only `en`.
 */
export const zodEnglishOnly: Plugin = {
  name: 'orchard-zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (a) =>
      /node_modules\/zod\/v4\/(core|classic)\/[^/]+\.js$/.test(a.importer)
        ? { path: join(dirname(a.importer), '..', 'locales', 'index.js'), namespace: 'orchard-zod-locales' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'orchard-zod-locales' }, (a) => ({
      contents: "export { default as en } from './en.js';",
      resolveDir: dirname(a.path),
      loader: 'js',
    }));
  },
};

/**
 * zod keeps, in each schema a method like `.min()`, `.int()`, `.regex()` or `.refine()` returns, a
 * link to the schema it was made from (`_zod.parent`), only so that metadata registered on the
 * earlier one (`.describe()`, `.meta()`, a registry) is inherited. The agent registers no
 * metadata and makes no JSON Schema (the hub's schemas do; they are not in the bundle), but the
 * links keep every intermediate schema of `z.string().min(1).max(253)` alive for the agent's
 * life. In the bundle, `clone` sets no parent; parsing never reads it.
 */
export const ZOD_NO_PARENT = {
  file: /node_modules\/zod\/v4\/core\/util\.js$/,
  from: 'if (!def || params?.parent)\n        cl._zod.parent = inst;',
  to: '/* orchard: no _zod.parent (scripts/build-agent.ts ZOD_NO_PARENT) */',
};

export const zodNoParent: Plugin = {
  name: 'orchard-zod-no-parent',
  setup(b) {
    let applied = false;
    b.onStart(() => {
      applied = false;
    });
    b.onLoad({ filter: ZOD_NO_PARENT.file }, (a) => {
      const text = readFileSync(a.path, 'utf8');
      if (!text.includes(ZOD_NO_PARENT.from)) throw new Error(`${a.path} no longer contains zod's parent link: update ZOD_NO_PARENT in scripts/build-agent.ts`);
      applied = true;
      return { contents: text.replace(ZOD_NO_PARENT.from, ZOD_NO_PARENT.to), loader: 'js', resolveDir: dirname(a.path) };
    });
    b.onEnd((result) => {
      // (A build without zod, e.g. a test's, has nothing to patch.)
      const withZod = Object.keys(result.metafile?.inputs ?? {}).some((i) => i.includes('node_modules/zod/'));
      if (result.errors.length === 0 && withZod && !applied) throw new Error('ZOD_NO_PARENT found no zod/v4/core/util.js: update scripts/build-agent.ts');
    });
  },
};

/**
 * Modules our dependencies require when they load but the agent never runs, loaded on first use
 * instead (the same code, later or never): each rewrite below swaps a top-level `require(…)` for
 * a function or getter that requires it when called. The agent dials mqtt:// or mqtts://
 * without a SOCKS proxy, uses Node's timers and never builds images, so on a device none of these
 * loads, and their heap (measured in docs/benchmarks.md "Third pass") is never spent; an
 * `MQTTJS_SOCKS_PROXY` environment variable, which mqtt.js honours, still works. A rewrite whose
 * text is no longer in the file (a dependency changed) fails the build, so it cannot silently lapse.
 */
export const LAZY_REQUIRES: ReadonlyArray<{ file: RegExp; from: string; to: string }> = [
  // mqtt.js: its SOCKS client (socks, ip-address, smart-buffer), only with a socksProxy option.
  ...['tcp', 'tls'].map((f) => ({
    file: new RegExp(`node_modules/mqtt/build/lib/connect/${f}\\.js$`),
    from: 'const socks_1 = __importDefault(require("./socks"));',
    to: 'const socks_1 = { get default() { return __importDefault(require("./socks")).default; } };',
  })),
  // mqtt.js: Web Worker timers (worker-timers and its broker), only with timerVariant 'worker' or in a browser.
  {
    file: /node_modules\/mqtt\/build\/lib\/get-timer\.js$/,
    from: 'const worker_timers_1 = require("worker-timers");',
    to: 'const worker_timers_1 = { setInterval: (...a) => require("worker-timers").setInterval(...a), clearInterval: (...a) => require("worker-timers").clearInterval(...a) };',
  },
  // mqtt.js: the WebSocket transport (ws), registered for ws:// and wss:// at the first connect.
  {
    file: /node_modules\/mqtt\/build\/lib\/connect\/index\.js$/,
    from: "protocols.ws = require('./ws').streamBuilder;\n            protocols.wss = require('./ws').streamBuilder;",
    to: "protocols.ws = (client, opts) => require('./ws').streamBuilder(client, opts);\n            protocols.wss = protocols.ws;",
  },
];

const lazyRequires: Plugin = {
  name: 'orchard-lazy-requires',
  setup(b) {
    const applied = new Set<(typeof LAZY_REQUIRES)[number]>();
    b.onStart(() => applied.clear());
    const files = [...new Set(LAZY_REQUIRES.map((r) => r.file.source))].map((src) => new RegExp(src));
    for (const file of files) {
      b.onLoad({ filter: file }, (a) => {
        let text = readFileSync(a.path, 'utf8');
        for (const r of LAZY_REQUIRES.filter((x) => x.file.source === file.source)) {
          if (!text.includes(r.from)) throw new Error(`${a.path} no longer contains ${JSON.stringify(r.from)}: update LAZY_REQUIRES in scripts/build-agent.ts`);
          text = text.replace(r.from, r.to);
          applied.add(r);
        }
        return { contents: text, loader: 'js', resolveDir: dirname(a.path) };
      });
    }
    // A file no longer in the graph (a dependency moved it) must not pass unnoticed either.
    b.onEnd((result) => {
      if (result.errors.length > 0) return;
      const missed = LAZY_REQUIRES.filter((r) => !applied.has(r));
      if (missed.length > 0) throw new Error(`LAZY_REQUIRES found no file for ${missed.map((r) => r.file.source).join(', ')}: update scripts/build-agent.ts`);
    });
  },
};

/**
 * readable-stream is a copy of Node's own `stream` module for browsers and old Nodes: mqtt.js and
 * bl import version 4 (Node 18's streams); version 3 (Node 10's) came with docker-modem and
 * tar-stream until the agent dropped dockerode (engine-api.ts) and is kept handled here. On
 * Node ≥ 20 both are streams Node already has loaded (every socket is one), so every import of
 * `readable-stream` gets version 4's own `READABLE_STREAM=disable` branch (lib/ours/index.js),
 * which exports Node's `stream` under the package's names: ≈ 0.12 MB of copied stream code, and
 * event-target-shim, abort-controller, string_decoder and process it pulls in, are neither in the
 * file nor in the heap. Version 3's own branch cannot serve its importers: it `Object.assign`s
 * `stream` onto `stream.Readable`, which throws on Node ≥ 15 (`promises` is an inherited getter);
 * they use only `Readable`, `Writable`, `Duplex` and `PassThrough`, which this exports. Another
 * major version fails the build until someone checks it.
 */
export const NODE_STREAMS = [
  "const Stream = require('stream');",
  'const promises = Stream.promises;',
  ...[
    '_uint8ArrayToBuffer',
    '_isUint8Array',
    'isDisturbed',
    'isErrored',
    'isReadable',
    'Readable',
    'Writable',
    'Duplex',
    'Transform',
    'PassThrough',
    'addAbortSignal',
    'finished',
    'destroy',
    'pipeline',
    'compose',
  ].map((n) => `module.exports.${n} = Stream.${n};`),
  "Object.defineProperty(Stream, 'promises', { configurable: true, enumerable: true, get() { return promises; } });",
  'module.exports.Stream = Stream.Stream;',
  'module.exports.default = module.exports;',
  '',
].join('\n');

const nodeStreams: Plugin = {
  name: 'orchard-node-streams',
  setup(b) {
    b.onResolve({ filter: /^readable-stream$/ }, async (a) => {
      // (were readable-stream in DEDUPE again, its look-up of the path would come back here: let it through.)
      if (a.pluginData === nodeStreams || a.pluginData === dedupe) return undefined;
      const r = await b.resolve(a.path, { kind: a.kind, importer: a.importer, resolveDir: a.resolveDir, pluginData: nodeStreams });
      const dir = /^(.*node_modules\/readable-stream)\//.exec(r.path)?.[1];
      const major = dir === undefined ? undefined : versionAt(dir)?.split('.')[0];
      if (major !== '3' && major !== '4')
        throw new Error(`readable-stream ${major ?? '?'} at ${r.path}: check NODE_STREAMS in scripts/build-agent.ts serves its importers`);
      return { path: 'readable-stream', namespace: 'orchard-node-streams' };
    });
    b.onLoad({ filter: /.*/, namespace: 'orchard-node-streams' }, () => ({ contents: NODE_STREAMS, loader: 'js' }));
  },
};

/**
 * Packages npm installed twice at the same version (nested under two parents because the hoisted
 * copy is another version): the bundle keeps the first copy listed and points imports of the others
 * at it, as a deduplicated install would. Only an identical version is merged;
 * scripts/build-agent.test.ts fails on any other duplicate. Empty since readable-stream 4.8.0 (under
 * both mqtt and bl, ≈ 0.12 MB of source and 0.3 MiB of heap twice), the one case, left the bundle
 * for Node's own streams (NODE_STREAMS above).
 */
export const DEDUPE: ReadonlyArray<{ name: string; copies: readonly string[] }> = [];

/** The version in `dir`/package.json, or undefined when there is no such package. */
function versionAt(dir: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

const dedupe: Plugin = {
  name: 'orchard-dedupe',
  setup(b) {
    for (const { name, copies } of DEDUPE) {
      const [keep, ...others] = copies.map((c) => realpathOr(join(REPO, c)));
      if (keep === undefined || versionAt(keep) === undefined) continue;
      const same = others.filter((o) => versionAt(o) === versionAt(keep));
      if (same.length === 0) continue;
      b.onResolve({ filter: new RegExp(`^${name}(/.*)?$`) }, async (a) => {
        if (a.pluginData === dedupe) return undefined;
        const r = await b.resolve(a.path, { kind: a.kind, importer: a.importer, resolveDir: a.resolveDir, pluginData: dedupe });
        const from = same.find((o) => r.path.startsWith(`${o}/`));
        return from === undefined ? undefined : { path: join(keep, relative(from, r.path)) };
      });
    }
  },
};

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

export function agentBuildOptions(version: string, outfile = AGENT_OUTFILE): BuildOptions & { metafile: true } {
  return {
    entryPoints: [AGENT_ENTRY],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Identifiers too (2026-12-03): local names (functions, classes, variables) become short ones,
    // which took 0.9 MiB of V8 heap and ≈ 3 MiB of anonymous memory off the agent at 10 pods
    // (docs/benchmarks.md "Third pass"): V8 keeps the source and every scope's names for the
    // process's life. Property and method names stay, and errors set their `name` explicitly, so
    // messages are unchanged; a stack trace names `Xe.reconcile` instead of `Agent.reconcile`.
    // The linked source map beside the file (with `names`) maps it back: put the map of the same
    // version beside the agent and run `node --enable-source-maps` (docs/agent.md "Memory").
    // `keepNames` would keep them, at a cost above the saving (measured: 9.21 MiB heap at load
    // against 8.79 without minifying and 8.32 minified).
    minifyWhitespace: true,
    minifySyntax: true,
    minifyIdentifiers: true,
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
    define: { ORCHARD_VERSION: JSON.stringify(version) },
    // CommonJS dependencies (mqtt's deps) call require(); an ESM
    // file has none, so give it one. The names are unusual so they cannot collide with bundled code.
    banner: {
      js: [
        "import { createRequire as __orchardCreateRequire } from 'node:module';",
        "import { fileURLToPath as __orchardFileURLToPath } from 'node:url';",
        "import { dirname as __orchardDirname } from 'node:path';",
        'const require = __orchardCreateRequire(import.meta.url);',
        'const __filename = __orchardFileURLToPath(import.meta.url);',
        'const __dirname = __orchardDirname(__filename);',
      ].join('\n'),
    },
    plugins: [stubs, httpViaRequire, zodEnglishOnly, zodNoParent, lazyRequires, nodeStreams, dedupe],
  };
}

const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/** The package directory of a node_modules input path (scoped or not), or undefined. */
function packageDirOf(input: string): string | undefined {
  const m = /^(.*?node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  return m?.[1];
}

/**
 * What must never be in the agent's graph: a native addon (a `.node` file, or a package with a
 * binding.gyp — better-sqlite3, cpu-features, ssh2's crypto), hub/ or cli/ code, and any import
 * left external other than Node's built-ins (the device has no node_modules to find it in).
 * `root` resolves metafile paths (relative to the working directory esbuild ran in).
 */
export function bundleViolations(meta: Metafile, root: string = REPO): string[] {
  const out: string[] = [];
  for (const input of Object.keys(meta.inputs)) {
    if (input.startsWith('orchard-stub:')) continue;
    if (/^(hub|cli)\//.test(input)) out.push(`${input}: hub/ and cli/ code must not reach the agent`);
    if (input.endsWith('.node')) out.push(`${input}: native addon`);
    const pkg = packageDirOf(input);
    if (pkg !== undefined && existsSync(join(root, pkg, 'binding.gyp'))) out.push(`${input}: from ${pkg}, a native addon package`);
    if (/node_modules\/(better-sqlite3|cpu-features|ssh2|bindings)\//.test(input)) out.push(`${input}: hub-only or native package`);
    // The agent speaks the Engine API itself (agent/runtime/engine-api.ts): dockerode and
    // docker-modem cost ≈ 1 MiB of its heap (issue 17) and must not come back through an import.
    if (/node_modules\/(dockerode|docker-modem)\//.test(input)) out.push(`${input}: dockerode is not part of the agent (agent/runtime/engine-api.ts)`);
  }
  for (const [file, output] of Object.entries(meta.outputs)) {
    for (const imp of output.imports) {
      if (imp.external && !BUILTINS.has(imp.path)) out.push(`${file}: imports ${imp.path} at run time (only node: built-ins may stay external)`);
    }
  }
  return [...new Set(out)];
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

export interface AgentBuild {
  outfile: string;
  version: string;
  bytes: number;
  gzipBytes: number;
  metafile: Metafile;
}

/** The bundle in memory (nothing written), with its metafile. */
export async function bundleAgent(version: string, outfile = AGENT_OUTFILE): Promise<BuildResult<BuildOptions & { metafile: true; write: false }>> {
  // Paths in the metafile are relative to the working directory: build from the repository root.
  return build({ ...agentBuildOptions(version, outfile), absWorkingDir: REPO, write: false });
}

/** Bundles the agent; throws (nothing written) when bundleViolations finds anything. */
export async function buildAgent(opts: { version?: string; outfile?: string } = {}): Promise<AgentBuild> {
  const version = opts.version ?? packageVersion();
  const outfile = opts.outfile ?? AGENT_OUTFILE;
  const result = await bundleAgent(version, outfile);
  const bad = bundleViolations(result.metafile);
  if (bad.length > 0) throw new Error(`the single-file agent must not contain:\n  ${bad.join('\n  ')}`);
  let code: Uint8Array | undefined;
  for (const f of result.outputFiles) {
    writeFileSync(f.path, f.contents, { mode: f.path.endsWith('.mjs') ? 0o755 : 0o644 });
    if (f.path === outfile) code = f.contents;
  }
  if (code === undefined) throw new Error(`esbuild wrote no ${outfile}`);
  writeFileSync(`${outfile}.meta.json`, JSON.stringify(result.metafile));
  return { outfile, version, bytes: code.byteLength, gzipBytes: gzipSync(code, { level: 9 }).byteLength, metafile: result.metafile };
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const version = flag(argv, '--version') ?? (process.env.ORCHARD_VERSION || undefined);
  const outfile = flag(argv, '--outfile');
  const r = await buildAgent({ ...(version === undefined ? {} : { version }), ...(outfile === undefined ? {} : { outfile: resolve(outfile) }) });
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(2)} MB`;
  const inputs = Object.keys(r.metafile.inputs).length;
  process.stdout.write(
    `built ${relative(process.cwd(), r.outfile) || r.outfile} (orchard-agent ${r.version}): ${mb(r.bytes)}, ${mb(r.gzipBytes)} gzipped, ${inputs} modules; ` +
      `${mb(statSync(`${r.outfile}.map`).size)} source map beside it\n`,
  );
  if (outfile === undefined) {
    const bytes = await buildLauncher();
    process.stdout.write(`built ${relative(process.cwd(), LAUNCHER_OUTFILE)}: ${(bytes / 1024).toFixed(0)} kB\n`);
  }
}
