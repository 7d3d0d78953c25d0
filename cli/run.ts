import { OrchardError } from '../protocol/errors.js';
import { GLOBAL_OPTIONS, asUsageError, flagBool, isUsageError, parseFlags } from './args.js';
import { HubClient } from './client.js';
import { resolveConnection, type Connection } from './config.js';
import type { Io } from './io.js';
import { applyCommand } from './commands/apply.js';
import type { CommandContext, CommandDef } from './commands/command.js';
import { deleteCommand } from './commands/delete.js';
import { describeCommand } from './commands/describe.js';
import { exposeCommand } from './commands/expose.js';
import { getCommand } from './commands/get.js';
import { loginCommand } from './commands/login.js';
import { nodeDeleteCommand } from './commands/node.js';
import { cordonCommand, drainCommand, labelCommand, taintCommand, uncordonCommand } from './commands/node-admin.js';
import { scaleCommand } from './commands/scale.js';
import { autoscaleCommand } from './commands/autoscale.js';
import { tokenCreateCommand, tokenListCommand } from './commands/token.js';
import { tokenRevokeCommand } from './commands/token-revoke.js';
import { versionCommand } from './commands/version.js';
import { topNodesCommand, topPodsCommand } from './commands/top.js';
import { ROLLOUT_COMMANDS } from './commands/rollout.js';
import { CONFIG_COMMANDS } from './commands/create-config.js';
import { logsCommand } from './commands/logs.js';
import { mqttCommand } from './commands/mqtt.js';
import { execCommand } from './commands/exec.js';
import { AGENT_UPGRADE_COMMANDS } from './commands/agent-upgrade.js';

/**
 * Dispatch for the `orchard` command. Exit codes: 0 success, 1 failure (the hub refused, the
 * hub is unreachable, a file is bad), 2 usage error (unknown command or flag, missing arg).
 */

export const COMMANDS: readonly CommandDef[] = [
  applyCommand,
  getCommand,
  describeCommand,
  deleteCommand,
  scaleCommand,
  autoscaleCommand,
  exposeCommand,
  tokenCreateCommand,
  tokenListCommand,
  tokenRevokeCommand,
  nodeDeleteCommand,
  cordonCommand,
  uncordonCommand,
  drainCommand,
  labelCommand,
  taintCommand,
  topNodesCommand,
  topPodsCommand,
  logsCommand,
  execCommand,
  mqttCommand,
  loginCommand,
  versionCommand,
  ...ROLLOUT_COMMANDS,
  ...CONFIG_COMMANDS,
  ...AGENT_UPGRADE_COMMANDS,
];

/** Commands that start long-running processes instead of talking to a hub. */
export type ProcessKind = 'hub' | 'agent';
export type Launcher = (kind: ProcessKind, argv: string[]) => Promise<void>;

const GROUPS = new Set(['token', 'node', 'rollout', 'create', 'secret', 'top', 'agent-version']);
const GLOBAL_VALUE_FLAGS = new Set(
  Object.entries(GLOBAL_OPTIONS)
    .filter(([, o]) => o.type === 'string')
    .map(([k]) => `--${k}`),
);

const GLOBAL_HELP = `Global flags:
  --server URL       hub address (env ORCHARD_SERVER, config; default https://127.0.0.1:8443)
  --token TOKEN      API token (env ORCHARD_TOKEN, config)
  --ca FILE          CA certificate that signed the hub's (config caFile/caPem)
  --timeout DURATION request timeout (default 30s)
  -h, --help         help for a command`;

export function mainHelp(): string {
  const rows: Array<[string, string]> = [
    ['hub', 'Run the hub (control plane)'],
    ['agent', 'Run the agent on a device'],
    ...COMMANDS.map((c): [string, string] => [c.name, c.summary]),
  ];
  const width = Math.max(...rows.map(([n]) => n.length)) + 3;
  return `orchard — a lightweight container orchestrator for Raspberry Pi-class fleets

Usage: orchard COMMAND [ARGS] [FLAGS]

Commands:
${rows.map(([n, s]) => `  ${n.padEnd(width)}${s}`).join('\n')}

${GLOBAL_HELP}

Config: ~/.orchard/config (JSON {server, token, caFile|caPem}); ORCHARD_CONFIG overrides the path.
Run 'orchard COMMAND --help' for a command's flags.
`;
}

