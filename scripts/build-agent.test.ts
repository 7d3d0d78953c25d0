import type { Metafile } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { ABSENT_OPTIONAL, bundleAgent, bundleViolations } from './build-agent.js';

// The single-file agent (dist/orchard-agent.mjs) runs on devices with nothing but Node: its graph
// must hold no native addon, no hub/ or cli/ code (better-sqlite3, fastify, aedes are hub-only),
// and leave nothing but Node's built-ins to be found at run time.

describe('single-file agent bundle', () => {
  it('holds the agent and protocol, and nothing native, hub-only or left to node_modules', async () => {
    const r = await bundleAgent('9.9.9-test');
    const inputs = Object.keys(r.metafile.inputs);
    expect(inputs).toContain('agent/main.ts');
    expect(inputs).toContain('protocol/objects.ts');
    expect(inputs.some((i) => i.includes('node_modules/dockerode/'))).toBe(true);
    expect(inputs.filter((i) => /^(hub|cli)\//.test(i) || /better-sqlite3|cpu-features|node_modules\/ssh2\/|\.node$/.test(i))).toEqual([]);
    expect(bundleViolations(r.metafile)).toEqual([]);
    const code = r.outputFiles.find((f) => f.path.endsWith('.mjs'))?.text ?? '';
    // The version is baked in, and the optional addons are stubs, not run-time requires.
    expect(code).toContain('"9.9.9-test"');
    expect(code).not.toMatch(/\brequire\(["'](ssh2|cpu-features|bufferutil|utf-8-validate)["']\)/);
    expect(code).toContain('ssh:// Docker hosts are not supported by the single-file Orchard agent');
    // No ES import of node:http: on Node 22 it compiles WebAssembly, which --jitless (AGENT_V8_FLAGS) does not have.
    expect(code).not.toMatch(/\bfrom\s*["'](node:)?http["']/);
    expect(code).toMatch(/require\(["']node:http["']\)/);
  }, 60_000);

  it('names each thing that must not be in the graph (so the check above can fail)', () => {
    const meta: Metafile = {
      inputs: {
        'agent/main.ts': { bytes: 1, imports: [] },
        'hub/store/sqlite-store.ts': { bytes: 1, imports: [] },
        'cli/run.ts': { bytes: 1, imports: [] },
        'node_modules/better-sqlite3/lib/index.js': { bytes: 1, imports: [] },
        'node_modules/cpu-features/build/Release/cpufeatures.node': { bytes: 1, imports: [] },
        'orchard-stub:ssh2': { bytes: 1, imports: [] },
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
    expect(bad).not.toMatch(/agent\/main\.ts|node:fs|zlib|orchard-stub/);
    expect(ABSENT_OPTIONAL).toContain('bufferutil');
  });
});
