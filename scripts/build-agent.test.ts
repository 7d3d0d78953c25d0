import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { describe, expect, it } from 'vitest';
import {
  ABSENT_OPTIONAL,
  AGENT_ENV,
  AGENT_V8_FLAGS,
  agentBuildOptions,
  bundleAgent,
  bundleViolations,
  REPO,
  zodEnglishOnly,
  zodNoParent,
} from './build-agent.js';

// The single-file agent (dist/orchard-agent.mjs) runs on devices with nothing but Node: its graph
// must hold no native addon, no hub/ or cli/ code (better-sqlite3, fastify, aedes are hub-only),
// and leave nothing but Node's built-ins to be found at run time.

describe('single-file agent bundle', () => {
  it('holds the agent and protocol, and nothing native, hub-only or left to node_modules', async () => {
    const r = await bundleAgent('9.9.9-test');
    const inputs = Object.keys(r.metafile.inputs);
    expect(inputs).toContain('agent/main.ts');
    expect(inputs).toContain('protocol/pod-spec.ts');
    expect(inputs).toContain('protocol/messages.ts');
    // The engine is spoken to by the agent's own client, not dockerode (issue 17: ≈ 1 MiB of heap).
    expect(inputs).toContain('agent/runtime/engine-api.ts');
    expect(inputs.filter((i) => /node_modules\/(dockerode|docker-modem|ssh2|tar-fs|tar-stream)\//.test(i))).toEqual([]);
    expect(inputs.filter((i) => /^(hub|cli)\//.test(i) || /better-sqlite3|cpu-features|node_modules\/ssh2\/|\.node$/.test(i))).toEqual([]);
    expect(bundleViolations(r.metafile)).toEqual([]);
    const code = r.outputFiles.find((f) => f.path.endsWith('.mjs'))?.text ?? '';
    // The version is baked in, and the optional addons are stubs, not run-time requires.
    expect(code).toContain('"9.9.9-test"');
    expect(code).not.toMatch(/\brequire\(["'](ssh2|cpu-features|bufferutil|utf-8-validate)["']\)/);
    expect(code).toContain('ssh:// Docker hosts are not supported by the Orchard agent');
    // No ES import of node:http: on Node 22 it compiles WebAssembly, which --jitless (AGENT_V8_FLAGS) does not have.
    expect(code).not.toMatch(/\bfrom\s*["'](node:)?(http|tls)["']/);
    // …but a require() of it, through esbuild's require shim (a short name once identifiers are minified).
    expect(inputs).toContain('orchard-cjs-builtin:node:http');
    expect(inputs).toContain('orchard-cjs-builtin:node:tls');
    expect(code).toMatch(/\b[\w$]+\(["']node:http["']\)/);
  }, 60_000);

  it('builds only the schemas the agent uses: no stored objects, manifests, API operations or agent reports, and zod in English only', async () => {
    // zod schemas are built when their module loads, and esbuild keeps every `z.object(…)` call
    // of a module it includes: the hub's schemas would cost every device heap (docs/agent.md
    // "Memory"). Each of these modules must stay out of the agent's graph.
    const r = await bundleAgent('9.9.9-test');
    const inputs = Object.keys(r.metafile.inputs);
    for (const hubOnly of [
      'protocol/objects.ts',
      'protocol/manifest.ts',
      'protocol/api.ts',
      'protocol/reports.ts',
      'protocol/metrics.ts',
      'protocol/json-schema.ts',
    ]) {
      expect(inputs, hubOnly).not.toContain(hubOnly);
    }
    // (The stand-in for locales/index.js is an input of its own namespace, orchard-zod-locales:.)
    const locales = inputs.filter((i) => !i.startsWith('orchard-') && /node_modules\/zod\/v4\/locales\/[^/]+\.js$/.test(i));
    expect(locales.map((i) => i.replace(/^.*\//, ''))).toEqual(['en.js']);
  }, 60_000);

  it('holds one copy of each package version (DEDUPE merges what npm installed twice)', async () => {
    const r = await bundleAgent('9.9.9-test');
    const files = Object.keys(r.metafile.inputs).filter((i) => !i.startsWith('orchard-'));
    const dirs = new Set(files.flatMap((i) => /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(i)?.[1] ?? []));
    const byVersion = new Map<string, string[]>();
    for (const dir of dirs) {
      const pkg = JSON.parse(readFileSync(join(REPO, dir, 'package.json'), 'utf8')) as { name: string; version: string };
      const key = `${pkg.name}@${pkg.version}`;
      byVersion.set(key, [...(byVersion.get(key) ?? []), dir]);
    }
    expect([...byVersion].filter(([, copies]) => copies.length > 1)).toEqual([]);
  }, 60_000);

  it('zod bundled in English only still says what is wrong, in English', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-zod-en-'));
    try {
      const outfile = join(dir, 'zod-en.mjs');
      await build({
        stdin: {
          contents:
            "import { z } from 'zod'; const r = z.object({ n: z.number() }).safeParse({ n: 'x' }); console.log(JSON.stringify({ locales: Object.keys(z.locales), message: r.error?.issues[0]?.message }));",
          resolveDir: REPO,
          loader: 'ts',
        },
        bundle: true,
        platform: 'node',
        format: 'esm',
        outfile,
        logLevel: 'warning',
        plugins: [zodEnglishOnly],
      });
      const out = JSON.parse(execFileSync(process.execPath, [outfile], { encoding: 'utf8' })) as { locales: string[]; message: string };
      expect(out.locales).toEqual(['en']);
      expect(out.message).toBe('Invalid input: expected number, received string');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('zod in the bundle keeps no parent link from a refined schema to the one it came from (ZOD_NO_PARENT), and parses the same', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-zod-parent-'));
    try {
      const outfile = join(dir, 'zod-parent.mjs');
      const contents =
        "import { z } from 'zod'; const s = z.string().min(1).max(3).regex(/^[a-z]+$/); const n = z.number().int().min(0);" +
        ' const bad = s.safeParse("abcd").error?.issues[0]?.message; const neg = n.safeParse(-1).error?.issues[0]?.message;' +
        ' console.log(JSON.stringify({ parents: [s._zod.parent, n._zod.parent].filter(Boolean).length, ok: s.safeParse("ab").success && n.safeParse(3).success, bad, neg }));';
      await build({
        stdin: { contents, resolveDir: REPO, loader: 'ts' },
        bundle: true,
        platform: 'node',
        format: 'esm',
        outfile,
        logLevel: 'warning',
        plugins: [zodEnglishOnly, zodNoParent],
      });
      const out = JSON.parse(execFileSync(process.execPath, [outfile], { encoding: 'utf8' })) as { parents: number; ok: boolean; bad: string; neg: string };
      expect(out).toEqual({ parents: 0, ok: true, bad: 'Too big: expected string to have <=3 characters', neg: 'Too small: expected number to be >=0' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('runs with the unit\'s memory settings (AGENT_V8_FLAGS, AGENT_ENV), which keep what docs/agent.md "Memory" measured', async () => {
    // Each of these was measured (docs/benchmarks.md "Agent memory budget"); dropping one costs
    // every device memory: no snapshot 2.7 MiB of file-backed RSS (and the 5 MiB of malloc heap
    // that stayed stuck after 11 of 20 loads of the bundle with it), no ICU time zones 0.7 MiB,
    // --jitless ≈ 5 MiB of the compilers' pages; the mmap threshold the same 5 MiB of malloc heap,
    // which came back without the snapshot in 2 of 11 starts of the fifth pass.
    expect(AGENT_V8_FLAGS).toEqual(expect.arrayContaining(['--max-semi-space-size=1', '--jitless', '--no-node-snapshot', '--no-icu-timezone-data']));
    expect(AGENT_ENV).toMatchObject({ MALLOC_ARENA_MAX: '1', MALLOC_TRIM_THRESHOLD_: '131072', MALLOC_MMAP_THRESHOLD_: '32768' });
    // …and this Node accepts them all and runs the agent with them (an unknown flag is fatal).
    const dir = mkdtempSync(join(tmpdir(), 'orchard-flags-'));
    try {
      const r = await bundleAgent('9.9.9-test');
      const file = join(dir, 'orchard-agent.mjs');
      writeFileSync(file, r.outputFiles.find((f) => f.path.endsWith('.mjs'))?.text ?? '');
      const out = execFileSync(process.execPath, [...AGENT_V8_FLAGS, file, '--version'], { encoding: 'utf8', env: { ...process.env, ...AGENT_ENV } });
      expect(out).toContain('orchard-agent 9.9.9-test');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('the modules LAZY_REQUIRES defers still load when used: mqtt over a SOCKS proxy and over ws://', async () => {
    // Each fake server records what the client's first bytes were: a SOCKS5 greeting, an HTTP upgrade.
    const script = `
import net from 'node:net';
import mqtt from 'mqtt';
const first = (name) => new Promise((resolve) => {
  const server = net.createServer((s) => s.once('data', (d) => { resolve([name, d]); s.destroy(); server.close(); })).listen(0, '127.0.0.1', () => ports[name] = server.address().port);
  servers.push(server);
});
const ports = {}; const servers = [];
const got = [first('socks'), first('ws')];
await new Promise((r) => setTimeout(r, 100));
const opts = { reconnectPeriod: 0, connectTimeout: 5000 };
const a = mqtt.connect('mqtt://127.0.0.1:1', { ...opts, socksProxy: 'socks5://127.0.0.1:' + ports.socks });
const b = mqtt.connect('ws://127.0.0.1:' + ports.ws, opts);
for (const c of [a, b]) c.on('error', () => {});
const out = Object.fromEntries((await Promise.all(got)).map(([n, d]) => [n, n === 'socks' ? d[0] : d.toString('latin1').split('\\r\\n')[0]]));
console.log(JSON.stringify(out));
a.end(true); b.end(true);
process.exit(0);
`;
    const dir = mkdtempSync(join(tmpdir(), 'orchard-lazy-'));
    try {
      const outfile = join(dir, 'lazy.mjs');
      const o = agentBuildOptions('9.9.9-test', outfile);
      await build({ ...o, entryPoints: undefined, stdin: { contents: script, resolveDir: REPO, loader: 'js' }, sourcemap: false, absWorkingDir: REPO });
      const out = JSON.parse(execFileSync(process.execPath, [outfile], { encoding: 'utf8', timeout: 30_000 })) as { socks: number; ws: string };
      expect(out.socks).toBe(5);
      expect(out.ws).toMatch(/^GET \/ HTTP\/1\.1$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("readable-stream is Node's own stream module (NODE_STREAMS): no copy in the bundle, and bl's BufferList still streams", async () => {
    const r = await bundleAgent('9.9.9-test');
    const inputs = Object.keys(r.metafile.inputs);
    expect(inputs.filter((i) => /node_modules\/(.*\/)?(readable-stream|event-target-shim|abort-controller|string_decoder)\//.test(i))).toEqual([]);
    expect(inputs).toContain('orchard-node-streams:readable-stream');
    // mqtt.js and bl (4.x) get Node's classes; bl's BufferList (mqtt.js parses packets with it)
    // is a Duplex that collects what is written to it: pipe through it.
    const script = `
import stream from 'node:stream';
import { Writable } from 'readable-stream';
import BufferList from 'bl';
import 'mqtt';
const bl = new BufferList();
const same = Writable === stream.Writable && bl instanceof stream.Duplex;
stream.Readable.from([Buffer.from('pi'), Buffer.from('ng')]).pipe(bl);
await new Promise((r) => bl.on('finish', r));
console.log(JSON.stringify({ same, duplex: BufferList.prototype instanceof stream.Duplex, echoed: bl.toString() }));
`;
    const dir = mkdtempSync(join(tmpdir(), 'orchard-streams-'));
    try {
      const outfile = join(dir, 'streams.mjs');
      const o = agentBuildOptions('9.9.9-test', outfile);
      const built = await build({
        ...o,
        entryPoints: undefined,
        stdin: { contents: script, resolveDir: REPO, loader: 'js' },
        sourcemap: false,
        absWorkingDir: REPO,
      });
      expect(Object.keys(built.metafile.inputs).filter((i) => /\/readable-stream\//.test(i))).toEqual([]);
      const out = JSON.parse(execFileSync(process.execPath, [outfile], { encoding: 'utf8', timeout: 30_000 })) as {
        same: boolean;
        duplex: boolean;
        echoed: string;
      };
      expect(out).toEqual({ same: true, duplex: true, echoed: 'ping' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('names each thing that must not be in the graph (so the check above can fail)', () => {
    const meta: Metafile = {
      inputs: {
        'agent/main.ts': { bytes: 1, imports: [] },
        'hub/store/sqlite-store.ts': { bytes: 1, imports: [] },
        'cli/run.ts': { bytes: 1, imports: [] },
        'node_modules/better-sqlite3/lib/index.js': { bytes: 1, imports: [] },
        'node_modules/cpu-features/build/Release/cpufeatures.node': { bytes: 1, imports: [] },
        'orchard-stub:bufferutil': { bytes: 1, imports: [] },
        'node_modules/dockerode/lib/docker.js': { bytes: 1, imports: [] },
      },
      outputs: {
        'dist/orchard-agent.mjs': {
          bytes: 1,
          inputs: {},
          imports: [
            { path: 'node:fs', kind: 'import-statement', external: true },
            { path: 'zlib', kind: 'require-call', external: true },
            { path: 'ssh2', kind: 'require-call', external: true },
          ],
          exports: [],
        },
      },
    };
    const bad = bundleViolations(meta).join('\n');
    expect(bad).toMatch(/hub\/store\/sqlite-store\.ts: hub\/ and cli\//);
    expect(bad).toMatch(/cli\/run\.ts: hub\/ and cli\//);
    expect(bad).toMatch(/better-sqlite3\/lib\/index\.js: from node_modules\/better-sqlite3, a native addon package/);
    expect(bad).toMatch(/cpufeatures\.node: native addon/);
    expect(bad).toMatch(/imports ssh2 at run time/);
    expect(bad).toMatch(/dockerode\/lib\/docker\.js: dockerode is not part of the agent/);
    expect(bad).not.toMatch(/agent\/main\.ts|node:fs|zlib|orchard-stub/);
    expect(ABSENT_OPTIONAL).toContain('bufferutil');
  });
});
