/**
 * Service data-path benchmark (issue 15), side by side in one run on this machine's Docker Engine.
 * Run: npx tsx scripts/bench/services.ts [--bulk-mib 256] [--rr 2000] [--conns 10000] [--udp 2000] [--runs 3] [--no-swarm]
 *        [--conns-client c|node] [--phases bulk,rr,conns,udp] [--warmup 1]
 *      npx tsx scripts/bench/services.ts --kill [--rate 200] [--seconds 15] [--kill-at 5]
 *
 * The server: a container of orchard-test/busybox:1 (`sleep`) on the default bridge, with this
 * script's Node servers entered into its network namespace (nsenter -n), so the path is the
 * container's veth and bridge: a sink (answers with the byte count), an echo, an echo-once (64 B
 * back, then the server closes first, so TIME_WAIT stays in its netns) and a UDP echo. Busybox's
 * own servers bottleneck the measurement (`nc -ll -e cat` forks and execs per connection, listen
 * backlog 2: ≈ 700 connections/s serially, timeouts at 32 concurrent; `nc -e wc -c` sinks
 * ≈ 200 MiB/s) and its nc has no UDP. The client is this process on the host (a pod's client
 * would add the same bridge hop to every path). Paths:
 *   direct              client → container bridge address
 *   orchard local       client → 10.252.0.2 on lo → TcpProxy/UdpProxy (agent/services) → container
 *   orchard cross-node  client → 10.252.0.2 on lo → TcpProxy ("node A" process) → 127.0.0.3
 *                       EndpointPortServer ("node B" process, 1-byte preamble) → container
 *   swarm ingress       client → 127.0.0.1:published port → Swarm routing mesh → task
 *   swarm VIP           a client container on an attachable overlay → service VIP → task (the
 *                       measuring Node process is entered into that container's netns)
 *   swarm overlay       same client container → the task's overlay address (no VIP; on one
 *                       node the overlay's bridge, VXLAN only carries traffic to other nodes)
 * Each path --runs times, interleaved: bulk (--bulk-mib MiB through one connection, MiB/s),
 * 64 B request/response (--rr sequential round trips on one connection, p50/p99 µs), new
 * connections/s (--conns, 32 concurrent, each an echo-once), UDP 64 B round trips (p50), and
 * the proxy processes' CPU per connection and per MiB of bulk (user + system time of the node
 * processes during that phase alone: a figure that moves far less with the machine's load).
 * Every path first gets --warmup unmeasured rounds (smaller sizes), and run i starts at path i
 * (rotated order), so no path always runs right after another. New connections are opened by
 * lib/connrate.c (built with gcc at start) against lib/echo-once.c in the container's netns,
 * since the Node client and server cost as much CPU per connection as the proxy (--conns-client
 * node keeps the Node pair). The proxies check the client's source as ServiceProxy's do. Before Swarm: whether this kernel can make a VXLAN
 * device and has IPVS (Swarm's VIP and ingress are IPVS); the swarm is always left (also on
 * failure and SIGINT).
 *
 * --kill: 3 such containers behind one TcpProxy, a client opening one connection per request at
 * --rate requests/s for --seconds; at --kill-at s one container is `docker kill`ed and its server
 * process SIGKILLed. Prints failed requests (with when they started) and latency percentiles
 * (p99 in the 3 s after the kill), the proxy's retries, replays (tcp-proxy.ts) and ejections.
 *
 * Cleans up what it made: containers labelled orchard.bench=services-<run>, 10.252.0.2/32 on lo,
 * the swarm (and docker_gwbridge if it created it). docs/benchmarks.md records runs.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { systemClock } from '../../protocol/clock.js';
import type { Endpoint } from '../../agent/services/balancer.js';
import { inCidr, parseCidr } from '../../agent/services/addresses.js';
import { EndpointPortServer } from '../../agent/services/endpoint-port-server.js';
import { DEFAULT_DNS_ALLOW_SOURCES } from '../../agent/services/proxy.js';
import { createTcpProxy } from '../../agent/services/raw-tcp-proxy.js';
import { loadRawTcp } from '../../agent/services/raw-tcp.js';
import { UdpProxy } from '../../agent/services/udp-proxy.js';
import { freePort } from '../../test/helpers/procs.js';
import { bulk, newConnections, oneShot, roundTrips, udpRoundTrips, type Latency, type Target } from './lib/net-measure.js';
import { cell, failed, markdownTable, percentile, verdicts, verdictWord, type PathResult, type Runs } from './lib/stats.js';

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'main' },
    spec: { type: 'string', default: '{}' },
    'bulk-mib': { type: 'string', default: '256' },
    rr: { type: 'string', default: '2000' },
    conns: { type: 'string', default: '10000' },
    udp: { type: 'string', default: '2000' },
    runs: { type: 'string', default: '3' },
    'no-swarm': { type: 'boolean', default: false },
    /** Which client opens the new connections: `c` (lib/connrate.c, built with gcc) or `node` (lib/net-measure.ts). */
    'conns-client': { type: 'string', default: 'c' },
    /** Phases to measure: any of bulk, rr, conns, udp (comma-separated). */
    phases: { type: 'string', default: 'bulk,rr,conns,udp' },
    /** Unmeasured rounds of every phase on every path before the first run. */
    warmup: { type: 'string', default: '1' },
    kill: { type: 'boolean', default: false },
    rate: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '15' },
    'kill-at': { type: 'string', default: '5' },
  },
});

