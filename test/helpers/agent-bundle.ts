import { buildAgent, buildLauncher } from '../../scripts/build-agent.js';

/**
 * Versions A and B of the single-file agent and the launcher for upgrade tests, built by the very
 * functions `npm run build` uses (scripts/build-agent.ts: same entry, stubs, banner and checks),
 * with a chosen ORCHARD_VERSION and output path, so a test can hold two versions at once. Each
 * agent file gets its source map and metafile beside it, as dist/orchard-agent.mjs does.
 */

export async function buildAgentFile(outfile: string, version: string): Promise<void> {
  await buildAgent({ version, outfile });
}

export async function buildLauncherFile(outfile: string): Promise<void> {
  await buildLauncher(outfile);
}
