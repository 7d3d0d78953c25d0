#!/usr/bin/env node
import { OrchardError } from '../protocol/errors.js';
import { processIo } from './io.js';
import { runCli, type ProcessKind } from './run.js';

/**
 * Entry point of the `orchard` binary. `orchard hub` and `orchard agent` start the long-running
 * processes; every other command is a client of the hub's HTTP API (see run.ts).
 */

// Each process is loaded only when asked for, through a literal dynamic import: TypeScript,
// the import checker (scripts/check-imports.ts allows exactly these two) and bundlers see the
// edge, while an agent-only device, where the hub's dependencies (fastify, aedes,
// better-sqlite3) may be absent, never loads hub code unless the user runs `orchard hub`.
async function loadProcess(kind: ProcessKind): Promise<(argv: string[]) => Promise<void>> {
  try {
    return kind === 'hub' ? (await import('../hub/main.js')).runHub : (await import('../agent/main.js')).runAgent;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
      throw new OrchardError('ERR_INTERNAL', `'orchard ${kind}' is not installed in this build: ${(err as Error).message}`, { cause: err });
    }
    throw err;
  }
}

async function launch(kind: ProcessKind, argv: string[]): Promise<void> {
  const run = await loadProcess(kind);
  await run(argv);
}

process.exitCode = await runCli(process.argv.slice(2), processIo(), launch);
