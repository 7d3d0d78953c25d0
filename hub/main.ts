import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { OrchardError } from '../protocol/errors.js';
import { applyHeapGrowth, DEFAULT_HEAP_GROWING_PERCENT } from './heap-growth.js';
import { Hub } from './hub.js';
import { parsePortRange } from './objects/service-allocation.js';
import { createLogger } from './log.js';
import { writeFileAtomicSync } from './security/atomic-file.js';

const USAGE = `usage: orchard hub [--data-dir D] [--host A] [--mqtt-port P] [--http-port H] [--san NAME]... [--insecure] [--no-cli-config]
                   [--node-startup-grace DURATION] [--heap-growth PERCENT] [--registry-allow HOST:PORT,...]
                   [--endpoint-ports MIN-MAX] [--autoscale-sync-period DURATION] [--autoscale-downscale-window DURATION]

  --data-dir D     where the store, CA and credentials live (default /var/lib/orchard, or ~/.orchard/hub when not root)
  --host A         address to listen on (default 0.0.0.0)
  --mqtt-port P    MQTT over TLS port (default 8883; 1883 with --insecure)
  --http-port H    HTTPS API and dashboard port (default 8443; 8080 with --insecure)
  --san NAME       extra DNS name or IP for the server certificate (repeatable)
  --insecure       plain TCP/HTTP instead of TLS (logs a warning; tokens still required)
  --no-cli-config  do not write ~/.orchard/config for the CLI on first start
  --node-startup-grace DURATION
                   a node that goes NotReady before start + DURATION (lost while the hub was down,
                   or during the agents' reconnect storm after a restart) has its onNodeLost
                   afterSeconds counted from start + DURATION, so a slow restart does not move
                   pods of healthy devices (e.g. 90s, 2m, 0 = off; default 60s)
  --heap-growth PERCENT
                   how far V8 may grow the heap past what survived the last full GC (default
                   ${DEFAULT_HEAP_GROWING_PERCENT}; 0 = V8's own heuristic, which grows up to 4× on a large machine)
  --registry-allow HOST:PORT,...
                   registries (as images name them, e.g. 127.0.0.1:5000) the image platform lookup may
                   ask although they resolve to loopback, link-local or unspecified addresses or to the
                   hub's own ports; all others such are refused (SSRF guard; repeatable)
  --endpoint-ports MIN-MAX
                   ports the hub hands out per node for service endpoints reached from other nodes
                   (each node's agent listens on them on its advertise address; default 30000-30999)
  --autoscale-sync-period DURATION
                   how often each autoscaled deployment is evaluated (default 15s)
  --autoscale-downscale-window DURATION
                   scale-down stabilisation window for deployments whose spec.autoscale sets none:
                   replicas fall to the highest recommendation of this window (default 5m)`;

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `90s`, `2m`, `1m30s`, `500ms`, `0` → milliseconds; undefined when malformed (a bare non-zero number is ambiguous). */
export function parseDurationMs(text: string): number | undefined {
  const s = text.trim();
  if (/^0+$/.test(s)) return 0;
  if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * (DURATION_UNITS_MS[m[2] ?? ''] ?? NaN);
  return Number.isFinite(total) ? Math.round(total) : undefined;
}

const DurationMsSchema = z.string().transform((text, ctx) => {
  const ms = parseDurationMs(text);
  if (ms === undefined || ms > 86_400_000) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration like 90s, 2m or 0 (at most 24h)` });
    return z.NEVER;
  }
  return ms;
});

const FlagsSchema = z.object({
  'data-dir': z.string().min(1).optional(),
  host: z.string().min(1).max(253).default('0.0.0.0'),
  'mqtt-port': z.coerce.number().int().min(0).max(65535).optional(),
  'http-port': z.coerce.number().int().min(0).max(65535).optional(),
  san: z.array(z.string().min(1).max(253)).default([]),
  insecure: z.boolean().default(false),
  'no-cli-config': z.boolean().default(false),
  'node-startup-grace': DurationMsSchema.optional(),
  'heap-growth': z.coerce.number().int().min(0).max(1000).default(DEFAULT_HEAP_GROWING_PERCENT),
  'registry-allow': z
    .array(z.string())
    .default([])
    .transform((v) =>
      v
        .flatMap((s) => s.split(','))
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    )
    .pipe(
      z
        .array(
          z
            .string()
            .max(300)
            .regex(/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/, 'must be HOST or HOST:PORT, e.g. 127.0.0.1:5000'),
        )
        .max(100),
    ),
  'endpoint-ports': z
    .string()
    .default('30000-30999')
    .transform((text, ctx) => {
      const r = parsePortRange(text);
      if (r === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${text}" is not a port range like 30000-30999` });
        return z.NEVER;
      }
      return r;
    }),
  'autoscale-sync-period': DurationMsSchema.optional().refine((v) => v === undefined || v >= 100, 'must be at least 100ms'),
  'autoscale-downscale-window': DurationMsSchema.optional(),
  help: z.boolean().default(false),
});

