import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { OrchardError, parseOrThrow } from '../protocol/errors.js';
import { LabelsSchema, NameSchema, type Capability } from '../protocol/pod-spec.js';
import { AllowCapAddSchema, type DevicePolicy } from '../protocol/pod-security.js';
import { parseBytes } from '../protocol/quantity.js';
import { Agent } from './agent.js';
import { consoleLogger, systemClock } from './clock.js';
import { DockerRuntime } from './runtime/docker-runtime.js';
import { IDENTITY_FILE, loadOrJoinPatiently, parseHubAddress, splitHubs } from './security/join.js';
import { HubList } from './hub-list.js';
import type { ContainerRuntime } from './runtime/runtime.js';
import { Upgrader } from './upgrade/upgrader.js';
import { EXIT_RESTART_FOR_UPGRADE, LAUNCHER_ENV, type ReportedInMessage } from './upgrade/launcher-state.js';
import { parseAllowList } from './storage/host-path.js';
import type { DefaultMemory } from './apply-action.js';
import { AGENT_VERSION, defaultAdvertiseAddress } from './reporter.js';
import { checkCidrFree, createDataPlane } from './services/create-data-plane.js';
import { parseCidr } from './services/addresses.js';
import { DEFAULT_SERVICE_CIDR, isIpv4, parseServiceCidr } from './services/service-cidr.js';
import { z } from 'zod';
import { DeviceClassSchema } from '../protocol/devices.js';
import { DEFAULT_DEVICES, parseDevicesFlag, readDeviceClassesFile, type DeviceClasses } from './devices/device-classes.js';
import { DeviceWatcher } from './devices/device-source.js';

/**
 * Composition root of `orchard agent`: parse flags, load or obtain the node's identity,
 * wire Docker runtime + Agent, run until SIGINT/SIGTERM. Stopping leaves workloads running.
 */

export interface AgentArgs {
  hub: string;
  name: string;
  labels: Record<string, string>;
  dataDir: string;
  token?: string;
  /** `--token-file PATH`: the join token is read from this file (first start only). */
  tokenFile?: string;
  /** The token came from `--token`, where every local user can read it in `ps`. */
  tokenOnCommandLine?: true;
  insecure: boolean;
  dockerSocket?: string;
  /** Overrides the MQTT endpoint the join response gave (relays, NAT, chaos tests); same CA pinning. */
  mqttUrl?: string;
  verbose: boolean;
  /** hostPath prefixes pods may mount (default none). */
  hostPathAllow?: string[];
  /** Where secret/config files live; must be tmpfs (default /run/orchard-agent/<node>). */
  secretsDir?: string;
  /** Image GC threshold, percent of free disk (default 10; 0 = off). */
  imageGcThresholdPercent?: number;
  /** What pods this device refuses (--deny-host-network, --deny-host-ports, --deny-cap-add; capability adds beyond baseline unless --allow-cap-add). */
  policy: DevicePolicy;
  /** Memory limit for containers that set none (default 75 % of the engine's memory; 0 = none). */
  defaultMemory: DefaultMemory;
  /** Services (issue 15): off with `--no-services`. */
  services: AgentServiceArgs | false;
  /** Host devices (issue 18): `--devices` (default DEFAULT_DEVICES) or `--devices-file` (read at start). */
  devices: { classes: DeviceClasses } | { file: string };
  /** `--device-root` (default /): where /dev and /sys are looked up (tests point it at a fake tree). */
  deviceRoot: string;
  /** Container log rotation (`--log-max-size`, `--log-max-files`; default 10m × 3; files 0 = the engine's default). */
  logRotation?: { maxSize: string; maxFiles: number };
}

export interface AgentServiceArgs {
  /** `--service-cidr` (default 10.250.0.0/22), normalised. */
  serviceCidr: string;
  /** `--advertise-address`; absent = the host's first non-internal IPv4, resolved at start. */
  advertiseAddress?: string;
  /** `--publish-address` (default 0.0.0.0). */
  publishAddress: string;
  /** `--service-clients`: CIDRs that may use the name server and service addresses (default: loopback and the private ranges). */
  clientCidrs?: string[];
}

