import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './procs.js';

/**
 * Real etcd members (Debian's etcd-server) on 127.0.0.1 for integration tests: one or three,
 * each in its own temp data dir, killed and removed by close(). Members can be killed,
 * paused (SIGSTOP) and restarted with their data to test quorum loss and return.
 */
export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess | undefined;
}

export class EtcdCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'orchard-etcd-'));
  readonly members: EtcdMember[] = [];
  private initialCluster = '';

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  static async start(size: 1 | 3 = 1): Promise<EtcdCluster> {
    const c = new EtcdCluster();
    for (let i = 0; i < size; i++) {
      const name = `m${i}`;
      c.members.push({
        name,
        clientUrl: `http://127.0.0.1:${await freePort()}`,
        peerUrl: `http://127.0.0.1:${await freePort()}`,
        dataDir: join(c.dir, name),
        proc: undefined,
      });
    }
    c.initialCluster = c.members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    for (let i = 0; i < size; i++) c.spawn(i);
    await Promise.all(c.members.map((_, i) => c.waitHealthy(i)));
    return c;
  }

  private spawn(i: number): void {
    const m = this.members[i]!;
    m.proc = spawn(
      'etcd',
      [
        '--name',
        m.name,
        '--data-dir',
        m.dataDir,
        '--listen-client-urls',
        m.clientUrl,
        '--advertise-client-urls',
        m.clientUrl,
        '--listen-peer-urls',
        m.peerUrl,
        '--initial-advertise-peer-urls',
        m.peerUrl,
        '--initial-cluster',
        this.initialCluster,
        '--initial-cluster-state',
        'new',
        '--initial-cluster-token',
        `orchard-test-${process.pid}`,
        // Fast elections for tests (defaults 100 ms / 1,000 ms).
        '--heartbeat-interval',
        '50',
        '--election-timeout',
        '500',
      ],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    );
  }

  async waitHealthy(i: number, timeoutMs = 20_000): Promise<void> {
    const m = this.members[i]!;
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        const r = await fetch(`${m.clientUrl}/health`);
        if (r.ok && ((await r.json()) as { health?: string }).health === 'true') return;
      } catch {
        // not up yet
      }
      if (Date.now() > end) throw new Error(`etcd member ${m.name} not healthy within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  kill(i: number): void {
    const m = this.members[i]!;
    m.proc?.kill('SIGKILL');
    m.proc = undefined;
  }

  pause(i: number): void {
    this.members[i]!.proc?.kill('SIGSTOP');
  }

  resume(i: number): void {
    this.members[i]!.proc?.kill('SIGCONT');
  }

  /** Starts a killed member again on its data dir (it rejoins the cluster). */
  restart(i: number): void {
    if (this.members[i]!.proc) return;
    this.spawn(i);
  }

  close(): void {
    for (const m of this.members) {
      m.proc?.kill('SIGCONT');
      m.proc?.kill('SIGKILL');
      m.proc = undefined;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
