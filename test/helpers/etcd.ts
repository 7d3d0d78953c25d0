import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './procs.js';

/**
 * Real etcd members (Debian's etcd-server) on 127.0.0.1 for integration tests and the HA
 * benchmarks (scripts/bench/failover.ts, fleet.ts --store etcd): one or three, each in its own
 * temp data dir on ports picked free, killed and removed by close(). Members can be killed,
 * paused (SIGSTOP) and restarted with their data to test quorum loss and return.
 */
export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess | undefined;
}

export interface EtcdClusterOptions {
  /** Raft heartbeat / election timeout in ms; default 50 / 500 (fast elections for tests; etcd's own defaults are 100 / 1,000). */
  heartbeatMs?: number;
  electionMs?: number;
  /** Parent of the members' data dirs; default the OS temp dir. */
  parentDir?: string;
  /** More etcd flags for every member (e.g. `--quota-backend-bytes`, `--auto-compaction-retention`). */
  extraArgs?: string[];
}

/** What one member says about its backend (`/v3/maintenance/status`). */
export interface EtcdMemberStatus {
  name: string;
  /** Bytes of the backend file, and the part of it in use (the rest is free pages until a defrag). */
  dbSize: number;
  dbSizeInUse: number;
  /** Store revision (every put and delete adds one). */
  revision: number;
}

export class EtcdCluster {
  readonly dir: string;
  readonly members: EtcdMember[] = [];
  private initialCluster = '';

  private constructor(private readonly opts: EtcdClusterOptions) {
    this.dir = mkdtempSync(join(opts.parentDir ?? tmpdir(), 'orchard-etcd-'));
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  static async start(size: 1 | 3 = 1, opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const c = new EtcdCluster(opts);
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
    try {
      await Promise.all(c.members.map((_, i) => c.waitHealthy(i)));
    } catch (err) {
      c.close();
      throw err;
    }
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
        '--heartbeat-interval',
        String(this.opts.heartbeatMs ?? 50),
        '--election-timeout',
        String(this.opts.electionMs ?? 500),
        ...(this.opts.extraArgs ?? []),
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

  /** Every running member's backend size and revision. */
  async status(): Promise<EtcdMemberStatus[]> {
    const out: EtcdMemberStatus[] = [];
    for (const m of this.members) {
      if (!m.proc) continue;
      const r = await fetch(`${m.clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(5_000) });
      const j = (await r.json()) as { dbSize?: string; dbSizeInUse?: string; header?: { revision?: string } };
      out.push({ name: m.name, dbSize: Number(j.dbSize ?? 0), dbSizeInUse: Number(j.dbSizeInUse ?? 0), revision: Number(j.header?.revision ?? 0) });
    }
    return out;
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
