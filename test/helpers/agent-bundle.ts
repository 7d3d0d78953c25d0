import { build, type Plugin } from 'esbuild';
import { REPO } from './procs.js';

/**
 * Stand-ins for the single-file agent and the launcher, built with esbuild the way `npm run build`
 * builds dist/orchard-agent.mjs (same externals and banner), but with a chosen ORCHARD_VERSION, so a
 * test can hold versions A and B of the agent at once.
 */

const EXTERNAL = ['ssh2', 'cpu-features', 'better-sqlite3'];

/**
 * The files run from a temporary directory with no node_modules near them, where an external
 * `require('ssh2')` (docker-modem loads it eagerly for ssh:// engines) would throw at start: those
 * optional addons become empty modules here. dist/orchard-agent.mjs must exclude them cleanly too
 * (that build is another part of issue 17); this keeps the stand-in runnable until it lands.
 */
const emptyOptionalAddons: Plugin = {
  name: 'empty-optional-addons',
  setup(b) {
    b.onResolve({ filter: /^(ssh2|cpu-features)$/ }, (args) => ({ path: args.path, namespace: 'empty-addon' }));
    b.onLoad({ filter: /.*/, namespace: 'empty-addon' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
  },
};
const BANNER = "import{createRequire}from'module';const require=createRequire(import.meta.url);";

export async function buildAgentFile(outfile: string, version: string): Promise<void> {
  await build({
    stdin: {
      contents: [
        "import { runAgent } from './agent/main.ts';",
        'runAgent(process.argv.slice(2)).then(',
        '  () => process.exit(0),',
        '  (err) => { process.stderr.write(`${err instanceof Error ? err.message : String(err)}\\n`); process.exit(1); },',
        ');',
      ].join('\n'),
      resolveDir: REPO,
      loader: 'ts',
      sourcefile: 'agent-entry.ts',
    },
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile,
    external: EXTERNAL,
    plugins: [emptyOptionalAddons],
    banner: { js: BANNER },
    define: { ORCHARD_VERSION: JSON.stringify(version) },
    logLevel: 'error',
  });
}

export async function buildLauncherFile(outfile: string): Promise<void> {
  await build({
    entryPoints: [`${REPO}/agent/launcher-main.ts`],
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile,
    external: EXTERNAL,
    banner: { js: BANNER },
    logLevel: 'error',
  });
}
