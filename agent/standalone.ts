#!/usr/bin/env node
import { OrchardError } from '../protocol/errors.js';
import { AGENT_USAGE, runAgent } from './main.js';
import { AGENT_VERSION, agentRuntime } from './version.js';

/**
 * Entry point of the single-file agent, dist/orchard-agent.mjs (scripts/build-agent.ts bundles
 * it with everything it imports): `node orchard-agent.mjs [the flags of orchard agent]`. Only
 * Node is needed on the device: no node_modules, no TypeScript, no hub or CLI code.
 */

const USAGE = AGENT_USAGE.replace('usage: orchard agent', 'usage: node orchard-agent.mjs');

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--version')) {
    const rt = agentRuntime();
    process.stdout.write(`orchard-agent ${AGENT_VERSION} (node ${rt.nodeVersion}, ${rt.agentPlatform})\n`);
    return 0;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  try {
    await runAgent(argv);
    return 0;
  } catch (err) {
    // The same shape as `orchard agent`'s errors (cli/run.ts reportError): exit 2 for bad flags.
    const usage = OrchardError.is(err) && err.code === 'ERR_VALIDATION';
    let text = `error: ${err instanceof Error ? err.message : String(err)}\n`;
    if (OrchardError.is(err)) for (const issue of err.details?.issues ?? []) text += `  - ${issue.path}: ${issue.message}\n`;
    process.stderr.write(text.replaceAll('usage: orchard agent', 'usage: node orchard-agent.mjs'));
    return usage ? 2 : 1;
  }
}

// Not a top-level await: a module suspended in one stays alive with its whole top-level function
// (in the bundle, every module's top-level code: ≈ 0.4 MiB of bytecode and registers) for the
// agent's life. docs/agent.md "Memory".
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
