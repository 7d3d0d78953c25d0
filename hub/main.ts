import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { OrchardError } from '../protocol/errors.js';
import { applyHeapGrowth, DEFAULT_HEAP_GROWING_PERCENT } from './heap-growth.js';
import { backupHub, restoreHub } from './backup.js';
import { Hub } from './hub.js';
import { parsePortRange } from './objects/service-allocation.js';
import { createLogger } from './log.js';
import { writeFileAtomicSync } from './security/atomic-file.js';
import { EtcdClient } from './store/etcd/etcd-client.js';
import { DEFAULT_LEADER_TTL_S, Election } from './store/etcd/election.js';
import { EtcdStore } from './store/etcd/etcd-store.js';
import { bootstrapKey, downloadIdentity, identityMirror, uploadMissingIdentity, type BootstrapShapes } from './store/etcd/bootstrap.js';
import { settleEpochBase } from './store/etcd/epoch-base.js';
import { agentVersionMirror, downloadAgentVersions, uploadMissingAgentVersions } from './store/etcd/agent-version-store.js';
import { AgentVersions } from './agent-upgrade/agent-versions.js';
import { systemClock } from '../protocol/clock.js';
import { HubApiUrlSchema, HubMqttUrlSchema, type HubEndpoint } from '../protocol/hubs.js';
import { HubMembers, memberKey } from './ha/hub-members.js';
import { runStandby } from './ha/standby.js';

const USAGE = `usage: orchard hub backup|restore …   (orchard hub backup --help)
       orchard hub [--data-dir D] [--host A] [--mqtt-port P] [--http-port H] [--san NAME]... [--insecure] [--no-cli-config]
                   [--node-startup-grace DURATION] [--heap-growth PERCENT] [--registry-allow HOST:PORT,...]
                   [--endpoint-ports MIN-MAX] [--store sqlite|etcd://HOST:PORT,...] [--etcd-… options]
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
  --store sqlite|etcd://HOST:PORT,...|etcds://HOST:PORT,...
                   where objects live: SQLite in the data dir (default), or an etcd cluster (etcds = TLS).
                   On etcd, hubs campaign for leadership: one leads (and serves), the others wait
                   and take over when it goes; a hub that loses leadership exits (code 75) so its
                   supervisor restarts it as a standby (docs/design/ha.md)
  --etcd-prefix P  key prefix of this hub group in etcd (default /orchard/)
  --etcd-ca F, --etcd-cert F, --etcd-key F
                   PEM files for etcds:// (CA of the members; client certificate and key)
  --etcd-user U    etcd user; the password comes from ORCHARD_ETCD_PASSWORD or --etcd-password-file
  --etcd-password-file F
  --ha-secret-file F
                   the hub group's secret (or ORCHARD_HA_SECRET; ≥ 16 characters, the same on every hub
                   of the group): the CA key, tokens and secrets key are kept in etcd encrypted with it
  --leader-ttl DURATION
                   the leader's lease (default ${DEFAULT_LEADER_TTL_S}s): a dead leader is replaced after at most this;
                   a leader whose event loop stalls for longer than this minus 1 s steps down
                   (exit 75): raise it on a machine that is often overloaded (docs/ha.md)
  --advertise-api URL, --advertise-mqtt URL
                   with --store etcd: the addresses agents and the CLI reach this hub by, kept in
                   etcd so the leader can tell agents every hub (default: https://HOST:HTTP-PORT and
                   mqtts://HOST:MQTT-PORT, HOST = --host, or this machine's name when --host is
                   0.0.0.0 or ::); their host names go into the server certificate. A standby
                   answers /healthz and ERR_NOT_LEADER (naming the leader) on its HTTP port; its MQTT
                   port stays closed
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
  store: z
    .string()
    .default('sqlite')
    .transform((text, ctx) => {
      const r = parseStoreFlag(text);
      if (r === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${text}" is not sqlite or etcd://HOST:PORT[,HOST:PORT…] (etcds:// for TLS)` });
        return z.NEVER;
      }
      return r;
    }),
  'etcd-prefix': z
    .string()
    .regex(/^\/[A-Za-z0-9._/-]*\/$/, 'must start and end with "/", e.g. /orchard/')
    .max(200)
    .default('/orchard/'),
  'etcd-ca': z.string().min(1).optional(),
  'etcd-cert': z.string().min(1).optional(),
  'etcd-key': z.string().min(1).optional(),
  'etcd-user': z.string().min(1).max(128).optional(),
  'etcd-password-file': z.string().min(1).optional(),
  'ha-secret-file': z.string().min(1).optional(),
  'advertise-api': HubApiUrlSchema.optional(),
  'advertise-mqtt': HubMqttUrlSchema.optional(),
  'leader-ttl': DurationMsSchema.optional().refine((v) => v === undefined || (v >= 2_000 && v <= 300_000), 'must be between 2s and 5m'),
  'autoscale-sync-period': DurationMsSchema.optional().refine((v) => v === undefined || v >= 100, 'must be at least 100ms'),
  'autoscale-downscale-window': DurationMsSchema.optional(),
  help: z.boolean().default(false),
});

