/**
 * `orchard agent` as its own process — the real agent main (flags, join, hub list, link) — on an
 * in-memory container engine, for integration tests where the engine is not the subject.
 * Run with tsx: `node --import <tsx loader> test/helpers/memory-agent-process.ts --hub … --no-services`.
 */
import { runAgent } from '../../agent/main.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';

const never = (): never => {
  throw new Error('services are off in memory-agent-process (pass --no-services)');
};
await runAgent(process.argv.slice(2), { checkCidrFree: never, createDataPlane: never, runtime: new MemoryRuntime() });
