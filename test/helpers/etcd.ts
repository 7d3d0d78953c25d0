import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './procs.js';

/**
 * Real etcd members (Debian's etcd-server) on 127.0.0.1 for integration tests and the HA
 * benchmarks (scripts/bench/failover.ts, fleet.ts --store etcd): one or three, each in its own
 * temp data dir on ports picked free below the ephemeral range (see freePort), killed and
 * removed by close(). Members can be killed, paused (SIGSTOP) and restarted with their data to
 * test quorum loss and return. Each member logs to `<dir>/<name>.log`; a member that exits
 * while the cluster starts (a port taken after all) makes start() try again on new ports, and a
 * start that fails says why with the member's last log lines.
 */
export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  logFile: string;
  proc: ChildProcess | undefined;
  /** How the last process of this member ended, while the cluster still wanted it running. */
  exited?: string | undefined;
}

/** A member ended before it was healthy: the start may be tried again on other ports. */
class MemberExited extends Error {}

const START_ATTEMPTS = 3;

export interface EtcdClusterOptions {
  /** Raft heartbeat / election timeout in ms; default 50 / 500 (fast elections for tests; etcd's own defaults are 100 / 1,000). */
  heartbeatMs?: number;
  electionMs?: number;
  /** Parent of the members' data dirs; default the OS temp dir. */
  parentDir?: string;
  /** More etcd flags for every member (e.g. `--quota-backend-bytes`, `--auto-compaction-retention`). */
  extraArgs?: string[];
  /** Picks a free port for a member (tests of this helper); default freePort. */
  pickPort?: () => Promise<number>;
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
  private closed = false;

  private constructor(private readonly opts: EtcdClusterOptions) {
    this.dir = mkdtempSync(join(opts.parentDir ?? tmpdir(), 'orchard-etcd-'));
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  static async start(size: 1 | 3 = 1, opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    for (let attempt = 1; ; attempt++) {
      const c = new EtcdCluster(opts);
      try {
        await c.boot(size);
        return c;
      } catch (err) {
        c.close();
        if (!(err instanceof MemberExited) || attempt >= START_ATTEMPTS) throw err;
      }
    }
  }

  private async boot(size: number): Promise<void> {
    const ports = new Set<number>();
    const pick = async (): Promise<number> => {
      for (;;) {
        const p = await (this.opts.pickPort ?? freePort)();
        if (!ports.has(p)) {
          ports.add(p);
          return p;
        }
      }
    };
    for (let i = 0; i < size; i++) {
      const name = `m${i}`;
      this.members.push({
        name,
        clientUrl: `http://127.0.0.1:${await pick()}`,
        peerUrl: `http://127.0.0.1:${await pick()}`,
        dataDir: join(this.dir, name),
        logFile: join(this.dir, `${name}.log`),
        proc: undefined,
      });
    }
    this.initialCluster = this.members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    for (let i = 0; i < size; i++) this.spawn(i);
    await Promise.all(this.members.map((_, i) => this.waitHealthy(i)));
  }

  /** The last lines a member logged (for errors). */
  logTail(i: number, lines = 12): string {
    try {
      return readFileSync(this.members[i]!.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  private spawn(i: number): void {
    const m = this.members[i]!;
    m.exited = undefined;
    const log = openSync(m.logFile, 'a');
    const proc = spawn(
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
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    m.proc = proc;
    proc.once('exit', (code, signal) => {
      if (m.proc === proc) m.exited = signal ? `signal ${signal}` : `exit code ${code}`;
    });
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
      if (this.closed) throw new Error(`etcd cluster closed while member ${m.name} was starting`);
      if (m.exited !== undefined) {
        throw new MemberExited(`etcd member ${m.name} ended (${m.exited}) before it was healthy; its last log lines:\n${this.logTail(i)}`);
      }
      if (Date.now() > end) throw new Error(`etcd member ${m.name} not healthy within ${timeoutMs} ms; its last log lines:\n${this.logTail(i)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Every running member's backend size and revision. */
  async status(): Promise<EtcdMemberStatus[]> {
    const out: EtcdMemberStatus[] = [];
    for (const m of this.members) {
      if (!m.proc) continue;
      const j = await postJson<{ dbSize?: string; dbSizeInUse?: string; header?: { revision?: string } }>(`${m.clientUrl}/v3/maintenance/status`, {});
      out.push({ name: m.name, dbSize: Number(j.dbSize ?? 0), dbSizeInUse: Number(j.dbSizeInUse ?? 0), revision: Number(j.header?.revision ?? 0) });
    }
    return out;
  }

  /** Which running member raft's leader is, as the members say (`/v3/maintenance/status`); undefined during an election. */
  async raftLeader(): Promise<number | undefined> {
    const ids = await this.memberIds();
    for (const m of this.members) {
      if (!m.proc) continue;
      const j = await postJson<{ leader?: string }>(`${m.clientUrl}/v3/maintenance/status`, {}).catch(() => undefined);
      if (j?.leader !== undefined && j.leader !== '0') {
        const at = ids.indexOf(j.leader);
        if (at >= 0) return at;
      }
    }
    return undefined;
  }

  /** Makes member `i` raft's leader (etcd's transfer-leadership, sent to the current leader) and waits until the members agree. */
  async moveRaftLeader(i: number, timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const now = await this.raftLeader();
      if (now === i) return;
      if (now !== undefined) {
        const ids = await this.memberIds();
        await postJson(`${this.members[now]!.clientUrl}/v3/maintenance/transfer-leadership`, { targetID: ids[i] }).catch(() => undefined);
      }
      if (Date.now() > end) throw new Error(`etcd: member ${i} did not become raft's leader within ${timeoutMs} ms (leader: ${now})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Every member's raft id (decimal strings, as the JSON gateway writes uint64), in member order. */
  private async memberIds(): Promise<string[]> {
    for (const m of this.members) {
      if (!m.proc) continue;
      const list = await postJson<{ members?: Array<{ ID?: string; name?: string }> }>(`${m.clientUrl}/v3/cluster/member/list`, {}).catch(() => undefined);
      if (list !== undefined) return this.members.map((mm) => list.members?.find((x) => x.name === mm.name)?.ID ?? '');
    }
    throw new Error('etcd: no member answered');
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
    this.closed = true;
    for (const m of this.members) {
      m.proc?.kill('SIGCONT');
      m.proc?.kill('SIGKILL');
      m.proc = undefined;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function postJson<T>(url: string, body: object): Promise<T> {
  const r = await fetch(url, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(5_000) });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${await r.text()}`);
  return (await r.json()) as T;
}
