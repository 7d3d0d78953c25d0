import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './procs.js';

/**
 * A private Debian docker-registry on a free 127.0.0.1 port (own config and storage in a temp
 * dir, stopped by the test), plus a bandwidth-limited TCP proxy in front of it so pulls take
 * long enough to watch — a slow link on loopback. Docker allows plain-HTTP registries on
 * 127.0.0.0/8, so push and pull need no daemon configuration. Images are pushed to the
 * registry's own port and pulled through the proxy's (the registry does not care which).
 */

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export class LocalRegistry {
  private child: ChildProcess | undefined;
  private readonly proxy: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly proxyPort: number,
    private readonly bytesPerSec: number,
  ) {
    this.proxy = net.createServer((client) => this.pipe(client));
  }

  /** host:port to push to. */
  get pushHost(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** host:port to pull from (through the throttling proxy). */
  get pullHost(): string {
    return `127.0.0.1:${this.proxyPort}`;
  }

  static async start(opts: { bytesPerSec?: number } = {}): Promise<LocalRegistry> {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-registry-'));
    mkdirSync(join(dir, 'data'));
    const r = new LocalRegistry(dir, await freePort(), await freePort(), opts.bytesPerSec ?? 0);
    writeFileSync(
      join(dir, 'config.yml'),
      `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${join(dir, 'data')}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${r.port}
  secret: orchard-test-${randomBytes(4).toString('hex')}
`,
    );
    await new Promise<void>((resolve) => r.proxy.listen(r.proxyPort, '127.0.0.1', resolve));
    await r.startRegistry();
    return r;
  }

  /** (Re)starts the registry process; resolves once /v2/ answers. */
  async startRegistry(): Promise<void> {
    if (this.child && this.child.exitCode === null) return;
    this.child = spawn(REGISTRY_BIN, ['serve', join(this.dir, 'config.yml')], { stdio: 'ignore' });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (await this.up()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`docker-registry did not come up on ${this.pushHost}`);
  }

  /** Stops the registry process (the proxy stays; pulls then fail to connect, as with no network). */
  async stopRegistry(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }

  async close(): Promise<void> {
    await this.stopRegistry();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.proxy.close(() => r()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  up(): Promise<boolean> {
    return new Promise((resolve) => {
      const req = http.get(`http://${this.pushHost}/v2/`, { timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
    });
  }

  /**
   * Builds `repo:tag` FROM `base` plus a layer of `blobBytes` random bytes (incompressible, so
   * the pull moves that much), pushes it, and removes it from the local engine so the next
   * pull is real. Returns the reference to pull (through the proxy).
   */
  buildAndPush(repo: string, tag: string, base: string, blobBytes: number): string {
    const ctx = mkdtempSync(join(tmpdir(), 'orchard-image-'));
    try {
      writeFileSync(join(ctx, 'blob'), randomBytes(blobBytes));
      writeFileSync(join(ctx, 'Dockerfile'), `FROM ${base}\nCOPY blob /blob\n`);
      const pushRef = `${this.pushHost}/${repo}:${tag}`;
      execFileSync('docker', ['build', '-q', '-t', pushRef, ctx], { stdio: 'pipe', env: { ...process.env, DOCKER_BUILDKIT: '0' }, timeout: 120_000 });
      execFileSync('docker', ['push', pushRef], { stdio: 'pipe', timeout: 120_000 });
      execFileSync('docker', ['rmi', pushRef], { stdio: 'pipe', timeout: 60_000 });
      return `${this.pullHost}/${repo}:${tag}`;
    } finally {
      rmSync(ctx, { recursive: true, force: true });
    }
  }

  /** Forwards one client connection to the registry, limiting registry→client bytes per second. */
  private pipe(client: net.Socket): void {
    const upstream = net.connect(this.port, '127.0.0.1');
    this.sockets.add(client);
    this.sockets.add(upstream);
    const done = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
    client.pipe(upstream);
    if (this.bytesPerSec <= 0) {
      upstream.pipe(client);
      return;
    }
    const started = Date.now();
    let sent = 0;
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk);
      sent += chunk.length;
      const ahead = (sent / this.bytesPerSec) * 1000 - (Date.now() - started);
      if (ahead > 5) {
        upstream.pause();
        setTimeout(() => upstream.resume(), ahead).unref();
      }
    });
    upstream.on('end', () => client.end());
  }
}

/** Removes image tags from the local engine, ignoring ones already gone. */
export function removeImages(refs: readonly string[]): void {
  for (const ref of refs) {
    try {
      execFileSync('docker', ['rmi', ref], { stdio: 'ignore', timeout: 60_000 });
    } catch {
      // not present
    }
  }
}
