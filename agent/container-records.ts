import type { DesiredPod } from '../protocol/messages.js';
import { containerKey } from './container-spec.js';
import type { ContainerFailure, FailureReason, RestartEntry, RestartState, UnhealthyRun } from './plan.js';
import type { RuntimeContainer } from './runtime/runtime.js';

/**
 * What the agent remembers per container between passes, for plan() (back-off deadlines) and
 * observePods() (counts, reasons): restarts by container id, failed pull/create/start by pod
 * container key, and the probe verdict that made the agent stop a run. Memory only: an agent
 * restart starts from zero (agent/README.md). Mutated only from within a reconcile pass (or its
 * background removals), never concurrently with itself.
 */

/** A pod the device policy refuses: every container waits with this reason, none is created. */
export const FORBIDDEN_RETRY_AT = Number.MAX_SAFE_INTEGER;

/** Image pull / create / start failures back off from 5 s to 300 s. */
export const FAILURE_BASE_MS = 5000;
export const FAILURE_CAP_MS = 300_000;

/** Delay before the retry after the n-th failure in a row (n ≥ 1): 5 s, doubling, capped at 300 s. */
export function failureDelayMs(failures: number): number {
  return Math.min(FAILURE_CAP_MS, FAILURE_BASE_MS * 2 ** Math.min(failures - 1, 20));
}

/** The record after one more failed pull, create or start of a pod container. */
export function nextFailure(prev: ContainerFailure | undefined, reason: FailureReason, message: string, now: number): ContainerFailure {
  const failures = (prev?.failures ?? 0) + 1;
  return { reason, message, failures, retryAt: now + failureDelayMs(failures) };
}

/** A crash restart: counted, and one back-off step further (from 0 again when the last run lasted long enough). */
export function afterCrashRestart(prev: RestartEntry | undefined, resetBackoff: boolean, now: number): RestartEntry {
  return { restarts: (prev?.restarts ?? 0) + 1, backoffStep: (resetBackoff ? 0 : (prev?.backoffStep ?? 0)) + 1, lastRestartAt: now };
}

/** A restart the plan asked for (the pod-network owner restarted): counted, back-off step unchanged. */
export function afterPlannedRestart(prev: RestartEntry | undefined, now: number): RestartEntry {
  return { restarts: (prev?.restarts ?? 0) + 1, backoffStep: prev?.backoffStep ?? 0, lastRestartAt: now };
}

/**
 * Why the run that exited ended: the probe verdict when it is about that very run (the agent
 * stopped it), else `exited`. `stale`: the verdict is about an earlier run; a later crash of its
 * own replaces it.
 */
export function exitCause(note: UnhealthyRun | undefined, exitedRun: string | undefined): { reason: string; stale: boolean } {
  if (note === undefined) return { reason: 'exited', stale: false };
  return note.startedAt === exitedRun ? { reason: note.reason, stale: false } : { reason: 'exited', stale: true };
}

export class ContainerRecords {
  /** Container id → restarts done by the agent and the back-off step. */
  readonly restarts = new Map<string, RestartEntry>();
  /** Pod container key → the last failed pull/create/start, retried after retryAt. */
  readonly failures = new Map<string, ContainerFailure>();
  /** Container id → the probe failure that made the agent stop that run (status messages). */
  readonly terminations = new Map<string, UnhealthyRun>();

  /** plan()'s view of the records. */
  restartState(unhealthy: ReadonlyMap<string, UnhealthyRun>): RestartState {
    return { containers: this.restarts, failures: this.failures, unhealthy };
  }

  /** A new desired set may bring the ConfigMap/Secret a waiting container lacked: retry those at once. */
  retryConfigErrors(): void {
    for (const [k, f] of this.failures) if (f.reason === 'CreateContainerConfigError') this.failures.set(k, { ...f, retryAt: 0 });
  }

  /** Forgets restart and failure records of containers and pods that are gone. */
  prune(desired: readonly DesiredPod[], observed: readonly RuntimeContainer[]): void {
    const ids = new Set(observed.map((c) => c.id));
    for (const id of this.restarts.keys()) if (!ids.has(id)) this.restarts.delete(id);
    for (const id of this.terminations.keys()) if (!ids.has(id)) this.terminations.delete(id);
    const keys = new Set(desired.flatMap((p) => p.spec.containers.map((c) => containerKey(p.uid, c.name))));
    for (const k of this.failures.keys()) if (!keys.has(k)) this.failures.delete(k);
  }

  /** Records one more failure of `key`; returns the new record (its retryAt is the back-off deadline). */
  fail(key: string, reason: FailureReason, message: string, now: number): ContainerFailure {
    const next = nextFailure(this.failures.get(key), reason, message, now);
    this.failures.set(key, next);
    return next;
  }

  /** The container runs: its failures are over. */
  succeeded(key: string): void {
    this.failures.delete(key);
  }

  /** Marks `key` refused by the device policy; false when it already was, with the same message. */
  forbid(key: string, message: string): boolean {
    const f = this.failures.get(key);
    if (f?.reason === 'Forbidden' && f.message === message) return false;
    this.failures.set(key, { reason: 'Forbidden', message, failures: 1, retryAt: FORBIDDEN_RETRY_AT });
    return true;
  }

  /** Marks `key` waiting for a granted host device that is not here (issue 18); false when it already was, with the same message. */
  unavailable(key: string, message: string): boolean {
    const f = this.failures.get(key);
    if (f?.reason === 'DeviceUnavailable' && f.message === message) return false;
    this.failures.set(key, { reason: 'DeviceUnavailable', message, failures: 1, retryAt: FORBIDDEN_RETRY_AT });
    return true;
  }

  /** The device policy lets `key` run (again) and its devices are here: a refusal or device wait is forgotten, other failures stay. */
  allow(key: string): void {
    const reason = this.failures.get(key)?.reason;
    if (reason === 'Forbidden' || reason === 'DeviceUnavailable') this.failures.delete(key);
  }

  /** Counts a crash restart (before the attempt, so a start that keeps failing still backs off) and returns why the run ended. */
  crashRestart(id: string, resetBackoff: boolean, exitedRun: string | undefined, now: number): string {
    this.restarts.set(id, afterCrashRestart(this.restarts.get(id), resetBackoff, now));
    const cause = exitCause(this.terminations.get(id), exitedRun);
    if (cause.stale) this.terminations.delete(id);
    return cause.reason;
  }

  plannedRestart(id: string, now: number): void {
    this.restarts.set(id, afterPlannedRestart(this.restarts.get(id), now));
  }

  /** The probes gave up on this run: remember why, for the restart and the status. */
  stoppedUnhealthy(id: string, run: UnhealthyRun): void {
    this.terminations.set(id, run);
  }

  removed(id: string): void {
    this.restarts.delete(id);
  }
}