const IMAGE = 'orchard-test/busybox:1';
const SERVICE_ADDR = '10.252.0.2';
const NODE_B_ADDR = '127.0.0.3';
const SINK = 5001;
const ECHO = 5002;
const UDP_ECHO = 5003;
const ONCE = 5004;
/** lib/echo-once.c, beside the Node servers, when the C client measures new connections. */
const ONCE_C = 5005;
const CONNS_C = values['conns-client'] === 'c';
const PHASES = new Set((values.phases ?? '').split(','));
const SELF = fileURLToPath(import.meta.url);
const run = promisify(execFile);
const log = (m: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sh = (cmd: string, args: string[], timeout = 60_000): string =>
  execFileSync(cmd, args, { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
const errText = (err: unknown): string => {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr?.trim() || e.message || String(err)).split('\n')[0] ?? String(err);
};

// ---------------------------------------------------------------------------------------------
// Child roles: a simulated node's data plane, a UDP echo in the container's netns, a measuring
// client in another container's netns.

interface NodeSpec {
  tcp?: { port: number; endpoints: Endpoint[] }[];
  udp?: { port: number; endpoints: Endpoint[] }[];
  endpointPorts?: { peers: string[]; target: { host: string; port: number } }[];
}
interface NodeReady {
  tcp: number[];
  udp: number[];
  endpointPorts: number[];
}
interface NodeStats {
  cpuMicros: number;
  retries: number;
  replays: number;
  ejections: number;
}

/** The source check ServiceProxy gives every service-address listener (its allow list, remembered per address). */
function serviceAllowSource(): (address: string) => boolean {
  const allow = DEFAULT_DNS_ALLOW_SOURCES.map(parseCidr);
  const memo = new Map<string, boolean>();
  return (a) => {
    let ok = memo.get(a);
    if (ok === undefined) memo.set(a, (ok = allow.some((c) => inCidr(a, c))));
    return ok;
  };
}

async function nodeRole(spec: NodeSpec): Promise<void> {
  const allowSource = serviceAllowSource();
  const tcp = await Promise.all(
    (spec.tcp ?? []).map(async (s) => {
      // What the agent runs: raw libuv handles where this Node has them (ORCHARD_PROXY_NET=1: net.Socket, for an A/B).
      const p = createTcpProxy({ address: SERVICE_ADDR, port: s.port, policy: 'cluster', clock: systemClock, allowSource });
      p.setEndpoints(s.endpoints);
      await p.listen();
      return p;
    }),
  );
  const udp = await Promise.all(
    (spec.udp ?? []).map(async (s) => {
      const p = new UdpProxy({ address: SERVICE_ADDR, port: s.port, policy: 'cluster', clock: systemClock });
      p.setEndpoints(s.endpoints);
      await p.listen();
      return p;
    }),
  );
  const eps = await Promise.all(
    (spec.endpointPorts ?? []).map(async (s) => {
      const e = new EndpointPortServer({ address: NODE_B_ADDR, port: 0, peers: s.peers, target: s.target, clock: systemClock });
      return (await e.setReady(true))?.port ?? 0;
    }),
  );
  process.on('message', () => {
    const cpu = process.cpuUsage();
    let retries = 0;
    let ejections = 0;
    for (const p of [...tcp, ...udp]) {
      const c = p.counters();
      retries += c.retries;
      for (const e of c.endpoints.values()) ejections += e.ejections;
    }
    const replays = tcp.reduce((n, p) => n + p.counters().replays, 0);
    process.send?.({ cpuMicros: cpu.user + cpu.system, retries, replays, ejections } satisfies NodeStats);
  });
  process.send?.({ tcp: spec.tcp?.map((s) => s.port) ?? [], udp: spec.udp?.map((s) => s.port) ?? [], endpointPorts: eps } satisfies NodeReady);
}

/** Sink, echo and UDP echo, run inside the server container's network namespace. */
function serverRole(): void {
  const sink = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    let n = 0;
    s.on('data', (d: Buffer) => void (n += d.length));
    s.on('end', () => s.end(String(n)));
    s.on('error', () => undefined);
  });
  const echo = net.createServer({ noDelay: true }, (s) => {
    s.on('data', (d: Buffer) => s.write(d));
    s.on('end', () => s.end());
    s.on('error', () => undefined);
  });
  // One 64 B echo, then the server closes first (as an HTTP server does), so TIME_WAIT stays in
  // the server's netns: 10,000 client-first closes per path would exhaust the host's ephemeral ports.
  const once = net.createServer({ noDelay: true }, (s) => {
    let n = 0;
    s.on('data', (d: Buffer) => {
      s.write(d);
      n += d.length;
      if (n >= 64) s.end();
    });
    s.on('error', () => undefined);
  });
  const udp = dgram.createSocket('udp4');
  udp.on('message', (m, r) => udp.send(m, r.port, r.address));
  let pending = 4;
  const ready = (): void => void (--pending === 0 && process.stdout.write('ready\n'));
  sink.listen({ port: SINK, host: '0.0.0.0', backlog: 1024 }, ready);
  echo.listen({ port: ECHO, host: '0.0.0.0', backlog: 1024 }, ready);
  once.listen({ port: ONCE, host: '0.0.0.0', backlog: 1024 }, ready);
  udp.bind(UDP_ECHO, '0.0.0.0', ready);
}