/** `orchard agent --default-memory-limit` when not given. */
export const DEFAULT_MEMORY_LIMIT_PERCENT = 75;

export const AGENT_USAGE = `usage: orchard agent --hub HOST[:PORT]|https://HOST:PORT|http://HOST:PORT[,…] [options]
  --hub A[,B…]          the hub's API address; several hubs of an etcd group comma-separated (the
                        join tries each; the agent then learns every hub from the leader, keeps
                        the list in DATA-DIR/hubs.json and moves to the next hub when one goes)
  --name NAME           node name (default: this host's name)
  --labels k=v,k=v      labels this device reports about itself; the hub files them as
                        node.orchard.dev/k=v (placement labels a node cannot change come from
                        the join token and 'orchard label node')
  --data-dir DIR        state directory (default /var/lib/orchard-agent)
  --token-file PATH     file holding the join token (first start only; keep it 0600; may be
                        deleted after the first join: the agent then starts from identity.json)
  --token TOKEN         join token on the command line: visible to every local user in ps;
                        prefer --token-file or env ORCHARD_TOKEN
  --insecure            allow a plain-HTTP hub / skip CA pinning (labs only)
  --docker-socket PATH  container engine socket (default: DOCKER_HOST or /var/run/docker.sock)
  --mqtt-url URL        mqtts://HOST:PORT (or mqtt://) to dial instead of the hub's join answer
                        (a relay or TCP proxy in front of the broker; TLS still verifies the hub CA)
  --host-path-allow P,… host path prefixes pods may mount as hostPath volumes (default: none)
  --secrets-dir DIR     tmpfs directory for secret/config files (default /run/orchard-agent/<name>;
                        a tmpfs is mounted there when it is not on one and the agent is root)
  --image-gc-threshold P  remove unused images (never the current or previous revision's) when free
                        disk drops below P percent, and report DiskPressure (default 10%; 0 = off)
  --deny-host-network   refuse pods with network: host on this device (whatever the hub says)
  --deny-host-ports     refuse pods that publish a hostPort on this device
  --deny-cap-add        refuse pods that add any Linux capability (securityContext.capabilities.add)
  --allow-cap-add CAP,… capabilities pods may add beyond Kubernetes' Pod Security baseline (by
                        default only AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD,
                        NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT may be
                        added), e.g. SYS_ADMIN,NET_ADMIN or NET_RAW (ping); ALL = any
                        (hostPath volumes are refused unless under --host-path-allow)
  --devices SPEC        host device classes to discover, class=pattern,…;class=… (default
                        serial=/dev/ttyUSB*,/dev/ttyACM*;video=/dev/video*;i2c=/dev/i2c-*;
                        gpio=/dev/gpiochip*;spi=/dev/spidev*); a leading + adds to the defaults
                        (+can=/dev/can*); none = no discovery
  --devices-file PATH   the same as JSON: {"serial": ["/dev/ttyUSB*"], …} (instead of --devices)
  --device-root DIR     look /dev and /sys up under DIR (default /; for tests)
  --deny-device-classes C,…  refuse pods that ask for host devices of these classes (e.g. video)
  --default-memory-limit Q|P%  memory limit of containers that set none (default 75% of the
                        engine's memory; 0 = none)
  --service-cidr CIDR   services: this node's service addresses (on lo) and name server (base+1),
                        a /22 or larger the host uses nowhere else (default 10.250.0.0/22)
  --advertise-address IP  services: the address other nodes dial for this node's endpoints
                        (default: the first non-internal IPv4 address)
  --publish-address IP  services: where published service ports listen (default 0.0.0.0)
  --service-clients CIDR,…  services: sources that may use the name server and service addresses
                        (default 127.0.0.0/8,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16; add a
                        Docker address pool outside them, e.g. 100.64.0.0/10)
  --no-services         no name server, service addresses or listeners, and pods keep the
                        engine's resolver
  --log-max-size SIZE   rotate each container's log file at SIZE (json-file driver; default 10m;
                        k, m or g); applies to containers created from then on
  --log-max-files N     keep N rotated log files per container (default 3; 0 = the engine's own
                        log settings)
  --verbose             debug logging`;

