import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandDef } from './command.js';

/**
 * The package version, read from the nearest package.json named "orchard". Searching upward
 * works both from source (cli/commands) and from the build (dist/cli/commands).
 */
export async function packageVersion(): Promise<string> {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'orchard' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // No package.json here; keep climbing.
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

export const versionCommand: CommandDef = {
  name: 'version',
  summary: 'Print the orchard version',
  usage: 'orchard version',
  options: {},
  async run(ctx) {
    ctx.io.stdout.write(`orchard ${await packageVersion()} (node ${process.version}, ${process.platform}/${process.arch})\n`);
    return 0;
  },
};
