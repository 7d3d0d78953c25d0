import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { OrchardError, validationError } from '../protocol/errors.js';
import { flagString, usageError, requireDuration, type Flags } from './args.js';
import type { Io } from './io.js';

/**
 * Where the hub is and how to authenticate. Precedence for each field: flag, then
 * environment, then the config file, then the default.
 */

export const DEFAULT_SERVER = 'https://127.0.0.1:8443';
export const DEFAULT_TIMEOUT_MS = 30_000;

const HttpUrlSchema = z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' });
/**
 * One hub URL, or several comma-separated (the hubs of an etcd group, docs/ha.md): the client tries
 * them in order and moves on when one does not answer or answers ERR_NOT_LEADER.
 */
const ServerListSchema = z
  .string()
  .transform((s) => splitServers(s))
  .pipe(z.array(HttpUrlSchema).min(1, 'must name at least one URL').max(16));

/** `https://a:8443, https://b:8443` → each URL. */
export function splitServers(text: string): string[] {
  return text
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
}

export const CliConfigSchema = z.object({
  /** One URL or several, comma-separated (an etcd hub group). */
  server: z
    .string()
    .refine((v) => ServerListSchema.safeParse(v).success, 'must be an http:// or https:// URL, or several comma-separated')
    .optional(),
  token: z.string().min(1, 'must not be empty').optional(),
  /** Path of the hub's CA certificate; relative paths are relative to the config file. */
  caFile: z.string().min(1).optional(),
  /** The hub's CA certificate inline; `orchard login --ca` stores it here so the file may move. */
  caPem: z.string().min(1).optional(),
});
export type CliConfig = z.infer<typeof CliConfigSchema>;

export interface Connection {
  /** The first hub URL (messages name it). */
  server: string;
  /** Every hub URL to try, in order (`server` first); absent = `server` only. */
  servers?: string[];
  token?: string;
  caPem?: string;
  timeoutMs: number;
}

export function configPath(io: Pick<Io, 'env' | 'homeDir'>): string {
  const override = io.env['ORCHARD_CONFIG'];
  return override !== undefined && override !== '' ? resolve(override) : join(io.homeDir, '.orchard', 'config');
}

/** The config file, or `{}` when there is none. A malformed file is an error, never ignored. */
export async function loadConfig(path: string): Promise<CliConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw OrchardError.from(err);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new OrchardError('ERR_VALIDATION', `config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const r = CliConfigSchema.safeParse(raw);
  if (!r.success) throw validationError(r.error, `config file ${path}`);
  return r.data;
}

/** Writes the config readable by the owner only: it holds a bearer token. */
export async function saveConfig(path: string, config: CliConfig): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  // mode on writeFile applies only when the file is created; tighten an existing one too.
  await chmod(path, 0o600);
}

export async function readCaFile(path: string): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err) {
    throw new OrchardError('ERR_VALIDATION', `cannot read CA file ${path}: ${(err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new OrchardError('ERR_VALIDATION', `CA file ${path} holds no PEM certificate`);
  return pem;
}

export function checkServerFlag(url: string): void {
  if (!ServerListSchema.safeParse(url).success) throw usageError(`--server "${url}" must be an http:// or https:// URL, or several comma-separated`);
}

export async function resolveConnection(flags: Flags, io: Pick<Io, 'env' | 'homeDir'>): Promise<Connection> {
  const path = configPath(io);
  const config = await loadConfig(path);

  const flagServer = flagString(flags, 'server');
  if (flagServer !== undefined) checkServerFlag(flagServer);
  const envServer = nonEmpty(io.env['ORCHARD_SERVER']);
  if (flagServer === undefined && envServer !== undefined && !ServerListSchema.safeParse(envServer).success) {
    throw new OrchardError('ERR_VALIDATION', `ORCHARD_SERVER "${envServer}" must be an http:// or https:// URL, or several comma-separated`);
  }
  const servers = splitServers(flagServer ?? envServer ?? config.server ?? DEFAULT_SERVER);
  const server = servers[0] ?? DEFAULT_SERVER;
  const token = nonEmpty(flagString(flags, 'token')) ?? nonEmpty(io.env['ORCHARD_TOKEN']) ?? config.token;

  const flagCa = flagString(flags, 'ca');
  let caPem: string | undefined;
  if (flagCa !== undefined) caPem = await readCaFile(flagCa);
  else if (config.caPem !== undefined) caPem = config.caPem;
  else if (config.caFile !== undefined) caPem = await readCaFile(isAbsolute(config.caFile) ? config.caFile : join(dirname(path), config.caFile));

  const timeoutText = flagString(flags, 'timeout');
  const timeoutMs = timeoutText === undefined ? DEFAULT_TIMEOUT_MS : Math.round(requireDuration('timeout', timeoutText) * 1000);

  const conn: Connection = { server, timeoutMs };
  if (servers.length > 1) conn.servers = servers;
  if (token !== undefined) conn.token = token;
  if (caPem !== undefined) conn.caPem = caPem;
  return conn;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}
