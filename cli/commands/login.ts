import { DEFAULT_SERVER, checkServerFlag, configPath, loadConfig, readCaFile, saveConfig, type CliConfig } from '../config.js';
import { flagString, usageError } from '../args.js';
import type { CommandDef } from './command.js';

export const loginCommand: CommandDef = {
  name: 'login',
  summary: 'Save the hub address, API token and CA to ~/.orchard/config',
  usage: `orchard login --server URL --token TOKEN [--ca FILE]

Writes the config file (mode 0600; ORCHARD_CONFIG overrides its path). The CA certificate
is stored inline, so the file it came from may move. Other keys in the file are kept.`,
  options: {},
  async run(ctx) {
    if (ctx.positionals.length > 0) throw usageError(`unexpected argument "${ctx.positionals[0] ?? ''}"`);
    const token = flagString(ctx.flags, 'token');
    if (token === undefined || token === '') throw usageError('--token TOKEN is required');
    const serverFlag = flagString(ctx.flags, 'server');
    const path = configPath(ctx.io);
    if (serverFlag !== undefined) checkServerFlag(serverFlag);
    // A broken existing file is what login replaces, so it must not stop login.
    const existing = await loadConfig(path).catch((): CliConfig => ({}));
    const server = serverFlag ?? existing.server ?? DEFAULT_SERVER;
    const next: CliConfig = { ...existing, server, token };
    const caFile = flagString(ctx.flags, 'ca');
    if (caFile !== undefined) {
      next.caPem = await readCaFile(caFile);
      delete next.caFile;
    }
    await saveConfig(path, next);
    ctx.io.stdout.write(`Saved ${path} (server ${server})\n`);
    return 0;
  },
};