const VALUE_FLAGS = new Set([
  '--hub',
  '--name',
  '--node',
  '--labels',
  '--data-dir',
  '--token',
  '--token-file',
  '--docker-socket',
  '--mqtt-url',
  '--host-path-allow',
  '--secrets-dir',
  '--image-gc-threshold',
  '--default-memory-limit',
  '--allow-cap-add',
  '--service-cidr',
  '--service-clients',
  '--advertise-address',
  '--publish-address',
  '--devices',
  '--devices-file',
  '--device-root',
  '--deny-device-classes',
  '--log-max-size',
  '--log-max-files',
]);
const BOOL_FLAGS = new Set(['--insecure', '--verbose', '--deny-host-network', '--deny-host-ports', '--deny-cap-add', '--no-services']);

/** A DNS-1123 label from the host name, so a bare `orchard agent --hub …` just works. */
export function defaultNodeName(hostname = os.hostname()): string {
  const n = hostname
    .toLowerCase()
    .split('.')[0]
    ?.replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return n === undefined || n === '' ? 'node' : n;
}

export function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new OrchardError('ERR_VALIDATION', `--labels: "${part}" must be key=value`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return parseOrThrow(LabelsSchema, out, 'labels', '--labels');
}

export function parseAgentArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): AgentArgs {
  const values = new Map<string, string>();
  const bools = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i] ?? '';
    const eq = raw.startsWith('--') ? raw.indexOf('=') : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    if (flag === '--help' || flag === '-h') throw new OrchardError('ERR_VALIDATION', AGENT_USAGE);
    if (BOOL_FLAGS.has(flag)) {
      bools.add(flag);
      continue;
    }
    if (!VALUE_FLAGS.has(flag)) throw new OrchardError('ERR_VALIDATION', `unknown flag ${JSON.stringify(raw)}\n${AGENT_USAGE}`);
    const value = eq > 0 ? raw.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '') throw new OrchardError('ERR_VALIDATION', `${flag} needs a value`);
    values.set(flag === '--node' ? '--name' : flag, value);
  }
  const hub = values.get('--hub');
  if (hub === undefined) throw new OrchardError('ERR_VALIDATION', `--hub is required\n${AGENT_USAGE}`);
  const hubs = splitHubs(hub);
  if (hubs.length === 0 || hubs.length > 16) throw new OrchardError('ERR_VALIDATION', `--hub: "${hub}" must name 1 to 16 hubs, comma-separated`);
  for (const h of hubs) {
    if (!/^(https?:\/\/)?[A-Za-z0-9.\-[\]:]+(:\d{1,5})?\/?$/.test(h)) {
      throw new OrchardError('ERR_VALIDATION', `--hub: "${h}" must be HOST[:PORT], https://HOST:PORT or http://HOST:PORT`);
    }
  }
  const name = parseOrThrow(NameSchema, values.get('--name') ?? defaultNodeName(), 'node name', '--name');
  const args: AgentArgs = {
    hub,
    name,
    labels: parseLabels(values.get('--labels') ?? ''),
    dataDir: values.get('--data-dir') ?? '/var/lib/orchard-agent',
    insecure: bools.has('--insecure'),
    verbose: bools.has('--verbose'),
    policy: {
      denyHostNetwork: bools.has('--deny-host-network'),
      denyHostPorts: bools.has('--deny-host-ports'),
      denyCapAdd: bools.has('--deny-cap-add'),
      allowCapAdd: parseAllowCapAdd(values.get('--allow-cap-add')),
      ...parseDenyDeviceClasses(values.get('--deny-device-classes')),
    },
    defaultMemory: parseDefaultMemory(values.get('--default-memory-limit')),
    services: parseServiceArgs(values, bools.has('--no-services')),
    devices: parseDevicesArgs(values),
    deviceRoot: values.get('--device-root') ?? '/',
  };
  if (!args.deviceRoot.startsWith('/')) throw new OrchardError('ERR_VALIDATION', `--device-root: "${args.deviceRoot}" must be an absolute path`);
  if (args.policy.denyCapAdd && values.has('--allow-cap-add'))
    throw new OrchardError('ERR_VALIDATION', '--deny-cap-add refuses every capability add; it cannot be combined with --allow-cap-add');
  const logSize = values.get('--log-max-size');
  const logFiles = values.get('--log-max-files');
  if (logSize !== undefined || logFiles !== undefined) {
    const maxSize = logSize ?? '10m';
    if (!/^[1-9]\d{0,5}[kmg]$/.test(maxSize)) throw new OrchardError('ERR_VALIDATION', `--log-max-size: "${maxSize}" must look like 10m (k, m or g)`);
    const maxFiles = logFiles === undefined ? 3 : Number(logFiles);
    if (!/^\d{1,3}$/.test(logFiles ?? '3') || maxFiles > 100) throw new OrchardError('ERR_VALIDATION', `--log-max-files: "${logFiles}" must be 0 to 100`);
    args.logRotation = { maxSize, maxFiles };
  }
  // A token in a file or the environment keeps it out of `ps` output.
  const tokenFile = values.get('--token-file');
  if (tokenFile !== undefined && values.has('--token')) throw new OrchardError('ERR_VALIDATION', 'give the join token once: --token-file or --token, not both');
  if (tokenFile !== undefined) args.tokenFile = tokenFile;
  else if (values.has('--token')) {
    args.token = values.get('--token')!;
    args.tokenOnCommandLine = true;
  } else if (env.ORCHARD_TOKEN !== undefined && env.ORCHARD_TOKEN !== '') args.token = env.ORCHARD_TOKEN;
  const socket = values.get('--docker-socket');
  if (socket !== undefined) args.dockerSocket = socket;
  try {
    const allow = values.get('--host-path-allow');
    if (allow !== undefined) args.hostPathAllow = parseAllowList(allow);
  } catch (err) {
    throw new OrchardError('ERR_VALIDATION', (err as Error).message);
  }
  const secretsDir = values.get('--secrets-dir');
  if (secretsDir !== undefined) {
    if (!secretsDir.startsWith('/')) throw new OrchardError('ERR_VALIDATION', `--secrets-dir: "${secretsDir}" must be an absolute path`);
    args.secretsDir = secretsDir;
  }
  const gc = values.get('--image-gc-threshold');
  if (gc !== undefined) {
    const m = /^(\d{1,2}(?:\.\d+)?)%?$/.exec(gc.trim());
    if (!m) throw new OrchardError('ERR_VALIDATION', `--image-gc-threshold: "${gc}" must be a percentage like 10% (0 turns image GC off)`);
    args.imageGcThresholdPercent = Number(m[1]);
  }
  const mqttUrl = values.get('--mqtt-url');
  if (mqttUrl !== undefined) {
    if (!/^mqtts?:\/\/[A-Za-z0-9.\-[\]:]+:\d{1,5}\/?$/.test(mqttUrl))
      throw new OrchardError('ERR_VALIDATION', `--mqtt-url: "${mqttUrl}" must be mqtts://HOST:PORT or mqtt://HOST:PORT`);
    // The node credential must not cross the wire in clear text unless the operator said so.
    if (mqttUrl.startsWith('mqtt://') && !args.insecure)
      throw new OrchardError('ERR_VALIDATION', '--mqtt-url: mqtt:// (no TLS) needs --insecure; use mqtts://');
    args.mqttUrl = mqttUrl;
  }
  return args;
}