/** Where a path's sink, echo and echo-once servers answer (`onceC`: lib/echo-once.c, with --conns-client c). */
interface Ports {
  host: string;
  sink: number;
  echo: number;
  once: number;
  onceC?: number;
}
/** How much one measurement does: the run's sizes, or less for a warm-up round. */
interface Sizes {
  bulkMiB: number;
  rr: number;
  conns: number;
}
interface MeasureSpec extends Ports {
  probeOnly: boolean;
  sizes: Sizes;
}
/** `cpu`: the proxy processes' CPU µs during the bulk and new-connections phases; `clientCpuPerConn`: the C client's own. */
type Measured = { bulk: number; rr: Latency; conns: number; clientCpuPerConn?: number; cpu?: { bulk: number; conns: number } } | { error: string };

/** `around` brackets one phase (bulk, new connections) alone: the proxy's CPU per MiB and per connection. */
type Around = () => Promise<() => Promise<number>>;

const RUN_SIZES: Sizes = { bulkMiB: Number(values['bulk-mib']), rr: Number(values.rr), conns: Number(values.conns) };
const WARMUP_SIZES: Sizes = { bulkMiB: Math.min(32, RUN_SIZES.bulkMiB), rr: Math.min(500, RUN_SIZES.rr), conns: Math.min(2000, RUN_SIZES.conns) };

/** The C tools' directory (built once by the main process, passed to child roles in the environment). */
const C_TOOLS_ENV = 'ORCHARD_BENCH_CTOOLS';

function buildCTools(): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'orchard-bench-c-'));
  const src = fileURLToPath(new URL('./lib/', import.meta.url));
  for (const tool of ['connrate', 'echo-once']) {
    try {
      sh('gcc', ['-O2', '-o', join(dir, tool), join(src, `${tool}.c`)]);
    } catch (err) {
      throw new Error(`--conns-client c needs gcc to build lib/${tool}.c (${errText(err)}); or use --conns-client node`, { cause: err });
    }
  }
  return dir;
}

/** `n` new connections, 32 at a time, by lib/connrate.c (an epoll loop in C: the Node client costs as much CPU per connection as the proxy). */
async function newConnectionsC(t: Target, n: number): Promise<{ rate: number; cpuPerConn: number }> {
  const bin = join(process.env[C_TOOLS_ENV] ?? '', 'connrate');
  let stdout: string;
  try {
    ({ stdout } = await run(bin, [t.host, String(t.port), String(n), '32', '5000'], { timeout: 600_000 }));
  } catch (err) {
    const e = err as { stdout?: string };
    throw new Error(`connrate ${t.host}:${t.port}: ${e.stdout?.trim() || errText(err)}`, { cause: err });
  }
  const r = JSON.parse(stdout) as { connsPerSec: number; cpuUsPerConn: number; failed: number };
  return { rate: r.connsPerSec, cpuPerConn: r.cpuUsPerConn };
}

async function measureTcp(p: Ports, probeOnly: boolean, around?: Around, sizes: Sizes = RUN_SIZES): Promise<Measured> {
  const at = (port: number): Target => ({ host: p.host, port });
  try {
    await oneShot(at(p.once), 3000);
    if (CONNS_C && p.onceC !== undefined) await oneShot(at(p.onceC), 3000);
    if (probeOnly) return { bulk: 0, rr: { p50: 0, p99: 0 }, conns: 0 };
    let b = 0;
    let bulkCpu: number | undefined;
    if (PHASES.has('bulk')) {
      const bulkDone = await around?.();
      b = await bulk(at(p.sink), sizes.bulkMiB);
      bulkCpu = await bulkDone?.();
    }
    const rr = PHASES.has('rr') ? await roundTrips(at(p.echo), sizes.rr) : { p50: 0, p99: 0 };
    let conns = 0;
    let connsCpu: number | undefined;
    let clientCpuPerConn: number | undefined;
    if (PHASES.has('conns')) {
      const connsDone = await around?.();
      if (CONNS_C && p.onceC !== undefined) {
        const c = await newConnectionsC(at(p.onceC), sizes.conns);
        conns = c.rate;
        clientCpuPerConn = c.cpuPerConn;
      } else conns = await newConnections(at(p.once), sizes.conns);
      connsCpu = await connsDone?.();
    }
    return {
      bulk: b,
      rr,
      conns,
      ...(clientCpuPerConn === undefined ? {} : { clientCpuPerConn }),
      ...(around === undefined ? {} : { cpu: { bulk: bulkCpu ?? 0, conns: connsCpu ?? 0 } }),
    };
  } catch (err) {
    return { error: errText(err) };
  }
}

