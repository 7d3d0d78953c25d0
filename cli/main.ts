#!/usr/bin/env node
import { OrchardError } from '../protocol/errors.js';
import { processIo } from './io.js';
import { runCli, type ProcessKind } from './run.js';

/**
 * Entry point of the `orchard` binary. `orchard hub` and `orchard agent` start the long-running
 * processes; every other command is a client of the hub's HTTP API (see run.ts).
 */

// The specifiers live in variables on purpose: TypeScript and bundlers then do not follow them,
// so the CLI never statically imports hub/ or agent/ (the folder rule), and an agent-only
// device — where the hub's dependencies (fastify, aedes, better-sqlite3) may be absent —
// never loads hub code unless the user actually runs `orchard hub`.
const PROCESS_MODULES: Record<ProcessKind, { specifier: string; entry: 'runHub' | 'runAgent' }> = {
  hub: { specifier: '../hub/main.js', entry: 'runHub' },
  agent: { specifier: '../agent/main.js', entry: 'runAgent' },
};

async function launch(kind: ProcessKind, argv: string[]): Promise<void> {
  const { specifier, entry } = PROCESS_MODULES[kind];
  let mod: Record<string, unknown>;
  try {
    mod = (await import(new URL(specifier, import.meta.url).href)) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
      throw new OrchardError('ERR_INTERNAL', `'orchard ${kind}' is not installed in this build: ${(err as Error).message}`, { cause: err });
    }
    throw err;
  }
  const run = mod[entry];
  if (typeof run !== 'function') throw new OrchardError('ERR_INTERNAL', `${specifier} does not export ${entry}()`);
  await (run as (argv: string[]) => Promise<void>)(argv);
}

process.exitCode = await runCli(process.argv.slice(2), processIo(), launch);