/** `--devices` or `--devices-file` (not both); the defaults when neither. */
export function parseDevicesArgs(values: ReadonlyMap<string, string>): AgentArgs['devices'] {
  const flag = values.get('--devices');
  const file = values.get('--devices-file');
  if (flag !== undefined && file !== undefined)
    throw new OrchardError('ERR_VALIDATION', 'give host device classes once: --devices or --devices-file, not both');
  if (file !== undefined) return { file };
  return { classes: parseDevicesFlag(flag ?? DEFAULT_DEVICES) };
}

/** `--deny-device-classes serial,video`: classes pods may not ask for here. */
export function parseDenyDeviceClasses(value: string | undefined): { denyDeviceClasses?: string[] } {
  if (value === undefined) return {};
  const classes = value
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '');
  return { denyDeviceClasses: parseOrThrow(z.array(DeviceClassSchema).max(32), [...new Set(classes)], 'device classes', '--deny-device-classes') };
}

/** `--service-cidr`, `--advertise-address`, `--publish-address`; false with `--no-services` (which the others contradict). */
export function parseServiceArgs(values: ReadonlyMap<string, string>, off: boolean): AgentServiceArgs | false {
  const given = ['--service-cidr', '--advertise-address', '--publish-address', '--service-clients'].filter((f) => values.has(f));
  if (off) {
    if (given.length > 0) throw new OrchardError('ERR_VALIDATION', `--no-services turns services off; it cannot be combined with ${given.join(', ')}`);
    return false;
  }
  const out: AgentServiceArgs = {
    serviceCidr: parseServiceCidr(values.get('--service-cidr') ?? DEFAULT_SERVICE_CIDR).text,
    publishAddress: values.get('--publish-address') ?? '0.0.0.0',
  };
  if (!isIpv4(out.publishAddress))
    throw new OrchardError('ERR_VALIDATION', `--publish-address: "${out.publishAddress}" must be an IPv4 address like 0.0.0.0 or 192.168.1.20`);
  const clients = values.get('--service-clients');
  if (clients !== undefined) {
    const list = clients
      .split(',')
      .map((c) => c.trim())
      .filter((c) => c !== '');
    for (const c of list) {
      try {
        parseCidr(c);
      } catch {
        throw new OrchardError('ERR_VALIDATION', `--service-clients: "${c}" must be an IPv4 range like 100.64.0.0/10`);
      }
    }
    if (list.length === 0) throw new OrchardError('ERR_VALIDATION', '--service-clients needs at least one range');
    out.clientCidrs = list;
  }
  const advertise = values.get('--advertise-address');
  if (advertise !== undefined) {
    if (!isIpv4(advertise) || advertise === '0.0.0.0')
      throw new OrchardError('ERR_VALIDATION', `--advertise-address: "${advertise}" must be this node's IPv4 address, like 192.168.1.20`);
    out.advertiseAddress = advertise;
  }
  return out;
}

