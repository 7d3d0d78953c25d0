import type { Clock, Logger } from '../clock.js';
import type { UnhealthyRun } from '../plan.js';
import { silentLogger } from '../clock.js';
import type { ProbeChecker } from './probe-check.js';
import type { ContainerProbes } from './probe-runner.js';
import { ProbeRunner, hasProbes } from './probe-runner.js';

/**
 * Keeps one ProbeRunner per running container run that has probes, in step with what the
 * reconciler sees on each pass (sync). A run is identified by container id + start time + the
 * probe spec, so a restart (same id, new start time) gets a fresh runner: not ready until its
 * probes pass again, liveness counting from zero.
 *
 * The reconciler reads `readiness` (observed set) and `unhealthy` (plan() → stop and restart)
 * and is told by `onChange` to run a pass whenever either changed.
 */

export interface ProbedContainer {
  id: string;
  /** The engine's start time of the current run (ISO); part of the run's identity. */
  startedAt: string | undefined;
  /** "<pod>/<container>" for logs. */
  label: string;
  probes: ContainerProbes;
}

export interface ProbeManagerOptions {
  checker: ProbeChecker;
  clock: Clock;
  logger?: Logger;
  onChange: () => void;
}

interface Entry {
  identity: string;
  startedAt: string | undefined;
  runner: ProbeRunner;
}

export class ProbeManager {
  private readonly o: ProbeManagerOptions;
  private readonly runners = new Map<string, Entry>();
  private stopped = false;

  constructor(opts: ProbeManagerOptions) {
    this.o = opts;
  }

  /** Number of live runners (tests, metrics). */
  get size(): number {
    return this.runners.size;
  }

  /**
   * Makes the runners match `running` (every running desired container; those without probes
   * are ignored). Idempotent; cheap when nothing changed (one JSON per container with probes).
   */
  sync(running: readonly ProbedContainer[]): void {
    if (this.stopped) return;
    const keep = new Set<string>();
    for (const c of running) {
      if (!hasProbes(c.probes)) continue;
      keep.add(c.id);
      const identity = `${c.startedAt ?? ''}|${JSON.stringify(c.probes)}`;
      const cur = this.runners.get(c.id);
      if (cur !== undefined && cur.identity === identity) continue;
      cur?.runner.stop();
      const parsed = c.startedAt === undefined ? Number.NaN : Date.parse(c.startedAt);
      const runner = new ProbeRunner({
        containerId: c.id,
        startedAt: Number.isFinite(parsed) ? parsed : this.o.clock.now(),
        probes: c.probes,
        checker: this.o.checker,
        clock: this.o.clock,
        logger: this.o.logger ?? silentLogger,
        label: c.label,
        onChange: () => {
          if (!this.stopped && this.runners.get(c.id)?.runner === runner) this.o.onChange();
        },
      });
      this.runners.set(c.id, { identity, startedAt: c.startedAt, runner });
      runner.start();
    }
    for (const [id, e] of this.runners) {
      if (keep.has(id)) continue;
      e.runner.stop();
      this.runners.delete(id);
    }
  }

  /** container id → ready, for containers with probes (others: ready when running). */
  readiness(): Map<string, boolean> {
    const out = new Map<string, boolean>();
    for (const [id, e] of this.runners) out.set(id, e.runner.ready);
    return out;
  }

  /** container id → the run that must be restarted and why. */
  unhealthy(): Map<string, UnhealthyRun> {
    const out = new Map<string, UnhealthyRun>();
    for (const [id, e] of this.runners) {
      const reason = e.runner.unhealthy;
      if (reason !== undefined) out.set(id, { startedAt: e.startedAt, reason });
    }
    return out;
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.runners.values()) e.runner.stop();
    this.runners.clear();
  }

  /** Allows sync() again after stop() (a reconciler restarted in the same process). */
  resume(): void {
    this.stopped = false;
  }
}
