import type { Flags, OptionSpec } from '../args.js';
import type { HubClient } from '../client.js';
import type { Connection } from '../config.js';
import type { Io } from '../io.js';

/**
 * The shape of one CLI command. `run` writes to `ctx.io` and returns the exit code, or throws
 * an OrchardError (exit 1; a usage error exits 2); it never calls process.exit, so tests run
 * commands in-process.
 */
export interface CommandContext {
  io: Io;
  flags: Flags;
  positionals: string[];
  /** Resolves flags, environment and config into a client on first use. */
  client(): Promise<HubClient>;
  /** The same resolution, as data (token, CA, timeout): for commands that talk to the hub another way (`orchard mqtt`). */
  connection(): Promise<Connection>;
}

export interface CommandDef {
  /** `get`, or `token create` for a subcommand. */
  name: string;
  summary: string;
  /** Help text after the `Usage:` line, without the global flags. */
  usage: string;
  options: OptionSpec;
  run(ctx: CommandContext): Promise<number>;
}