export function commandHelp(cmd: CommandDef): string {
  return `${cmd.summary}\n\nUsage: ${cmd.usage}\n\n${GLOBAL_HELP}\n`;
}

/** Index of the first positional argument, skipping global flags and their values. */
function firstPositional(argv: readonly string[], from = 0): number {
  for (let i = from; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') return i + 1 < argv.length ? i + 1 : -1;
    if (!a.startsWith('-') || a === '-') return i;
    if (GLOBAL_VALUE_FLAGS.has(a)) i++;
  }
  return -1;
}

export async function runCli(argv: readonly string[], io: Io, launch?: Launcher): Promise<number> {
  let cmd: CommandDef | undefined;
  try {
    const at = firstPositional(argv);
    if (at < 0) {
      if (argv.includes('--version')) return await runCli(['version'], io);
      if (argv.length === 0 || argv.includes('--help') || argv.includes('-h')) {
        io.stdout.write(mainHelp());
        return argv.length === 0 ? 2 : 0;
      }
      throw new OrchardError('ERR_VALIDATION', 'missing command', { details: { usage: true } });
    }
    const word = argv[at] ?? '';
    const rest = [...argv.slice(0, at), ...argv.slice(at + 1)];

    if (word === 'hub' || word === 'agent') {
      if (launch === undefined) throw new OrchardError('ERR_INTERNAL', `'orchard ${word}' is not available here`);
      try {
        await launch(word, argv.slice(at + 1));
      } catch (err) {
        throw asUsageError(err) ?? err;
      }
      return 0;
    }
    if (word === 'help') {
      const topic = argv
        .slice(at + 1)
        .filter((a) => !a.startsWith('-'))
        .join(' ');
      const found = COMMANDS.find((c) => c.name === topic);
      io.stdout.write(found === undefined ? mainHelp() : commandHelp(found));
      return topic === '' || found !== undefined ? 0 : 2;
    }

    let name = word;
    let args = rest;
    if (GROUPS.has(word)) {
      const subAt = firstPositional(rest, at);
      const sub = subAt < 0 ? undefined : rest[subAt];
      const options = COMMANDS.filter((c) => c.name.startsWith(`${word} `)).map((c) => c.name.slice(word.length + 1));
      if (sub === undefined) {
        if (rest.includes('--help') || rest.includes('-h')) {
          io.stdout.write(
            COMMANDS.filter((c) => c.name.startsWith(`${word} `))
              .map(commandHelp)
              .join('\n'),
          );
          return 0;
        }
        throw new OrchardError('ERR_VALIDATION', `'orchard ${word}' needs a subcommand: ${options.join(', ')}`, { details: { usage: true } });
      }
      name = `${word} ${sub}`;
      args = [...rest.slice(0, subAt), ...rest.slice(subAt + 1)];
    }
    cmd = COMMANDS.find((c) => c.name === name);
    if (cmd === undefined) {
      throw new OrchardError('ERR_VALIDATION', `unknown command "${name}"`, { details: { usage: true } });
    }

    const { flags, positionals } = parseFlags(args, cmd.options);
    if (flagBool(flags, 'help')) {
      io.stdout.write(commandHelp(cmd));
      return 0;
    }
    let client: HubClient | undefined;
    let conn: Promise<Connection> | undefined;
    const connection = (): Promise<Connection> => (conn ??= resolveConnection(flags, io));
    const ctx: CommandContext = {
      io,
      flags,
      positionals,
      client: async () => (client ??= new HubClient(await connection())),
      connection,
    };
    return await cmd.run(ctx);
  } catch (err) {
    return reportError(err, io, cmd);
  }
}

/** Prints `error: …` (plus one line per field issue) and returns the exit code. */
export function reportError(err: unknown, io: Io, cmd?: CommandDef): number {
  if (isUsageError(err)) {
    const help = cmd === undefined ? "Run 'orchard --help' for usage." : `Run 'orchard ${cmd.name} --help' for usage.`;
    io.stderr.write(`error: ${err.message}\n${help}\n`);
    return 2;
  }
  if (OrchardError.is(err)) {
    let text = `error: ${err.message}\n`;
    for (const issue of err.details?.issues ?? []) text += `  - ${issue.path}: ${issue.message}\n`;
    if (err.code === 'ERR_UNAUTHENTICATED') text += "hint: pass --token, set ORCHARD_TOKEN, or run 'orchard login'\n";
    io.stderr.write(text);
    return 1;
  }
  io.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}