/** `--allow-cap-add SYS_ADMIN,NET_ADMIN` (CAP_ prefix and case forgiven; ALL = any): sorted, deduplicated; [] when not given. */
export function parseAllowCapAdd(raw: string | undefined): Array<Capability | 'ALL'> {
  if (raw === undefined) return [];
  const names = raw
    .split(',')
    .map((c) => c.trim().toUpperCase().replace(/^CAP_/, ''))
    .filter((c) => c !== '');
  if (names.length === 0) throw new OrchardError('ERR_VALIDATION', '--allow-cap-add needs capability names, like SYS_ADMIN,NET_ADMIN');
  const parsed = AllowCapAddSchema.safeParse(names);
  if (!parsed.success) {
    // One parse of the whole list; each issue's first path element is the index of a bad name.
    const bad = [...new Set(parsed.error.issues.map((i) => names[Number(i.path[0])]).filter((n) => n !== undefined))];
    throw new OrchardError(
      'ERR_VALIDATION',
      `--allow-cap-add: ${bad.length > 0 ? bad.join(', ') : names.join(', ')}: must be a Linux capability name without the CAP_ prefix, like SYS_ADMIN, or ALL`,
    );
  }
  return [...new Set(parsed.data)].sort();
}

/** The join token from `--token-file` (trimmed); warns when others may read the file. */
export function readTokenFile(path: string, warn: (msg: string) => void): string {
  let text: string;
  try {
    if ((statSync(path).mode & 0o077) !== 0) warn(`--token-file ${path} is readable by other users; chmod 600 it`);
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new OrchardError('ERR_VALIDATION', `--token-file: cannot read ${path}: ${(err as Error).message}`);
  }
  if (text === '') throw new OrchardError('ERR_VALIDATION', `--token-file: ${path} is empty`);
  return text;
}

