import os from 'node:os';
import { OrchardError, parseOrThrow } from '../protocol/errors.js';
import { LabelsSchema, NameSchema } from '../protocol/manifest.js';
import { Agent } from './agent.js';
import { consoleLogger } from './clock.js';
import { DockerRuntime } from './runtime/docker-runtime.js';
import { loadOrJoinPatiently } from './security/join.js';
import { parseAllowList } from './storage/host-path.js';

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
}

export const AGENT_USAGE = `usage: orchard agent --hub HOST[:PORT]|https://HOST:PORT|http://HOST:PORT [options]
  --name NAME           node name (default: this host's name)
  --labels k=v,k=v      labels this device reports about itself; the hub files them as
                        node.orchard.dev/k=v (placement labels a node cannot change come from
                        the join token and 'orchard label node')
  --data-dir DIR        state directory (default /var/lib/orchard-agent)
  --token TOKEN         join token (first start only; or env ORCHARD_TOKEN)
  --insecure            allow a plain-HTTP hub / skip CA pinning (labs only)
  --docker-socket PATH  container engine socket (default: DOCKER_HOST or /var/run/docker.sock)
  --mqtt-url URL        mqtts://HOST:PORT (or mqtt://) to dial instead of the hub's join answer
                        (a relay or TCP proxy in front of the broker; TLS still verifies the hub CA)
  --host-path-allow P,… host path prefixes pods may mount as hostPath volumes (default: none)
  --secrets-dir DIR     tmpfs directory for secret/config files (default /run/orchard-agent/<name>;
                        a tmpfs is mounted there when it is not on one and the agent is root)
  --image-gc-threshold P  remove unused images (never the current or previous revision's) when free
                        disk drops below P percent, and report DiskPressure (default 10%; 0 = off)
  --verbose             debug logging`;

const VALUE_FLAGS = new Set(['--hub', '--name', '--node', '--labels', '--data-dir', '--token', '--docker-socket', '--mqtt-url', '--host-path-allow', '--secrets-dir', '--image-gc-threshold']);
const BOOL_FLAGS = new Set(['--insecure', '--verbose']);

/** A DNS-1123 label from the host name, so a bare `orchard agent --hub …` just works. */
export function defaultNodeName(hostname = os.hostname()): string {
  const n = hostname.toLowerCase().split('.')[0]?.replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
  return n === undefined || n === '' ? 'node' : n;
}

export function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
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
  if (!/^(https?:\/\/)?[A-Za-z0-9.\-[\]:]+(:\d{1,5})?\/?$/.test(hub)) {
    throw new OrchardError('ERR_VALIDATION', `--hub: "${hub}" must be HOST[:PORT], https://HOST:PORT or http://HOST:PORT`);
  }
  const name = parseOrThrow(NameSchema, values.get('--name') ?? defaultNodeName(), 'node name', '--name');
  const args: AgentArgs = {
    hub,
    name,
    labels: parseLabels(values.get('--labels') ?? ''),
    dataDir: values.get('--data-dir') ?? '/var/lib/orchard-agent',
    insecure: bools.has('--insecure'),
    verbose: bools.has('--verbose'),
  };
  // A token in the environment keeps it out of `ps` output.
  const token = values.get('--token') ?? env.ORCHARD_TOKEN;
  if (token !== undefined && token !== '') args.token = token;
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
    if (!/^mqtts?:\/\/[A-Za-z0-9.\-[\]:]+:\d{1,5}\/?$/.test(mqttUrl)) throw new OrchardError('ERR_VALIDATION', `--mqtt-url: "${mqttUrl}" must be mqtts://HOST:PORT or mqtt://HOST:PORT`);
    // The node credential must not cross the wire in clear text unless the operator said so.
    if (mqttUrl.startsWith('mqtt://') && !args.insecure) throw new OrchardError('ERR_VALIDATION', '--mqtt-url: mqtt:// (no TLS) needs --insecure; use mqtts://');
    args.mqttUrl = mqttUrl;
  }
  return args;
}

export async function runAgent(argv: string[]): Promise<void> {
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
  if (args.token !== undefined) joinOpts.token = args.token;
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
  const runtime = new DockerRuntime({ ...(args.dockerSocket === undefined ? {} : { socketPath: args.dockerSocket }), log: (m) => logger.warn(m) });
  const link: ConstructorParameters<typeof Agent>[0]['link'] = { url: args.mqttUrl ?? identity.mqttUrl, username: identity.node, password: identity.credential };
  if (identity.caPem !== undefined) link.ca = identity.caPem;
  const storage = { secretsDir: args.secretsDir ?? `/run/orchard-agent/${identity.node}`, hostPathAllow: args.hostPathAllow ?? [] };
  const agent = new Agent({ node: identity.node, labels: args.labels, dataDir: args.dataDir, runtime, link, logger, storage, imageGcThresholdPercent: args.imageGcThresholdPercent ?? 10 });

  let onSignal: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => {
    onSignal = resolve;
  });
  const handler = (sig: NodeJS.Signals): void => {
    logger.info('stopping (workloads keep running)', { signal: sig });
    onSignal?.();
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  try {
    await agent.start();
    logger.info('agent started', { hub: args.hub, dataDir: args.dataDir });
    await stopped;
  } finally {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
    await agent.stop();
  }
}
