import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(REPO, 'dist', 'cli', 'main.js');
/** The single-file agent (scripts/build-agent.ts). */
export const AGENT_BUNDLE = join(REPO, 'dist', 'orchard-agent.mjs');

/** Builds dist/ once if it is missing (scripts/test.sh builds before the e2e tier). */
export function ensureBuilt(): void {
  if (!existsSync(CLI) || !existsSync(AGENT_BUNDLE)) execFileSync('npm', ['run', 'build'], { cwd: REPO, stdio: 'inherit' });
}

/**
 * A free port on 127.0.0.1 for a server the test starts later (a hub process, an etcd member,
 * which may also be restarted on the same port). Picked *below* the kernel's ephemeral range:
 * a port the kernel hands out for `listen(0)` lies in that range, so between picking it and the
 * server binding it any outgoing connection on the machine could take it as its source port (the
 * integration tier opens thousands; a CI run lost an etcd member that way); below the range only
 * another listener can. Random in [20000, 30000) — under Orchard's default endpoint ports
 * (30000–30999) — checked by binding.
 */
export async function freePort(): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // not Linux: keep the usual start of the range
  }
  const from = 20_000;
  const span = Math.max(1, Math.min(low, 30_000) - from);
  for (let tries = 0; tries < 200; tries++) {
    const port = from + Math.floor(Math.random() * span);
    if (await canListen(port)) return port;
  }
  return kernelPort();
}

function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export interface Proc {
  child: ChildProcess;
  output(): string;
  /** SIGKILL (like a crash or power loss) and wait for exit. */
  kill9(): Promise<void>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
}

/** Spawns `node dist/cli/main.js ...args`, capturing output; killed at the latest by cleanup. */
export function orchard(args: string[], env: Record<string, string> = {}): Proc {
  return spawnProc(process.execPath, [CLI, ...args], env);
}

/** Spawns any command (e.g. the single-file agent under qemu), capturing output like orchard(). */
export function spawnProc(command: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(command, args, { env: { ...process.env, ORCHARD_LOG: 'debug', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  };
  return { child, output: () => out, kill9: () => signal('SIGKILL'), stop: () => signal('SIGTERM') };
}

/** Runs the CLI to completion and returns its exit code and output. */
export function orchardRun(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr: '' };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    return { code: err.status ?? 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

export function docker(args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8', timeout: 60_000 }).trim();
}

/** Containers (running or not) of one Orchard node, as docker inspect JSON. */
export function containersOf(node: string): Array<{
  Id: string;
  Name: string;
  State: { Running: boolean; Pid: number; StartedAt: string };
  Config: { Labels: Record<string, string> };
  HostConfig: { Memory: number; NanoCpus: number; NetworkMode: string };
}> {
  // A container can vanish between `ps` and `inspect` (the agent is removing it): list again.
  for (let attempt = 0; ; attempt++) {
    const ids = docker(['ps', '-aq', '--filter', `label=orchard.node=${node}`])
      .split('\n')
      .filter(Boolean);
    if (ids.length === 0) return [];
    try {
      return JSON.parse(execFileSync('docker', ['inspect', ...ids], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] })) as ReturnType<
        typeof containersOf
      >;
    } catch (err) {
      if (attempt >= 4) throw err;
    }
  }
}

export function removeContainersOf(node: string): void {
  const ids = docker(['ps', '-aq', '--filter', `label=orchard.node=${node}`])
    .split('\n')
    .filter(Boolean);
  if (ids.length > 0) docker(['rm', '-f', ...ids]);
}

export function readToken(dataDir: string): string {
  return readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
}
