import { spawn } from 'node:child_process';
import { isAbsolute, resolve } from 'node:path';
import { consoleLogger, systemClock } from './clock.js';
import { Launcher } from './upgrade/launcher.js';
import { LAUNCHER_ENV } from './upgrade/launcher-state.js';

/**
 * `orchard-agent-launcher`: what systemd runs on a device (docs/agent.md "Upgrades").
 *
 *   node orchard-agent-launcher.mjs --agent /usr/local/lib/orchard/orchard-agent.mjs -- [orchard agent flags]
 *
 * Starts the agent file with this Node (and this Node's flags) as its child (an IPC channel open, so the agent can say it
 * reported in and notices when the launcher is gone), swaps in a staged upgrade when the agent
 * exits for one, and rolls back by itself when the new agent does not report in by its deadline.
 * SIGTERM/SIGINT are forwarded to the agent (which leaves the workloads running) and end the launcher.
 */

export const LAUNCHER_USAGE = `usage: orchard-agent-launcher --agent FILE [--kill-grace SECONDS] -- [orchard agent flags]
  --agent FILE         the agent file to run (a single-file agent, e.g. /usr/local/lib/orchard/orchard-agent.mjs);
                       FILE.next, FILE.previous and FILE.state.json live beside it (the directory must be writable)
  --kill-grace S       seconds between SIGTERM and SIGKILL when stopping the agent (default 15)`;

export interface LauncherArgs {
  agentFile: string;
  killGraceMs: number;
  agentArgs: string[];
}

export function parseLauncherArgs(argv: readonly string[]): LauncherArgs {
  const sep = argv.indexOf('--');
  const own = sep === -1 ? argv : argv.slice(0, sep);
  const agentArgs = sep === -1 ? [] : argv.slice(sep + 1);
  let agentFile: string | undefined;
  let killGraceMs = 15_000;
  for (let i = 0; i < own.length; i++) {
    const a = own[i];
    if (a === '--agent') agentFile = own[++i];
    else if (a === '--kill-grace') {
      const s = Number(own[++i]);
      if (!Number.isFinite(s) || s < 0) throw new Error(`--kill-grace must be a number of seconds\n${LAUNCHER_USAGE}`);
      killGraceMs = s * 1000;
    } else throw new Error(`unknown flag ${JSON.stringify(a)}\n${LAUNCHER_USAGE}`);
  }
  if (agentFile === undefined || agentFile === '') throw new Error(`--agent FILE is required\n${LAUNCHER_USAGE}`);
  return { agentFile: isAbsolute(agentFile) ? agentFile : resolve(agentFile), killGraceMs, agentArgs };
}

export async function runLauncher(argv: readonly string[]): Promise<void> {
  const args = parseLauncherArgs(argv);
  const logger = consoleLogger({ component: 'launcher' });
  const launcher = new Launcher({
    agentFile: args.agentFile,
    clock: systemClock,
    logger,
    killGraceMs: args.killGraceMs,
    spawn: (file, events) => {
      // The launcher's own Node flags go to the agent too: the unit sets the small-device V8 flags
      // once, on the launcher's command line (scripts/install-agent.sh, docs/agent.md "Memory").
      const child = spawn(process.execPath, [...process.execArgv, file, ...args.agentArgs], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        env: { ...process.env, [LAUNCHER_ENV.agentFile]: file },
      });
      child.on('message', (m) => events.onMessage(m));
      child.on('exit', (code, signal) => events.onExit(code, signal));
      child.on('error', (err) => logger.error('cannot start the agent', { error: err.message }));
      return { kill: (sig) => void child.kill(sig) };
    },
  });
  const done = new Promise<void>((resolveDone) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      logger.info('stopping (workloads keep running)', { signal: sig });
      void launcher.stop(sig).then(resolveDone);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  // The clock's timers are unref'd: between a child's exit and its restart nothing else keeps us alive.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  try {
    await launcher.start();
    await done;
  } finally {
    clearInterval(keepAlive);
  }
}

// The launcher bundle's entry: run when executed, not when imported (tests import parseLauncherArgs).
if (process.argv[1] !== undefined && /orchard-agent-launcher(\.m?js)?$/.test(process.argv[1])) {
  runLauncher(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  });
}
