import { createHash } from 'node:crypto';
import { copyFile, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Clock, Logger, TimerHandle } from '../clock.js';
import {
  agentFiles,
  EXIT_RESTART_FOR_UPGRADE,
  isReportedIn,
  readLauncherState,
  writeLauncherState,
  type AgentFiles,
  type LauncherState,
  type PendingUpgrade,
} from './launcher-state.js';

/**
 * orchard-agent-launcher's state machine (docs/agent.md "Upgrades"). systemd runs the launcher; the
 * launcher runs the agent file as its child and is the one place that swaps agent files:
 *
 *   run F ──exit 75 with a staged F.next──▶ swap (F → F.previous, F.next → F) ──▶ run F (new), deadline armed
 *     ▲                                                                              │
 *     │        ◀── reported in (IPC) before the deadline: pending cleared ───────────┤
 *     └─ rollback (F.previous → F), rolledBack recorded ◀── deadline passed, or the new F exited first
 *
 * The launcher is small and changes rarely, so a broken agent file cannot break the thing that
 * recovers from it. Any other child exit is restarted with back-off (1 s doubling to 30 s), as
 * systemd's Restart=always would. Workloads are the engine's, never the launcher's or the agent's:
 * every start of an agent adopts them by label (same container ids).
 */

export interface ChildHandle {
  kill(signal: NodeJS.Signals): void;
}

export interface ChildEvents {
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
  onMessage(msg: unknown): void;
}

export interface LauncherOptions {
  agentFile: string;
  clock: Clock;
  logger: Logger;
  /** Starts `file` as the agent; events come back through `events`. */
  spawn(file: string, events: ChildEvents): ChildHandle;
  /** Time a child gets between SIGTERM and SIGKILL (default 15 s). */
  killGraceMs?: number;
}

const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** A child that ran this long resets the back-off. */
const STABLE_MS = 60_000;

export type LauncherPhase = 'idle' | 'running' | 'stopping' | 'stopped';

export class Launcher {
  readonly files: AgentFiles;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly killGraceMs: number;
  private child: ChildHandle | undefined;
  private childStartedAt = 0;
  private phase: LauncherPhase = 'idle';
  private backoffMs = BACKOFF_MIN_MS;
  private restartTimer: TimerHandle | undefined;
  private deadlineTimer: TimerHandle | undefined;
  private killTimer: TimerHandle | undefined;
  /** Why the running child is being stopped by us (deadline), so its exit rolls back with that reason. */
  private killReason: string | undefined;
  private stopped: (() => void) | undefined;
  /** Serialises state transitions (file work is async; child events must not interleave with it). */
  private chain: Promise<void> = Promise.resolve();
  /** Child starts so far (tests, logs). */
  starts = 0;

  constructor(private readonly opts: LauncherOptions) {
    this.files = agentFiles(opts.agentFile);
    this.clock = opts.clock;
    this.log = opts.logger;
    this.killGraceMs = opts.killGraceMs ?? 15_000;
  }

  get state(): LauncherPhase {
    return this.phase;
  }

  /** Resumes whatever the state file says (a launcher restart mid-upgrade included), then runs the agent. */
  start(): Promise<void> {
    return this.serial(async () => {
      const state = await readLauncherState(this.files.state);
      const p = state.pending;
      if (p !== undefined && p.swappedAt === undefined) {
        // The agent staged a file and exited (or died) before we swapped: swap now.
        await this.swap(state, p);
      } else if (p !== undefined && p.deadlineAt !== undefined && this.clock.now() >= Date.parse(p.deadlineAt)) {
        await this.rollback(state, p, `agent ${p.version} did not report in within ${p.deadlineSeconds}s (the launcher restarted after its deadline)`);
      }
      this.run();
      await this.armDeadline();
    });
  }

  /** Stops the child (SIGTERM, forwarded) and the launcher; workloads keep running. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.phase === 'stopped') return Promise.resolve();
    this.phase = 'stopping';
    this.clearTimers();
    const child = this.child;
    if (child === undefined) {
      this.phase = 'stopped';
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.stopped = resolve;
      child.kill(signal);
      this.killTimer = this.clock.setTimeout(() => child.kill('SIGKILL'), this.killGraceMs);
    });
  }

  /** Resolves when queued transitions are done (tests). */
  idle(): Promise<void> {
    return this.chain;
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.chain
      .then(fn)
      .catch((err: unknown) => this.log.error('launcher step failed', { error: err instanceof Error ? err.message : String(err) }));
    this.chain = next;
    return next;
  }

  private run(): void {
    if (this.phase === 'stopping' || this.phase === 'stopped') return;
    this.phase = 'running';
    this.starts++;
    this.childStartedAt = this.clock.now();
    this.killReason = undefined;
    this.log.info('starting agent', { file: this.files.current, start: this.starts });
    const child = this.opts.spawn(this.files.current, {
      onExit: (code, signal) => void this.serial(() => this.onExit(child, code, signal)),
      onMessage: (msg) => {
        if (isReportedIn(msg)) void this.serial(() => this.onReported(msg.version));
      },
    });
    this.child = child;
  }