/**
 * The join token to start with. `--token-file` names a file that is only needed for the first
 * join: once <dataDir>/identity.json exists the operator may delete it (docs/security.md), so a
 * missing file then means "start from the saved identity", not an error. Any other read problem
 * (unreadable, empty) still fails, as does a missing file before the first join.
 */
export function joinToken(
  args: Pick<AgentArgs, 'token' | 'tokenFile' | 'dataDir'>,
  log: { warn(msg: string): void; info(msg: string): void },
): string | undefined {
  if (args.tokenFile === undefined) return args.token;
  const identity = join(args.dataDir, IDENTITY_FILE);
  if (!existsSync(args.tokenFile) && existsSync(identity)) {
    log.info(`--token-file ${args.tokenFile} is gone; starting from the saved identity ${identity}`);
    return undefined;
  }
  return readTokenFile(args.tokenFile, (m) => log.warn(m));
}

/** `--default-memory-limit`: a quantity (256Mi, 1G) or a percentage of the engine's memory (75%); 0 = none. */
export function parseDefaultMemory(raw: string | undefined): DefaultMemory {
  if (raw === undefined) return { percent: DEFAULT_MEMORY_LIMIT_PERCENT };
  const pct = /^(\d{1,3}(?:\.\d+)?)%$/.exec(raw.trim());
  if (pct) {
    const percent = Number(pct[1]);
    if (percent > 100) throw new OrchardError('ERR_VALIDATION', `--default-memory-limit: "${raw}" must be at most 100%`);
    return percent === 0 ? { bytes: 0 } : { percent };
  }
  const bytes = parseBytes(raw.trim());
  if (bytes === undefined)
    throw new OrchardError('ERR_VALIDATION', `--default-memory-limit: "${raw}" must be a memory quantity like 512Mi, a percentage like 75%, or 0 (none)`);
  if (bytes > 0 && bytes < 6 * 1024 * 1024) throw new OrchardError('ERR_VALIDATION', `--default-memory-limit: "${raw}" is below the engine's minimum of 6Mi`);
  return { bytes };
}

/** The services' side effects, injectable (tests; the data plane is agent/services/proxy.ts). */
export interface AgentServiceDeps {
  checkCidrFree: (cidr: string) => void | Promise<void>;
  createDataPlane: typeof createDataPlane;
  /** Replaces the Docker runtime (integration tests run the real agent process on an in-memory engine). */
  runtime?: ContainerRuntime;
}

