import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The agent's version. The single-file build (scripts/build-agent.ts) replaces ORCHARD_VERSION
 * with a string literal (the package.json version unless the build was given another); from
 * source or dist/ it is not defined, and the nearest package.json named "orchard" gives it.
 */

// Defined by esbuild at build time only; `typeof` keeps the unbundled agent from a ReferenceError.
declare const ORCHARD_VERSION: string | undefined;

function packageJsonVersion(): string {
  try {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (let i = 0; i < 6; i++) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
        if (pkg.name === 'orchard' && typeof pkg.version === 'string') return pkg.version;
      } catch {
        // No package.json here; keep climbing.
      }
      dir = dirname(dir);
    }
  } catch {
    // import.meta.url is not a file: URL (never in Orchard's builds).
  }
  return 'unknown';
}

export const AGENT_VERSION: string = typeof ORCHARD_VERSION === 'string' ? ORCHARD_VERSION : packageJsonVersion();

/** The agent process's own runtime, reported in NodeInfo: it may differ from the engine's arch (an arm agent under qemu on x86). */
export function agentRuntime(): { agentPlatform: string; nodeVersion: string } {
  return { agentPlatform: `${process.platform}/${process.arch}`, nodeVersion: process.versions.node };
}