  private async onExit(child: ChildHandle, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (this.child !== child) return;
    this.child = undefined;
    if (this.killTimer !== undefined) this.clock.clearTimeout(this.killTimer);
    this.killTimer = undefined;
    if (this.phase === 'stopping') {
      this.phase = 'stopped';
      this.stopped?.();
      return;
    }
    const ranMs = this.clock.now() - this.childStartedAt;
    const how = signal !== null ? `signal ${signal}` : `code ${code}`;
    const state = await readLauncherState(this.files.state);
    const p = state.pending;
    if (p !== undefined && p.swappedAt !== undefined) {
      // The new agent is gone before it reported in: it goes, the previous file comes back.
      await this.rollback(state, p, this.killReason ?? `agent ${p.version} exited (${how}) before reporting in`);
      this.backoffMs = BACKOFF_MIN_MS;
      this.run();
      return;
    }
    if (p !== undefined) {
      this.log.info('agent exited for an upgrade', { version: p.version, exit: how });
      await this.swap(state, p);
      this.backoffMs = BACKOFF_MIN_MS;
      this.run();
      await this.armDeadline();
      return;
    }
    if (code === EXIT_RESTART_FOR_UPGRADE) this.log.warn('agent asked for an upgrade restart but nothing is staged; restarting it');
    if (ranMs >= STABLE_MS) this.backoffMs = BACKOFF_MIN_MS;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    this.log.warn('agent exited; restarting', { exit: how, inMs: delay });
    this.restartTimer = this.clock.setTimeout(() => {
      this.restartTimer = undefined;
      void this.serial(async () => this.run());
    }, delay);
  }

  private async onReported(version: string): Promise<void> {
    const state = await readLauncherState(this.files.state);
    const p = state.pending;
    if (p === undefined || p.swappedAt === undefined) return;
    if (version !== p.version) {
      this.log.warn('agent reported a version other than the pending one', { reported: version, pending: p.version });
      return;
    }
    if (this.deadlineTimer !== undefined) this.clock.clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    const { pending: _done, rolledBack: _old, ...rest } = state;
    await writeLauncherState(this.files.state, rest);
    this.log.info('upgrade confirmed: the new agent reported in', { version, from: p.fromVersion });
  }

  /** Arms the deadline of a swapped, unconfirmed upgrade (no-op otherwise). */
  private async armDeadline(): Promise<void> {
    const p = (await readLauncherState(this.files.state)).pending;
    if (p?.deadlineAt === undefined || this.deadlineTimer !== undefined) return;
    const ms = Math.max(0, Date.parse(p.deadlineAt) - this.clock.now());
    this.deadlineTimer = this.clock.setTimeout(() => {
      this.deadlineTimer = undefined;
      const child = this.child;
      if (child === undefined) return;
      this.killReason = `agent ${p.version} did not report in within ${p.deadlineSeconds}s`;
      this.log.warn('upgrade deadline passed; stopping the new agent to roll back', { version: p.version });
      child.kill('SIGTERM');
      this.killTimer = this.clock.setTimeout(() => child.kill('SIGKILL'), this.killGraceMs);
    }, ms);
  }

  /** F → F.previous (copy, fsync, rename), F.next → F (rename), directory fsync'd; the deadline starts. */
  private async swap(state: LauncherState, p: PendingUpgrade): Promise<void> {
    const f = this.files;
    let staged: Buffer;
    try {
      staged = await readFile(f.next);
    } catch {
      await this.abandon(state, p, `staged file ${f.next} is missing`);
      return;
    }
    if (createHash('sha256').update(staged).digest('hex') !== p.sha256) {
      await rm(f.next, { force: true });
      await this.abandon(state, p, `staged file ${f.next} does not match SHA-256 ${p.sha256}`);
      return;
    }
    const tmp = `${f.previous}.tmp`;
    await copyFile(f.current, tmp);
    await fsyncFile(tmp);
    await rename(tmp, f.previous);
    await rename(f.next, f.current);
    await fsyncDir(dirname(f.current));
    const now = this.clock.now();
    const swapped: PendingUpgrade = {
      ...p,
      swappedAt: new Date(now).toISOString(),
      deadlineAt: new Date(now + p.deadlineSeconds * 1000).toISOString(),
    };
    await writeLauncherState(f.state, { ...state, pending: swapped });
    this.log.info('agent file swapped', { version: p.version, from: p.fromVersion, deadlineSeconds: p.deadlineSeconds });
  }

  /** F.previous → F; the pending upgrade becomes `rolledBack` with its reason (the old agent reports it to the hub). */
  private async rollback(state: LauncherState, p: PendingUpgrade, reason: string): Promise<void> {
    const f = this.files;
    if (this.deadlineTimer !== undefined) this.clock.clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    await rename(f.previous, f.current);
    await fsyncDir(dirname(f.current));
    const { pending: _p, ...rest } = state;
    await writeLauncherState(f.state, {
      ...rest,
      rolledBack: { version: p.version, rollout: p.rollout, reason, at: new Date(this.clock.now()).toISOString() },
    });
    this.log.error('upgrade rolled back', { version: p.version, to: p.fromVersion, reason });
  }

  /** A staged upgrade that cannot be swapped in: forget it, record why, keep the current file. */
  private async abandon(state: LauncherState, p: PendingUpgrade, reason: string): Promise<void> {
    const { pending: _p, ...rest } = state;
    await writeLauncherState(this.files.state, {
      ...rest,
      rolledBack: { version: p.version, rollout: p.rollout, reason, at: new Date(this.clock.now()).toISOString() },
    });
    this.log.error('staged upgrade abandoned', { version: p.version, reason });
  }

  private clearTimers(): void {
    for (const t of [this.restartTimer, this.deadlineTimer, this.killTimer]) if (t !== undefined) this.clock.clearTimeout(t);
    this.restartTimer = this.deadlineTimer = this.killTimer = undefined;
  }
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