export type StoreFlag = { kind: 'sqlite' } | { kind: 'etcd'; endpoints: string[] };

/** `sqlite` or `etcd://a:2379,b:2379` / `etcds://…` → the store to use; undefined when malformed. */
export function parseStoreFlag(text: string): StoreFlag | undefined {
  const t = text.trim();
  if (t === 'sqlite') return { kind: 'sqlite' };
  const m = /^(etcds?):\/\/(.+)$/.exec(t);
  if (!m) return undefined;
  const scheme = m[1] === 'etcds' ? 'https' : 'http';
  const endpoints: string[] = [];
  for (const part of (m[2] ?? '').split(',')) {
    const hp = part.trim();
    if (!/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(hp)) return undefined;
    const port = Number(hp.slice(hp.lastIndexOf(':') + 1));
    if (port < 1 || port > 65_535) return undefined;
    endpoints.push(`${scheme}://${hp}`);
  }
  return endpoints.length > 0 && endpoints.length <= 15 ? { kind: 'etcd', endpoints } : undefined;
}

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
      ...STORE_FLAG_OPTIONS,
      'leader-ttl': { type: 'string' },
      'advertise-api': { type: 'string' },
      'advertise-mqtt': { type: 'string' },
      'ha-secret-file': { type: 'string' },
      'autoscale-sync-period': { type: 'string' },
      'autoscale-downscale-window': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  return flagsOrThrow(FlagsSchema, values);
}

/** The flags naming a store and how to reach etcd: `orchard hub` and `orchard hub backup` take them alike. */
const STORE_FLAG_OPTIONS = {
  store: { type: 'string' },
  'etcd-prefix': { type: 'string' },
  'etcd-ca': { type: 'string' },
  'etcd-cert': { type: 'string' },
  'etcd-key': { type: 'string' },
  'etcd-user': { type: 'string' },
  'etcd-password-file': { type: 'string' },
} as const;