async function measureRole(spec: MeasureSpec): Promise<void> {
  const r = await measureTcp(spec, spec.probeOnly, undefined, spec.sizes);
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

// ---------------------------------------------------------------------------------------------
// The main process: setup, cleanup, paths, runs, report.

const children = new Set<ChildProcess>();
const undo: { what: string; fn: () => void }[] = [];
let cleanedUp = false;
function cleanup(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const c of children) c.kill('SIGKILL');
  for (const u of undo.reverse()) {
    try {
      u.fn();
    } catch (err) {
      log(`cleanup: ${u.what}: ${errText(err)}`);
    }
  }
}

function spawnSelf(role: string, spec: unknown, netnsPid?: number, ipc = true): ChildProcess {
  const node = [
    process.execPath,
    '--import',
    'tsx',
    SELF,
    '--role',
    role,
    '--spec',
    JSON.stringify(spec),
    ...process.argv.slice(2).filter((a) => a !== '--kill'),
  ];
  const [cmd, ...args] = netnsPid === undefined ? node : ['nsenter', '-t', String(netnsPid), '-n', '--', ...node];
  const child = spawn(cmd ?? 'nsenter', args, { stdio: ['ignore', 'pipe', 'inherit', ...(ipc ? (['ipc'] as const) : [])] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function firstMessage<T>(c: ChildProcess, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    c.once('message', (m) => resolve(m as T));
    c.once('exit', (code) => reject(new Error(`${what} exited (${code})`)));
  });
}

function firstLine(c: ChildProcess, what: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
    c.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(buf.slice(0, nl));
      }
    });
    c.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code})`));
    });
  });
}

async function startNode(name: string, spec: NodeSpec): Promise<{ proc: ChildProcess; ready: NodeReady; stats: () => Promise<NodeStats> }> {
  const proc = spawnSelf('node', spec);
  const ready = await firstMessage<NodeReady>(proc, name);
  return { proc, ready, stats: () => new Promise((resolve) => (proc.once('message', (m) => resolve(m as NodeStats)), proc.send('stats'))) };
}

function addServiceAddress(): void {
  const have = sh('ip', ['-o', 'addr', 'show', 'dev', 'lo']);
  if (have.includes(`${SERVICE_ADDR}/32`)) throw new Error(`${SERVICE_ADDR}/32 is already on lo (another run?); remove it first`);
  sh('ip', ['addr', 'add', `${SERVICE_ADDR}/32`, 'dev', 'lo']);
  undo.push({ what: `ip addr del ${SERVICE_ADDR}/32`, fn: () => sh('ip', ['addr', 'del', `${SERVICE_ADDR}/32`, 'dev', 'lo']) });
}

interface Container {
  id: string;
  ip: string;
  pid: number;
}

function startContainer(label: string, extra: string[], cmd: string[]): Container {
  const id = sh('docker', ['run', '-d', '--label', label, ...extra, IMAGE, ...cmd]);
  undo.push({ what: `docker rm -f ${id.slice(0, 12)}`, fn: () => sh('docker', ['rm', '-f', id]) });
  // Pid first: the address is empty on a network other than the default bridge.
  const [pid = '0', ip = ''] = sh('docker', ['inspect', '-f', '{{.State.Pid}}|{{.NetworkSettings.IPAddress}}', id]).split('|');
  return { id, ip, pid: Number(pid) };
}

/** The sink/echo servers entered into a container's network namespace. */
async function startServerIn(pid: number): Promise<ChildProcess> {
  const c = spawnSelf('server', {}, pid, false);
  await firstLine(c, 'server in the container netns', 15_000);
  if (CONNS_C) {
    const e = spawn('nsenter', ['-t', String(pid), '-n', '--', join(process.env[C_TOOLS_ENV] ?? '', 'echo-once'), String(ONCE_C)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.add(e);
    e.once('exit', () => children.delete(e));
    await firstLine(e, 'echo-once (C) in the container netns', 15_000);
    // The Node server dies with its container (kill scenario); the C one goes with it.
    c.once('exit', () => e.kill('SIGKILL'));
  }
  return c;
}

async function waitListening(t: Target, what: string): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    try {
      await oneShot(t, 1000);
      return;
    } catch (err) {
      if (Date.now() > until) throw new Error(`${what} not answering: ${errText(err)}`, { cause: err });
      await sleep(100);
    }
  }
}

interface Path extends Ports {
  name: string;
  udp?: number;
  /** Measure from inside this process's network namespace (a client container). */
  netns?: number;
  /** The processes whose CPU counts as the proxy's. */
  proxies?: (() => Promise<NodeStats>)[];
  failed?: string;
}

interface Collected extends PathResult {
  udp: Runs;
  cpuPerConn: Runs;
  cpuPerMiB: Runs;
  clientCpuPerConn: Runs;
}

// ---- Swarm ----------------------------------------------------------------------------------

interface SwarmSetup {
  kernel: string;
  paths: Path[];
  notes: string[];
}

function kernelCheck(): string {
  let vxlan: string;
  try {
    // A throwaway network namespace: the device vanishes with it.
    sh('unshare', ['-n', 'ip', 'link', 'add', 'vxbench0', 'type', 'vxlan', 'id', '42', 'dstport', '4789']);
    vxlan = 'VXLAN device: yes';
  } catch (err) {
    vxlan = `VXLAN device: NO (${errText(err)})`;
  }
  const ipvs = existsSync('/proc/net/ip_vs') ? 'IPVS: yes' : 'IPVS: NO (/proc/net/ip_vs absent: the kernel has no ip_vs, and this engine cannot load modules)';
  return `${vxlan}; ${ipvs}`;
}

async function swarmSetup(label: string, runId: string): Promise<SwarmSetup> {
  const kernel = kernelCheck();
  const notes: string[] = [];
  const fail = (why: string): SwarmSetup => ({
    kernel,
    notes,
    paths: ['swarm ingress', 'swarm VIP', 'swarm overlay'].map((name) => ({ name, host: '', sink: 0, echo: 0, once: 0, failed: why })),
  });
  const state = sh('docker', ['info', '--format', '{{.Swarm.LocalNodeState}}']);
  if (state !== 'inactive') return fail(`engine's swarm state is "${state}" (not ours to touch)`);
  const gwbridge = (): boolean => sh('docker', ['network', 'ls', '--format', '{{.Name}}']).split('\n').includes('docker_gwbridge');
  const gwbridgeBefore = gwbridge();
  // Pushed first, so it runs after the service, network and client container are gone.
  undo.push({
    what: 'docker swarm leave --force',
    fn: () => {
      try {
        // Slow on a loaded engine (over 60 s at load 23): it finished after the first timeout once, leaving docker_gwbridge behind.
        sh('docker', ['swarm', 'leave', '--force'], 240_000);
      } finally {
        if (!gwbridgeBefore && gwbridge()) sh('docker', ['network', 'rm', 'docker_gwbridge']);
      }
    },
  });
  try {
    sh('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1']);
  } catch (err) {
    notes.push(`swarm init --advertise-addr 127.0.0.1 refused (${errText(err)}); used the bridge gateway`);
    const gw = sh('docker', ['network', 'inspect', 'bridge', '-f', '{{(index .IPAM.Config 0).Gateway}}']);
    sh('docker', ['swarm', 'init', '--advertise-addr', gw]);
  }
  const net = `orchard-bench-${runId}`;
  const svc = `orchard-bench-${runId}`;
  try {
    // No undo of its own: leaving the swarm removes its overlay networks.
    sh('docker', ['network', 'create', '-d', 'overlay', '--attachable', '--label', label, net]);
  } catch (err) {
    return fail(`overlay network create: ${errText(err)}`);
  }
  const [pSink, pEcho, pOnce, pOnceC] = [await freePort(), await freePort(), await freePort(), await freePort()];
  try {
    sh('docker', [
      'service',
      'create',
      '--detach',
      '--name',
      svc,
      '--label',
      label,
      '--container-label',
      label,
      '--network',
      net,
      '--publish',
      `published=${pSink},target=${SINK}`,
      '--publish',
      `published=${pEcho},target=${ECHO}`,
      '--publish',
      `published=${pOnce},target=${ONCE}`,
      '--publish',
      `published=${pOnceC},target=${ONCE_C}`,
      '--no-resolve-image',
      '--stop-grace-period',
      '1s',
      IMAGE,
      'sleep',
      '3600',
    ]);
    undo.push({ what: `docker service rm ${svc}`, fn: () => sh('docker', ['service', 'rm', svc]) });
  } catch (err) {
    return fail(`service create: ${errText(err)}`);
  }
  let task = '';
  for (const until = Date.now() + 60_000; Date.now() < until && task === ''; await sleep(250)) {
    task = sh('docker', ['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${svc}`, '--filter', 'status=running']).split('\n')[0] ?? '';
  }
  if (task === '') return fail('the service task did not reach running within 60 s');
  const netId = sh('docker', ['network', 'inspect', net, '-f', '{{.Id}}']);
  const vips = JSON.parse(sh('docker', ['service', 'inspect', svc, '-f', '{{json .Endpoint.VirtualIPs}}'])) as { NetworkID: string; Addr: string }[];
  const vip = vips.find((v) => v.NetworkID === netId)?.Addr.split('/')[0] ?? '';
  const taskIp = sh('docker', ['inspect', task, '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`]);
  await startServerIn(Number(sh('docker', ['inspect', task, '-f', '{{.State.Pid}}'])));
  const client = startContainer(label, ['--network', net], ['sleep', '3600']);
  notes.push(`service VIP ${vip}, task overlay address ${taskIp}, published ports ${pSink}/${pEcho}/${pOnce} (sink/echo/echo once)`);
  const paths: Path[] = [
    { name: 'swarm ingress', host: '127.0.0.1', sink: pSink, echo: pEcho, once: pOnce, onceC: pOnceC },
    { name: 'swarm VIP', host: vip, sink: SINK, echo: ECHO, once: ONCE, onceC: ONCE_C, netns: client.pid },
    { name: 'swarm overlay', host: taskIp, sink: SINK, echo: ECHO, once: ONCE, onceC: ONCE_C, netns: client.pid },
  ];
  for (const p of paths) {
    const r = p.netns === undefined ? await measureTcp(p, true) : await measureIn(p.netns, p, true);
    if ('error' in r) p.failed = r.error;
  }
  return { kernel, notes, paths };
}

async function measureIn(pid: number, p: Ports, probeOnly: boolean, sizes: Sizes = RUN_SIZES): Promise<Measured> {
  const c = spawnSelf(
    'measure',
    { host: p.host, sink: p.sink, echo: p.echo, once: p.once, ...(p.onceC === undefined ? {} : { onceC: p.onceC }), probeOnly, sizes } satisfies MeasureSpec,
    pid,
    false,
  );
  try {
    return JSON.parse(await firstLine(c, 'measuring client', 120_000)) as Measured;
  } catch (err) {
    return { error: errText(err) };
  }
}

// ---- The data-path scenario -----------------------------------------------------------------

async function dataPath(label: string, runId: string): Promise<string> {
  const runs = Math.max(1, Number(values.runs));
  const load0 = os.loadavg();
  addServiceAddress();
  const server = startContainer(label, [], ['sleep', '3600']);
  await startServerIn(server.pid);
  const local = (port: number): Endpoint[] => [{ id: `${server.ip}:${port}`, host: server.ip, port, local: true }];
  const nodeB = await startNode('node B', {
    endpointPorts: [SINK, ECHO, ONCE, ONCE_C].map((port) => ({ peers: ['127.0.0.1', SERVICE_ADDR], target: { host: server.ip, port } })),
  });
  const [bSink = 0, bEcho = 0, bOnce = 0, bOnceC = 0] = nodeB.ready.endpointPorts;
  const remote = (port: number): Endpoint[] => [{ id: `${NODE_B_ADDR}:${port}`, host: NODE_B_ADDR, port, local: false }];
  const nodeA = await startNode('node A', {
    tcp: [
      { port: SINK, endpoints: local(SINK) },
      { port: ECHO, endpoints: local(ECHO) },
      { port: ONCE, endpoints: local(ONCE) },
      { port: ONCE_C, endpoints: local(ONCE_C) },
      { port: 6001, endpoints: remote(bSink) },
      { port: 6002, endpoints: remote(bEcho) },
      { port: 6004, endpoints: remote(bOnce) },
      { port: 6005, endpoints: remote(bOnceC) },
    ],
    udp: [{ port: UDP_ECHO, endpoints: local(UDP_ECHO) }],
  });
  const paths: Path[] = [
    { name: 'direct', host: server.ip, sink: SINK, echo: ECHO, once: ONCE, onceC: ONCE_C, udp: UDP_ECHO },
    { name: 'orchard local', host: SERVICE_ADDR, sink: SINK, echo: ECHO, once: ONCE, onceC: ONCE_C, udp: UDP_ECHO, proxies: [nodeA.stats] },
    { name: 'orchard cross-node', host: SERVICE_ADDR, sink: 6001, echo: 6002, once: 6004, onceC: 6005, proxies: [nodeA.stats, nodeB.stats] },
  ];
  await waitListening({ host: server.ip, port: ONCE }, 'server container');
  let swarm: SwarmSetup | undefined;
  if (!values['no-swarm']) {
    log('swarm: setting up');
    swarm = await swarmSetup(label, runId);
    paths.push(...swarm.paths);
    for (const p of swarm.paths) log(`${p.name}: ${p.failed ?? 'reachable'}`);
  }
  const results = new Map<string, Collected>(
    paths.map((p) => [
      p.name,
      { bulk: [], p50: [], p99: [], conns: [], udp: p.udp ? [] : { failed: 'no UDP service' }, cpuPerConn: [], cpuPerMiB: [], clientCpuPerConn: [] },
    ]),
  );
  const warmups = Math.max(0, Number(values.warmup));
  for (let w = 0; w < warmups; w++) {
    for (const p of paths) {
      if (p.failed) continue;
      const m = p.netns === undefined ? await measureTcp(p, false, undefined, WARMUP_SIZES) : await measureIn(p.netns, p, false, WARMUP_SIZES);
      log(`warm-up ${w + 1} ${p.name}: ${'error' in m ? m.error : `${m.conns.toFixed(0)} conn/s`}`);
    }
  }
  const orders: string[] = [];
  for (let i = 0; i < runs; i++) {
    // Run i starts at path i: over as many runs as paths, every path is measured in every
    // position once (the path right after "direct" got better bulk figures on a loaded box).
    const k = i % paths.length;
    const order = [...paths.slice(k), ...paths.slice(0, k)].filter((p) => !p.failed);
    orders.push(order.map((p) => p.name).join(' → '));
    for (const p of order) {
      const r = results.get(p.name);
      if (!r || p.failed) continue;
      const proxies = p.proxies;
      const cpuMicros = async (): Promise<number> => (await Promise.all((proxies ?? []).map((s) => s()))).reduce((sum, c) => sum + c.cpuMicros, 0);
      const around = proxies
        ? async (): Promise<() => Promise<number>> => {
            const cpu0 = await cpuMicros();
            return async () => (await cpuMicros()) - cpu0;
          }
        : undefined;
      const m = p.netns === undefined ? await measureTcp(p, false, around) : await measureIn(p.netns, p, false);
      if ('error' in m) {
        p.failed = `run ${i + 1}: ${m.error}`;
        continue;
      }
      if (PHASES.has('bulk')) (r.bulk as number[]).push(m.bulk);
      if (PHASES.has('rr')) (r.p50 as number[]).push(m.rr.p50);
      if (PHASES.has('rr')) (r.p99 as number[]).push(m.rr.p99);
      if (PHASES.has('conns')) (r.conns as number[]).push(m.conns);
      if (m.cpu !== undefined) {
        if (PHASES.has('conns')) (r.cpuPerConn as number[]).push(m.cpu.conns / Number(values.conns));
        if (PHASES.has('bulk')) (r.cpuPerMiB as number[]).push(m.cpu.bulk / Number(values['bulk-mib']));
      }
      if (m.clientCpuPerConn !== undefined) (r.clientCpuPerConn as number[]).push(m.clientCpuPerConn);
      if (PHASES.has('udp') && p.udp && !failed(r.udp)) r.udp.push((await udpRoundTrips({ host: p.host, port: p.udp }, Number(values.udp))).p50);
      log(
        `run ${i + 1} ${p.name}: bulk ${m.bulk.toFixed(0)} MiB/s, p50 ${m.rr.p50.toFixed(0)} µs, ${m.conns.toFixed(0)} conn/s` +
          `${m.clientCpuPerConn === undefined ? '' : ` (client CPU ${m.clientCpuPerConn.toFixed(0)} µs/conn)`}` +
          `${m.cpu ? `, proxy CPU ${(m.cpu.conns / Number(values.conns)).toFixed(0)} µs/conn, ${(m.cpu.bulk / Number(values['bulk-mib'])).toFixed(0)} µs/MiB` : ''} (load ${os.loadavg()[0]?.toFixed(2)})`,
      );
    }
  }
  const load1 = os.loadavg();
  const rows = paths.map((p) => {
    const r = results.get(p.name);
    const f = p.failed ?? '';
    const c = (x: Runs | undefined, d = 0): string => (f && (!x || failed(x) || x.length === 0) ? `n/a: ${f}` : x ? cell(x, d) : '—');
    return [
      p.name,
      c(r?.bulk),
      c(r?.p50),
      c(r?.p99),
      c(r?.conns),
      r && !failed(r.udp) ? cell(r.udp) : '—',
      p.proxies ? c(r?.cpuPerConn) : '—',
      p.proxies ? c(r?.cpuPerMiB) : '—',
      r && !failed(r.clientCpuPerConn) && r.clientCpuPerConn.length > 0 ? cell(r.clientCpuPerConn) : '—',
    ];
  });
  const direct = results.get('direct');
  const targets: string[][] = [];
  for (const name of ['orchard local', 'orchard cross-node']) {
    const r = results.get(name);
    if (direct && r) for (const v of verdicts(direct, r)) targets.push([name, v.target, v.measured, verdictWord(v.met)]);
  }
  const cpu = os.cpus();
  const out = [
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ${os.type()} ${os.release()}, Docker ${sh('docker', ['version', '-f', '{{.Server.Version}}'])}`,
    `Command: \`npx tsx scripts/bench/services.ts ${process.argv.slice(2).join(' ')}\`; load average (1/5/15 min) at start ${load0.map((x) => x.toFixed(2)).join(' / ')}, at end ${load1.map((x) => x.toFixed(2)).join(' / ')}`,
    `${runs} runs per path after ${warmups} unmeasured warm-up round(s), interleaved, each run starting at another path (orders: ${orders.join('; ')}); cells are median (min–max). Phases: ${[...PHASES].join(', ')}. Bulk ${values['bulk-mib']} MiB on one connection; ${values.rr} sequential 64 B round trips; ${Number(values.conns).toLocaleString('en-US')} new connections 32 at a time (client: ${CONNS_C ? 'lib/connrate.c, server lib/echo-once.c' : 'Node, lib/net-measure.ts'}); ${values.udp} UDP 64 B round trips. TCP proxy: ${loadRawTcp() === undefined ? 'net.Socket (tcp-proxy.ts)' : 'libuv handles (raw-tcp-proxy.ts)'}.`,
    ...(swarm ? [`Swarm: kernel check: ${swarm.kernel}.${swarm.notes.length > 0 ? ` ${swarm.notes.join('; ')}.` : ''}`] : []),
    '',
    markdownTable(
      [
        'path',
        'bulk MiB/s',
        '64 B req/resp p50 µs',
        'p99 µs',
        'new connections/s',
        'UDP 64 B p50 µs',
        'proxy CPU µs per connection',
        'proxy CPU µs per MiB of bulk',
        'client CPU µs per connection',
      ],
      rows,
    ),
    '',
    markdownTable(['path', 'target', 'measured (per run, vs direct)', 'verdict'], targets),
  ];
  return out.join('\n');
}

// ---- The kill scenario ----------------------------------------------------------------------

async function killScenario(label: string): Promise<string> {
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const killAt = Number(values['kill-at']) * 1000;
  const load0 = os.loadavg();
  addServiceAddress();
  const servers = [0, 1, 2].map(() => startContainer(label, [], ['sleep', '3600']));
  const serverProcs = await Promise.all(servers.map((s) => startServerIn(s.pid)));
  for (const s of servers) await waitListening({ host: s.ip, port: ONCE }, 'echo container');
  const node = await startNode('node A', {
    tcp: [{ port: ONCE, endpoints: servers.map((s) => ({ id: `${s.ip}:${ONCE}`, host: s.ip, port: ONCE, local: true })) }],
  });
  const target = { host: SERVICE_ADDR, port: ONCE };
  const samples: { at: number; us: number; error?: string }[] = [];
  const inflight: Promise<void>[] = [];
  const t0 = performance.now();
  let killed: Promise<unknown> | undefined;
  const victim = servers[0];
  for (let i = 0; i < rate * seconds; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const at = performance.now() - t0;
    if (!killed && at >= killAt && victim) {
      log(`docker kill ${victim.id.slice(0, 12)} at ${(at / 1000).toFixed(2)} s`);
      // The server process dies with the container, as a container's own server would.
      serverProcs[0]?.kill('SIGKILL');
      killed = run('docker', ['kill', victim.id]);
    }
    inflight.push(
      oneShot(target, 5000).then(
        (us) => void samples.push({ at, us }),
        (err: unknown) => void samples.push({ at, us: NaN, error: errText(err) }),
      ),
    );
  }
  await Promise.all(inflight);
  await killed;
  const stats = await node.stats();
  const ok = samples.filter((s) => !s.error).map((s) => s.us / 1000);
  const windowMs = samples.filter((s) => !s.error && s.at >= killAt && s.at < killAt + 3000).map((s) => s.us / 1000);
  const errors = new Map<string, number[]>();
  for (const s of samples) {
    if (!s.error) continue;
    const key = `${s.error}, ${s.at < killAt ? 'before' : 'after'} the kill`;
    errors.set(key, [...(errors.get(key) ?? []), s.at]);
  }
  const started = (ts: number[]): string =>
    `started at ${ts
      .slice(0, 5)
      .map((t) => `${(t / 1000).toFixed(2)} s`)
      .join(', ')}${ts.length > 5 ? ' …' : ''}`;
  const load1 = os.loadavg();
  const ms = (x: number): string => x.toFixed(1);
  return [
    `Command: \`npx tsx scripts/bench/services.ts ${process.argv.slice(2).join(' ')}\`; load average (1/5/15 min) at start ${load0.map((x) => x.toFixed(2)).join(' / ')}, at end ${load1.map((x) => x.toFixed(2)).join(' / ')}`,
    `3 containers (echo servers in their netns) behind one TcpProxy (policy cluster, local endpoints); one new connection per request (64 B echo), ` +
      `${rate}/s for ${seconds} s; \`docker kill\` of one endpoint at ${killAt / 1000} s.`,
    '',
    markdownTable(
      ['requests', 'failed', 'p50 ms', 'p99 ms', 'p99 ms, 3 s after the kill', 'max ms', 'proxy retries', 'of which replays', 'ejections'],
      [
        [
          String(samples.length),
          `${samples.length - ok.length}${errors.size > 0 ? ` (${[...errors].map(([e, ts]) => `${ts.length}× ${e}, ${started(ts)}`).join('; ')})` : ''}`,
          ms(percentile(ok, 0.5)),
          ms(percentile(ok, 0.99)),
          ms(percentile(windowMs, 0.99)),
          ms(Math.max(...ok)),
          String(stats.retries),
          String(stats.replays),
          String(stats.ejections),
        ],
      ],
    ),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const spec = JSON.parse(values.spec ?? '{}') as unknown;
  if (values.role === 'node') return nodeRole(spec as NodeSpec);
  if (values.role === 'server') return serverRole();
  if (values.role === 'measure') return measureRole(spec as MeasureSpec);
  if (CONNS_C) {
    const dir = buildCTools();
    process.env[C_TOOLS_ENV] = dir;
    undo.push({ what: `rm -r ${dir}`, fn: () => rmSync(dir, { recursive: true, force: true }) });
  }
  const runId = randomBytes(3).toString('hex');
  const label = `orchard.bench=services-${runId}`;
  const onSignal = (): void => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const report = values.kill ? await killScenario(label) : await dataPath(label, runId);
    process.stdout.write(`${report}\n`);
  } finally {
    cleanup();
    const left = sh('docker', ['ps', '-aq', '--filter', `label=${label}`]);
    if (left !== '') log(`WARNING: containers left with ${label}: ${left.replace(/\n/g, ' ')}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  cleanup();
  process.exitCode = 1;
});