export async function runAgent(argv: string[], deps: AgentServiceDeps = { checkCidrFree, createDataPlane }): Promise<void> {
  const args = parseAgentArgs(argv);
  const logger = consoleLogger({ node: args.name }, args.verbose ? 'debug' : 'info');
  const joinOpts: Parameters<typeof loadOrJoinPatiently>[0] = {
    dataDir: args.dataDir,
    hub: args.hub,
    node: args.name,
    labels: args.labels,
    insecure: args.insecure,
    log: (msg) => logger.info(msg),
  };
  if (args.tokenOnCommandLine)
    logger.warn('--token is visible to every local user (ps, /proc); use --token-file PATH (mode 0600) or the ORCHARD_TOKEN environment variable');
  const token = joinToken(args, { warn: (m) => logger.warn(m), info: (m) => logger.info(m) });
  if (token !== undefined) joinOpts.token = token;
  // SIGTERM while the hub refuses our name (ERR_NODE_EXISTS) ends the wait, and the agent.
  const waiting = new AbortController();
  const stopWaiting = (): void => waiting.abort();
  process.once('SIGINT', stopWaiting);
  process.once('SIGTERM', stopWaiting);
  let joined: Awaited<ReturnType<typeof loadOrJoinPatiently>>;
  try {
    joined = await loadOrJoinPatiently(joinOpts, { error: (msg) => logger.error(msg), signal: waiting.signal });
  } finally {
    process.off('SIGINT', stopWaiting);
    process.off('SIGTERM', stopWaiting);
  }
  if (joined === undefined) return;
  const identity = joined;
  const runtime =
    deps.runtime ??
    new DockerRuntime({
      ...(args.dockerSocket === undefined ? {} : { socketPath: args.dockerSocket }),
      ...(args.logRotation === undefined ? {} : { logRotation: args.logRotation }),
      log: (m) => logger.warn(m),
    });
  let agentRef: Agent | undefined;
  // Every hub of an etcd group (issue 19): from the join answer, then the leader's retained list.
  const hubs = new HubList({
    dataDir: args.dataDir,
    joinedMqttUrl: identity.mqttUrl,
    hubArgs: splitHubs(args.hub),
    ...(args.mqttUrl === undefined ? {} : { mqttOverride: args.mqttUrl }),
    // A list from an older leader epoch than the agent has taken messages from is a deposed leader's.
    highestEpoch: () => agentRef?.epoch.highest ?? 0,
    logger,
  });
  if (joined.hubs !== undefined) hubs.update(joined.hubs);
  const link: ConstructorParameters<typeof Agent>[0]['link'] = {
    url: args.mqttUrl ?? identity.mqttUrl,
    username: identity.node,
    password: identity.credential,
    hubs,
  };
  if (identity.caPem !== undefined) link.ca = identity.caPem;
  const storage = { secretsDir: args.secretsDir ?? `/run/orchard-agent/${identity.node}`, hostPathAllow: args.hostPathAllow ?? [] };
  let services: ConstructorParameters<typeof Agent>[0]['services'];
  if (args.services !== false) {
    // A range the host already routes elsewhere would shadow real addresses: refuse to start (ERR_SERVICES_CIDR_IN_USE).
    await deps.checkCidrFree(args.services.serviceCidr);
    const advertiseAddress = args.services.advertiseAddress ?? defaultAdvertiseAddress();
    if (advertiseAddress === undefined)
      logger.warn("no non-internal IPv4 address: other nodes cannot reach this node's service endpoints (set --advertise-address)");
    services = {
      dataPlane: deps.createDataPlane({
        serviceCidr: args.services.serviceCidr,
        clock: systemClock,
        logger,
        dns: {},
        ...(args.services.clientCidrs === undefined ? {} : { clientCidrs: args.services.clientCidrs }),
      }),
      serviceCidr: args.services.serviceCidr,
      publishAddress: args.services.publishAddress,
      ...(advertiseAddress === undefined ? {} : { advertiseAddress }),
    };
  }
  let onSignal: (() => void) | undefined;
  // Under orchard-agent-launcher (docs/agent.md "Upgrades"): the hub may upgrade this agent.
  let restartForUpgrade = false;
  const startHub = hubs.apiUrls()[0] ?? splitHubs(args.hub)[0] ?? args.hub;
  // Agent files come from the hub the link is connected to now (the leader that sent the command).
  const currentHubApi = (): string => hubs.apiFor(agentRef?.link?.dialing ?? '') ?? startHub;
  const upgrader = await launcherUpgrader(args, identity, currentHubApi, logger, {
    restart: () => {
      restartForUpgrade = true;
      onSignal?.();
    },
    infoChanged: () => void agentRef?.republishStatus(),
    // Before the agent runs there is nothing to stop gracefully: an orphan must not start (and adopt) alone.
    launcherGone: () => (onSignal !== undefined ? onSignal() : process.exit(0)),
  });
  const agent = new Agent({
    ...(upgrader === undefined
      ? {}
      : {
          upgrade: {
            info: () => upgrader.info(),
            onCommand: (m) => void upgrader.onCommand(m),
            // The launcher confirms a pending upgrade once the hub holds this version's status.
            onReportedIn: () => {
              const msg: ReportedInMessage = { type: 'orchard-agent-reported', version: AGENT_VERSION };
              if (process.connected) process.send?.(msg);
            },
          },
        }),
    node: identity.node,
    labels: args.labels,
    dataDir: args.dataDir,
    runtime,
    link,
    logger,
    storage,
    imageGcThresholdPercent: args.imageGcThresholdPercent ?? 10,
    policy: args.policy,
    defaultMemory: args.defaultMemory,
    devices: new DeviceWatcher({
      root: args.deviceRoot,
      classes: 'file' in args.devices ? await readDeviceClassesFile(args.devices.file) : args.devices.classes,
      logger,
    }),
    ...(services === undefined ? {} : { services }),
  });

  agentRef = agent;
  const stopped = new Promise<void>((resolve) => {
    onSignal = resolve;
  });
  const handler = (sig: NodeJS.Signals): void => {
    logger.info('stopping (workloads keep running)', { signal: sig });
    onSignal?.();
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  // The agent's own timers are unref'd (protocol/clock.ts): while the link is down between two
  // tries, nothing else may hold the event loop (the engine's event stream can be down too, and an
  // in-memory engine has none), and node would end the process (exit 13) instead of reconnecting.
  const hold = setInterval(() => undefined, 1 << 30);
  try {
    await agent.start();
    logger.info('agent started', { hub: args.hub, dataDir: args.dataDir });
    await stopped;
  } finally {
    clearInterval(hold);
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
    await agent.stop();
  }
  if (restartForUpgrade) {
    logger.info('exiting for the launcher to start the staged agent (workloads keep running)');
    // Not an exit code through the CLI's return path: that one reports the command's success.
    process.exit(EXIT_RESTART_FOR_UPGRADE);
  }
}

/** The Upgrader when this process runs under orchard-agent-launcher (its env and IPC channel); undefined otherwise. */
async function launcherUpgrader(
  args: AgentArgs,
  identity: { node: string; credential: string; caPem?: string },
  hubApi: () => string,
  logger: ReturnType<typeof consoleLogger>,
  hooks: { restart(): void; infoChanged(): void; launcherGone(): void },
): Promise<Upgrader | undefined> {
  const agentFile = process.env[LAUNCHER_ENV.agentFile];
  if (agentFile === undefined || agentFile === '' || typeof process.send !== 'function') return undefined;
  // The IPC channel must not keep a stopping agent alive; a launcher that died takes the agent with it
  // (systemd restarts the launcher, which starts one agent again: never two agents for one node).
  process.channel?.unref();
  process.once('disconnect', () => {
    logger.warn('the launcher is gone; stopping (workloads keep running)');
    hooks.launcherGone();
  });
  const upgrader = new Upgrader({
    node: identity.node,
    credential: identity.credential,
    hub: () => parseHubAddress(hubApi(), args.insecure),
    caPem: identity.caPem,
    agentFile,
    currentVersion: AGENT_VERSION,
    clock: systemClock,
    logger,
    restart: hooks.restart,
    infoChanged: hooks.infoChanged,
  });
  await upgrader.load();
  logger.info('running under orchard-agent-launcher: upgrades from the hub are on', { file: agentFile, version: AGENT_VERSION });
  return upgrader;
}