/** Validates parsed flags; an OrchardError (ERR_VALIDATION) names each bad flag as typed (`--http-port`), not as a field path. */
function flagsOrThrow<S extends z.ZodType>(schema: S, values: unknown): z.infer<S> {
  const r = schema.safeParse(values);
  if (r.success) return r.data;
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
  if (argv[0] === 'backup' || argv[0] === 'restore') return runBackupCommand(argv[0], argv.slice(1));
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
  const httpPort = flags['http-port'] ?? (flags.insecure ? 8080 : 8443);
  const mqttPort = flags['mqtt-port'] ?? (flags.insecure ? 1883 : 8883);
  const self = flags.store.kind === 'etcd' ? advertisedEndpoint(flags, `${hostname()}:${httpPort}`, httpPort, mqttPort) : undefined;
  // The advertised names are the ones agents and the CLI dial: the certificate must carry them.
  const sans = [...new Set([...flags.san, ...(self ? [urlHostname(self.api), urlHostname(self.mqtt)] : [])])];
  const hostIp = /^[\d.:]+$/.test(flags.host) && flags.host !== '0.0.0.0' && flags.host !== '::' ? [flags.host] : [];
  const pkiNames = { hostnames: sans.filter((s) => !/^[\d.:]+$/.test(s)), ips: [...new Set([...sans.filter((s) => /^[\d.:]+$/.test(s)), ...hostIp])] };
  const ha =
    flags.store.kind === 'etcd' && self
      ? await leadOnEtcd(flags, flags.store.endpoints, self, { dataDir, host: flags.host, httpPort, pkiNames }, log)
      : undefined;
  const hub = await Hub.start({
    dataDir,
    host: flags.host,
    mqttPort,
    httpPort,
    insecure: flags.insecure,
    ...(ha
      ? {
          store: ha.store,
          identityMirror: ha.identityMirror,
          epoch: ha.epoch,
          agentVersionsMirror: ha.agentVersionsMirror,
          ha: { self: ha.self, epoch: ha.epoch, members: ha.members, writesFailing: () => ha.store.writesFailing },
        }
      : {}),
    log,
    ...pkiNames,
    ...(flags['node-startup-grace'] !== undefined ? { nodeStartupGraceMs: flags['node-startup-grace'] } : {}),
    ...(flags['registry-allow'].length > 0 ? { scheduling: { registryAllow: flags['registry-allow'] } } : {}),
    services: { endpointPorts: flags['endpoint-ports'] },
    autoscale: {
      ...(flags['autoscale-sync-period'] !== undefined ? { syncPeriodMs: flags['autoscale-sync-period'] } : {}),
      ...(flags['autoscale-downscale-window'] !== undefined ? { downscaleWindowMs: flags['autoscale-downscale-window'] } : {}),
    },
  });

  if (ha) {
    const uploaded = await ha.uploadMissingIdentity();
    if (uploaded.length > 0) log.info('hub identity stored in etcd for standbys', { files: uploaded });
    const versions = await ha.uploadMissingAgentVersions();
    if (versions.length > 0) log.info('agent versions stored in etcd for standbys', { versions });
  }
  if (hub.newAdminToken) process.stdout.write(adminTokenNotice(hub.newAdminToken, join(dataDir, 'admin.token'), process.stdout.isTTY === true));
  if (!flags['no-cli-config']) writeCliConfig(hub, dataDir, log);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(`received ${signal}, stopping`);
    hub
      .stop()
      .then(() => ha?.members.stop())
      .then(() => ha?.election.stop())
      .then(
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

type EtcdFlags = Pick<HubFlags, 'etcd-ca' | 'etcd-cert' | 'etcd-key' | 'etcd-user' | 'etcd-password-file'>;

/**
 * etcd's user and password from the flags: the password from `--etcd-password-file` or
 * ORCHARD_ETCD_PASSWORD, never argv. A user without a password (it was sent as '', and etcd's
 * refusal named no flag) and a password without a user are refused here, naming the flags.
 */
export function etcdAuth(
  flags: Pick<EtcdFlags, 'etcd-user' | 'etcd-password-file'>,
  env: NodeJS.ProcessEnv,
  readFile: (path: string) => string = (f) => readFileSync(f, 'utf8'),
): { username: string; password: string } | undefined {
  const file = flags['etcd-password-file'];
  const password = file !== undefined ? readFile(file).trim() : env['ORCHARD_ETCD_PASSWORD'];
  const user = flags['etcd-user'];
  if (user === undefined) {
    if (file !== undefined) throw new OrchardError('ERR_VALIDATION', 'invalid flags: --etcd-password-file: given without --etcd-user');
    return undefined;
  }
  if (password === undefined || password === '') {
    const where = file !== undefined ? `--etcd-password-file ${file} is empty` : 'set --etcd-password-file or ORCHARD_ETCD_PASSWORD';
    throw new OrchardError('ERR_VALIDATION', `invalid flags: --etcd-user: etcd user ${user} needs a password (${where})`);
  }
  return { username: user, password };
}

/** The etcd client the flags describe (PEM files read now). */
function etcdClient(flags: EtcdFlags, endpoints: string[]): EtcdClient {
  const readPem = (f: string | undefined): string | undefined => (f === undefined ? undefined : readFileSync(f, 'utf8'));
  const auth = etcdAuth(flags, process.env);
  return new EtcdClient({
    endpoints,
    ...(flags['etcd-ca'] ? { ca: readPem(flags['etcd-ca']) } : {}),
    ...(flags['etcd-cert'] ? { cert: readPem(flags['etcd-cert']) } : {}),
    ...(flags['etcd-key'] ? { key: readPem(flags['etcd-key']) } : {}),
    ...(auth !== undefined ? auth : {}),
  });
}

const BACKUP_USAGE = `usage: orchard hub backup --out DIR [--data-dir D] [--store sqlite|etcd://…] [--etcd-prefix P] [--etcd-… options]
       orchard hub restore --from DIR [--data-dir D] [--force]

  backup   writes DIR (new; 0700): the hub's identity (CA and key, server certificate, tokens and
           node credentials, the secrets key) and its objects — a consistent copy of orchard.db
           taken while the hub runs, or etcd's snapshot of the whole keyspace — with the SHA-256
           of every file in DIR/backup.json
  restore  checks every file of DIR against backup.json, then writes them into the data dir (the
           hub must be stopped; --force replaces a hub that is there). An etcd backup restores
           the identity here and prints the etcdctl steps for the snapshot (docs/design/ha.md)`;

const BackupFlagsSchema = FlagsSchema.pick({
  'data-dir': true,
  store: true,
  'etcd-prefix': true,
  'etcd-ca': true,
  'etcd-cert': true,
  'etcd-key': true,
  'etcd-user': true,
  'etcd-password-file': true,
  help: true,
}).extend({ out: z.string().min(1).optional(), from: z.string().min(1).optional(), force: z.boolean().default(false) });

/** `orchard hub backup …` / `orchard hub restore …`; flags validated as `orchard hub`'s are. */
export function parseBackupArgs(argv: string[]): z.infer<typeof BackupFlagsSchema> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'data-dir': { type: 'string' },
      ...STORE_FLAG_OPTIONS,
      out: { type: 'string' },
      from: { type: 'string' },
      force: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  return flagsOrThrow(BackupFlagsSchema, values);
}

async function runBackupCommand(cmd: 'backup' | 'restore', argv: string[]): Promise<void> {
  const flags = parseBackupArgs(argv);
  if (flags.help) {
    process.stdout.write(BACKUP_USAGE + '\n');
    return;
  }
  process.umask(0o077);
  const isRoot = process.getuid?.() === 0;
  const dataDir = flags['data-dir'] ?? (isRoot ? '/var/lib/orchard' : join(homedir(), '.orchard', 'hub'));
  if (cmd === 'backup') {
    if (!flags.out)
      throw new OrchardError('ERR_VALIDATION', 'invalid flags: --out: a new directory for the backup is required', {
        details: { issues: [{ path: '--out', message: 'required' }] },
      });
    const client = flags.store.kind === 'etcd' ? etcdClient(flags, flags.store.endpoints) : undefined;
    try {
      const m = await backupHub({ dataDir, out: flags.out, ...(client ? { etcd: { client, prefix: flags['etcd-prefix'] } } : {}) });
      process.stdout.write(`backup of the ${m.store} hub in ${flags.out}: ${Object.keys(m.files).join(', ')}\n`);
    } finally {
      client?.close();
    }
    return;
  }
  if (!flags.from)
    throw new OrchardError('ERR_VALIDATION', 'invalid flags: --from: the backup directory is required', {
      details: { issues: [{ path: '--from', message: 'required' }] },
    });
  const r = restoreHub({ from: flags.from, dataDir, force: flags.force });
  process.stdout.write(`restored into ${dataDir}: ${r.restored.join(', ')}\n`);
  if (r.etcdSnapshot) {
    process.stdout.write(
      `the objects are in etcd's snapshot; restore it into every member before starting the hub with --store etcd://…:\n` +
        `  ETCDCTL_API=3 etcdctl snapshot restore ${r.etcdSnapshot} --name <member> --data-dir <new member data dir> \\\n` +
        `      --initial-cluster <m1=https://…:2380,…> --initial-advertise-peer-urls <this member's peer URL>\n` +
        `(prefix of this hub group: ${r.manifest.etcdPrefix ?? '/orchard/'}; the snapshot marks itself as a backup, so the first\n` +
        ` leader raises leader epochs above every earlier one and agents take its desired sets: docs/backup.md)\n`,
    );
  }
}

/**
 * This hub's addresses as agents and the CLI reach it (`--advertise-api`, `--advertise-mqtt`):
 * by default the listen address, or this machine's name when it listens on every address.
 */
export function advertisedEndpoint(
  flags: Pick<HubFlags, 'advertise-api' | 'advertise-mqtt' | 'host' | 'insecure'>,
  id: string,
  httpPort: number,
  mqttPort: number,
  machine = hostname(),
): HubEndpoint {
  const h = flags.host === '0.0.0.0' || flags.host === '::' ? machine.toLowerCase() : flags.host;
  const host = h.includes(':') ? `[${h}]` : h;
  for (const [flag, given, port] of [
    ['--advertise-api', flags['advertise-api'], httpPort],
    ['--advertise-mqtt', flags['advertise-mqtt'], mqttPort],
  ] as const) {
    if (given === undefined && port === 0)
      throw new OrchardError('ERR_VALIDATION', `invalid flags: ${flag}: required with --store etcd and a port 0 (agents cannot dial port 0)`, {
        details: { issues: [{ path: flag, message: 'required with port 0' }] },
      });
    // A TLS hub never points agents and clients at a plaintext address: their credentials would
    // go in clear (agents also skip such entries of the hub list: agent/hub-list.ts).
    if (given !== undefined && !flags.insecure && /^(mqtt|http):/.test(given))
      throw new OrchardError(
        'ERR_VALIDATION',
        `invalid flags: ${flag}: ${given} is plaintext; this hub serves TLS (give mqtts:// or https://, or run with --insecure)`,
        {
          details: { issues: [{ path: flag, message: 'plaintext address on a TLS hub' }] },
        },
      );
  }
  return {
    id,
    api: flags['advertise-api'] ?? `${flags.insecure ? 'http' : 'https'}://${host}:${httpPort}`,
    mqtt: flags['advertise-mqtt'] ?? `${flags.insecure ? 'mqtt' : 'mqtts'}://${host}:${mqttPort}`,
  };
}

/** The host of an http(s):// or mqtt(s):// URL, IPv6 without brackets. */
function urlHostname(url: string): string {
  return new URL(url.replace(/^mqtts?:/, 'http:')).hostname.replace(/^\[(.*)\]$/, '$1');
}

/** Exit code of a hub that lost leadership: its supervisor restarts it as a standby. */
export const EXIT_LOST_LEADERSHIP = 75;

/**
 * How long a new leader waits for its standby copy of the store to show its own election before
 * it loads the store from etcd instead (docs/ha.md "Takeover"). The watch brings that event in
 * milliseconds; a copy still behind after this is lagging or broken, and a full load is the
 * safe way.
 */
export const STANDBY_COPY_WAIT_MS = 1_000;

/** Where a new leader's store came from: its standby copy (at that etcd revision), or a full load from etcd (and why). */
export type StoreFrom = { source: 'standby-copy'; revision: number } | { source: 'etcd'; reason: string };

/**
 * Campaigns for leadership of the hub group on etcd and returns once this hub leads, with the
 * fenced store opened at that moment (docs/design/ha.md). Losing leadership later — a lease not
 * renewed in time, or etcd refusing a fenced write — ends the process: no code path can then
 * leave a controller or the broker acting on stale state. Exported for the failover benchmark's
 * hub process (scripts/bench/lib/hub-child.ts), which must lead exactly as `orchard hub` does.
 */
export async function leadOnEtcd(
  flags: HubFlags,
  endpoints: string[],
  self: HubEndpoint,
  local: { dataDir: string; host: string; httpPort: number; pkiNames: { hostnames: string[]; ips: string[] } },
  log: ReturnType<typeof createLogger>,
): Promise<{
  store: EtcdStore;
  election: Election;
  members: HubMembers;
  self: HubEndpoint;
  epoch: number;
  /** Date.now when the election was won (before the identity download and the store load). */
  wonAt: number;
  /** Where the store came from: the standby's copy, or a full load from etcd (and why). */
  storeFrom: StoreFrom;
  identityMirror: (file: string, content: string) => void;
  uploadMissingIdentity: () => Promise<string[]>;
  agentVersionsMirror: ReturnType<typeof agentVersionMirror>;
  uploadMissingAgentVersions: () => Promise<string[]>;
}> {
  const prefix = flags['etcd-prefix'];
  const secret = flags['ha-secret-file'] ? readFileSync(flags['ha-secret-file'], 'utf8').trim() : process.env['ORCHARD_HA_SECRET'];
  if (!secret) {
    throw new OrchardError(
      'ERR_VALIDATION',
      "invalid flags: --ha-secret-file: --store etcd needs the group's HA secret (--ha-secret-file F or ORCHARD_HA_SECRET): the hub's CA key, tokens and secrets key are kept in etcd encrypted with it, so that a standby can take over",
      { details: { issues: [{ path: '--ha-secret-file', message: 'required with --store etcd://…' }] } },
    );
  }
  const key = bootstrapKey(secret, prefix);
  const { dataDir } = local;
  const id = self.id;
  const client = etcdClient(flags, endpoints);
  const lost = (why: string): never => {
    log.error('lost leadership: exiting so a restart rejoins as a standby', { why });
    process.exit(EXIT_LOST_LEADERSHIP);
  };
  let elected!: (epoch: number) => void;
  let wonAt = 0;
  const leading = new Promise<number>((resolve) => (elected = resolve));
  const election = new Election({
    client,
    key: `${prefix}leader`,
    id,
    ttlSeconds: Math.round((flags['leader-ttl'] ?? DEFAULT_LEADER_TTL_S * 1000) / 1000),
    clock: systemClock,
    member: { key: memberKey(prefix, id), value: JSON.stringify(self) },
    onElected: (epoch) => {
      wonAt = Date.now();
      elected(epoch);
    },
    onLost: (why) => {
      if (why !== 'stopped') lost(why);
    },
  });
  log.info('campaigning for leadership on etcd', { endpoints, prefix, id, api: self.api, mqtt: self.mqtt });
  const members = new HubMembers({ client, prefix, clock: systemClock, log: log.child('ha') });
  election.start();
  // Not awaited before the standby starts: without a quorum each read takes etcd's request
  // timeout, and the port should answer (naming the cause) meanwhile (docs/ha.md "Quorum lost").
  void members.start().then(async () => {
    const current = await election.leader().catch(() => undefined);
    if (current !== undefined && current.id !== id) log.info('standby: another hub leads', { leader: current.id, epoch: current.epoch });
  });
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const standby = runStandby({
    client,
    prefix,
    key,
    dataDir,
    insecure: flags.insecure,
    host: local.host,
    port: local.httpPort,
    id,
    members,
    // The first that noticed: the members' reads (a hub restarted without a quorum) or this hub's
    // lease requests (a standby whose watches just went quiet).
    unreadable: () => members.unreadable() ?? election.unreachable(),
    pkiNames: local.pkiNames,
    clock: systemClock,
    log,
  });
  // A hub that cannot serve (wrong HA secret, port taken) gives up its candidacy and its watches,
  // so the process ends with the error instead of idling on their timers and sockets.
  const giveUp = async (err: unknown): Promise<never> => {
    members.stop();
    await election.stop();
    client.close();
    throw err;
  };
  let epoch: number;
  try {
    epoch = await Promise.race([leading, standby.failed]);
  } catch (err) {
    await standby.stop();
    return giveUp(err);
  }
  // Elected at etcd revision `epoch` (the leader key's create revision): the hub itself takes the
  // port, and takes the standby's copy of the store when it provably holds that revision.
  const handed = await standby.takeover(epoch, id, STANDBY_COPY_WAIT_MS);
  // The epoch agents see: the election's create revision plus the group's epoch base, raised when
  // etcd was restored from a backup's snapshot (store/etcd/epoch-base.ts).
  const settled = await settleEpochBase(client, prefix, () => election.fence()).catch(giveUp);
  if (settled.raisedFrom !== undefined)
    log.warn('etcd was restored from a backup: leader epochs raised above every earlier one', { from: settled.raisedFrom, to: settled.base });
  // A restored etcd is another history: a copy that lived through it proves nothing.
  const reuse = 'snapshot' in handed && settled.raisedFrom === undefined ? handed.snapshot : undefined;
  const storeFrom: StoreFrom =
    reuse !== undefined
      ? { source: 'standby-copy', revision: reuse.revision }
      : { source: 'etcd', reason: 'reason' in handed ? handed.reason : 'etcd was restored from a backup' };
  epoch += settled.base;
  // What etcd holds of each identity file (split or not), so the mirror deletes old parts.
  const shapes: BootstrapShapes = new Map();
  const downloaded = await downloadIdentity(client, prefix, dataDir, key, shapes).catch(giveUp);
  if (downloaded.length > 0) log.info("took the group's identity from etcd", { files: downloaded });
  // Agent versions for `orchard node upgrade` (review finding 3): a rollout goes on under a new leader.
  const localVersions = new AgentVersions({ dataDir, caKeyPem: undefined, now: () => new Date() });
  const fetched = await downloadAgentVersions(client, prefix, localVersions, (version, err) =>
    log.warn('agent version in etcd does not match its size and SHA-256; not served', { version, err: OrchardError.from(err) }),
  );
  if (fetched.length > 0) log.info('took agent versions from etcd', { versions: fetched });
  let flushWarned = 0;
  const store = await EtcdStore.open(
    {
      client,
      prefix,
      fence: () => election.fence(),
      epoch,
      onFenced: (err) => lost(err.message),
      onFlushError: (err) => {
        const now = Date.now();
        if (now - flushWarned < 10_000) return;
        flushWarned = now;
        log.warn('etcd did not take a write; retrying', { err: OrchardError.from(err) });
      },
      onCompactError: (err) => log.warn('etcd history compaction failed; trying again at the next interval', { err: OrchardError.from(err) }),
    },
    reuse,
  );
  if (storeFrom.source === 'standby-copy')
    log.info("took over the standby's copy of the store (it held this hub's election)", { etcdRevision: storeFrom.revision });
  else log.info('loaded the store from etcd', { why: storeFrom.reason });
  log.info('leading the hub group', { epoch, objects: store.revision() });
  const versionsMirror = agentVersionMirror(store, prefix);
  return {
    store,
    election,
    members,
    self,
    epoch,
    wonAt,
    storeFrom,
    identityMirror: identityMirror((writes) => store.putRawBatch(writes), prefix, key, shapes),
    uploadMissingIdentity: () => uploadMissingIdentity(client, prefix, dataDir, key, () => election.fence(), shapes),
    agentVersionsMirror: versionsMirror,
    uploadMissingAgentVersions: () => uploadMissingAgentVersions(client, prefix, localVersions, versionsMirror),
  };
}