export type HubFlags = z.infer<typeof FlagsSchema>;

/** `orchard hub` flags, validated; an OrchardError (ERR_VALIDATION) names the bad flag. */
export function parseHubArgs(argv: string[]): HubFlags {
  const { values } = parseArgs({
    args: argv,
    options: {
      'data-dir': { type: 'string' },
      host: { type: 'string' },
      'mqtt-port': { type: 'string' },
      'http-port': { type: 'string' },
      san: { type: 'string', multiple: true },
      insecure: { type: 'boolean' },
      'no-cli-config': { type: 'boolean' },
      'node-startup-grace': { type: 'string' },
      'heap-growth': { type: 'string' },
      'registry-allow': { type: 'string', multiple: true },
      'endpoint-ports': { type: 'string' },
      'autoscale-sync-period': { type: 'string' },
      'autoscale-downscale-window': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  const r = FlagsSchema.safeParse(values);
  if (r.success) return r.data;
  // Name the flag as typed (`--http-port`), not as a field path.
  const issues = r.error.issues.map((i) => ({ path: `--${i.path.map(String).join('.')}`, message: i.message }));
  throw new OrchardError('ERR_VALIDATION', `invalid flags: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { details: { issues } });
}

/**
 * What `orchard hub` says about a newly created admin token. The token itself only goes to a
 * terminal: stdout piped into a log (the quickstart, systemd, `nohup … >> hub.log`) would keep a
 * copy of the admin credential in a file that is usually world-readable.
 */
export function adminTokenNotice(token: string, tokenFile: string, stdoutIsTty: boolean): string {
  return stdoutIsTty
    ? `\nAdmin token (shown once; also in ${tokenFile}, mode 0600):\n  ${token}\n\n`
    : `\nAdmin token created in ${tokenFile} (mode 0600); not printed because stdout is not a terminal.\n\n`;
}

export async function runHub(argv: string[]): Promise<void> {
  const flags = parseHubArgs(argv);
  if (flags.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  // Everything the hub creates (SQLite files, keys, tokens, CLI config) is private to its user,
  // whatever mode a library would pick: set before anything is written.
  process.umask(0o077);
  applyHeapGrowth(flags['heap-growth']);
  const isRoot = process.getuid?.() === 0;
  const dataDir = flags['data-dir'] ?? (isRoot ? '/var/lib/orchard' : join(homedir(), '.orchard', 'hub'));
  const log = createLogger('hub');
  const sans = flags.san;
  const hub = await Hub.start({
    dataDir,
    host: flags.host,
    mqttPort: flags['mqtt-port'] ?? (flags.insecure ? 1883 : 8883),
    httpPort: flags['http-port'] ?? (flags.insecure ? 8080 : 8443),
    insecure: flags.insecure,
    log,
    hostnames: sans.filter((s) => !/^[\d.:]+$/.test(s)),
    ips: sans.filter((s) => /^[\d.:]+$/.test(s)),
    ...(flags['node-startup-grace'] !== undefined ? { nodeStartupGraceMs: flags['node-startup-grace'] } : {}),
    ...(flags['registry-allow'].length > 0 ? { scheduling: { registryAllow: flags['registry-allow'] } } : {}),
    services: { endpointPorts: flags['endpoint-ports'] },
    autoscale: {
      ...(flags['autoscale-sync-period'] !== undefined ? { syncPeriodMs: flags['autoscale-sync-period'] } : {}),
      ...(flags['autoscale-downscale-window'] !== undefined ? { downscaleWindowMs: flags['autoscale-downscale-window'] } : {}),
    },
  });

  if (hub.newAdminToken) process.stdout.write(adminTokenNotice(hub.newAdminToken, join(dataDir, 'admin.token'), process.stdout.isTTY === true));
  if (!flags['no-cli-config']) writeCliConfig(hub, dataDir, log);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(`received ${signal}, stopping`);
    hub.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('stop failed', { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // The hub never crashes on one bad request or payload; log anything that escapes.
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { err }));
}

/** Writes ~/.orchard/config for the CLI when it is missing or points at this hub's admin token file. */
function writeCliConfig(hub: Hub, dataDir: string, log: ReturnType<typeof createLogger>): void {
  const path = process.env['ORCHARD_CONFIG'] ?? join(homedir(), '.orchard', 'config');
  const tokenFile = join(dataDir, 'admin.token');
  const token = hub.newAdminToken ?? (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined);
  if (!token) return;
  const server = hub.apiUrl;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const config: Record<string, string> = { server, token };
    if (hub.pki) config['caPem'] = hub.pki.caPem;
    writeFileAtomicSync(path, JSON.stringify(config, null, 2) + '\n', 0o600);
    log.info('wrote CLI config', { path, server });
  } catch (err) {
    log.warn('could not write CLI config', { path, err: OrchardError.from(err) });
  }
}
