import type { Probe } from '../../protocol/manifest.js';
import type { Clock, Logger, TimerHandle } from '../clock.js';
import { silentLogger } from '../clock.js';
import type { ProbeChecker, ProbeResult } from './probe-check.js';

/**
 * The probes of ONE run of one container (a restart is a new run, hence a new runner).
 * Kubernetes semantics:
 * - startup gates the others: liveness and readiness begin only once it succeeded;
 *   startup failing `failureThreshold` times in a row makes the container unhealthy.
 * - liveness failing `failureThreshold` times in a row makes it unhealthy (the reconciler then
 *   stops it and restarts it per restartPolicy, with the usual back-off).
 * - readiness: not ready until `successThreshold` successes in a row; ready again → not ready
 *   after `failureThreshold` failures in a row. Without a readiness probe the container is
 *   ready once started.
 *
 * Concurrency contract: runs of one probe never overlap (the next is scheduled only when the
 * previous finished, `periodSeconds` after it began); each run is bounded by timeoutSeconds
 * (an AbortSignal the checker honours, and the runner stops waiting regardless). All timers
 * come from the injected clock. After stop() no callback fires.
 */

export type ProbeKind = 'startup' | 'liveness' | 'readiness';

export interface ContainerProbes {
  startupProbe?: Probe | undefined;
  livenessProbe?: Probe | undefined;
  readinessProbe?: Probe | undefined;
}

export function hasProbes(p: ContainerProbes): boolean {
  return p.startupProbe !== undefined || p.livenessProbe !== undefined || p.readinessProbe !== undefined;
}

export interface ProbeRunnerOptions {
  containerId: string;
  /** When the container's current run started (ms); initialDelaySeconds counts from here. */
  startedAt: number;
  probes: ContainerProbes;
  checker: ProbeChecker;
  clock: Clock;
  logger?: Logger;
  /** For logs: "<pod>/<container>". */
  label: string;
  /** Called (synchronously, after the state changed) when `ready` or `unhealthy` changes. */
  onChange: () => void;
}

interface Loop {
  kind: ProbeKind;
  probe: Probe;
  timer: TimerHandle | undefined;
  abort: AbortController | undefined;
  successes: number;
  failures: number;
}

export class ProbeRunner {
  private readonly o: ProbeRunnerOptions;
  private readonly log: Logger;
  private readonly loops: Loop[] = [];
  private stopped = false;
  private startedOk: boolean;
  private readinessOk: boolean;
  private sick: string | undefined;
  /** Completed probe runs (tests, metrics). */
  runs = 0;

  constructor(opts: ProbeRunnerOptions) {
    this.o = opts;
    this.log = opts.logger ?? silentLogger;
    this.startedOk = opts.probes.startupProbe === undefined;
    this.readinessOk = opts.probes.readinessProbe === undefined;
  }

  /** Started (startup probe passed or none), readiness passing (or none), not unhealthy. */
  get ready(): boolean {
    return !this.stopped && this.sick === undefined && this.startedOk && this.readinessOk;
  }

  /** "Unhealthy: liveness probe failed: …" once liveness (or startup) gave up on this run. */
  get unhealthy(): string | undefined {
    return this.sick;
  }

  start(): void {
    const p = this.o.probes;
    if (p.startupProbe !== undefined) this.begin('startup', p.startupProbe);
    else this.beginMain();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const l of this.loops) this.halt(l);
    this.loops.length = 0;
  }

  private beginMain(): void {
    const p = this.o.probes;
    if (p.livenessProbe !== undefined) this.begin('liveness', p.livenessProbe);
    if (p.readinessProbe !== undefined) this.begin('readiness', p.readinessProbe);
  }

  private begin(kind: ProbeKind, probe: Probe): void {
    const loop: Loop = { kind, probe, timer: undefined, abort: undefined, successes: 0, failures: 0 };
    this.loops.push(loop);
    // An adopted container that has run longer than the delay is probed at once.
    const first = this.o.startedAt + probe.initialDelaySeconds * 1000 - this.o.clock.now();
    this.schedule(loop, Math.max(0, first));
  }

  private halt(l: Loop): void {
    if (l.timer !== undefined) this.o.clock.clearTimeout(l.timer);
    l.timer = undefined;
    l.abort?.abort();
    l.abort = undefined;
  }

  private schedule(loop: Loop, delayMs: number): void {
    if (this.stopped || !this.loops.includes(loop)) return;
    loop.timer = this.o.clock.setTimeout(() => {
      loop.timer = undefined;
      void this.run(loop);
    }, delayMs);
  }

  private async run(loop: Loop): Promise<void> {
    if (this.stopped || !this.loops.includes(loop)) return;
    const clock = this.o.clock;
    const began = clock.now();
    const ac = new AbortController();
    loop.abort = ac;
    const timeoutMs = loop.probe.timeoutSeconds * 1000;
    let timedOut = false;
    let onTimeout: (() => void) | undefined;
    const deadline = new Promise<ProbeResult>((resolve) => {
      onTimeout = () => resolve({ ok: false, detail: `timed out after ${loop.probe.timeoutSeconds}s` });
    });
    const timer = clock.setTimeout(() => {
      timedOut = true;
      onTimeout?.();
      ac.abort();
    }, timeoutMs);
    let r: ProbeResult;
    try {
      // The race bounds a checker that ignores its signal.
      r = await Promise.race([this.o.checker.check(loop.probe, this.o.containerId, ac.signal), deadline]);
    } catch (err) {
      r = { ok: false, detail: err instanceof Error ? err.message : String(err) };
    }
    clock.clearTimeout(timer);
    if (loop.abort === ac) loop.abort = undefined;
    if (this.stopped || !this.loops.includes(loop)) return;
    if (timedOut && r.ok) r = { ok: false, detail: `timed out after ${loop.probe.timeoutSeconds}s` };
    this.runs++;
    this.record(loop, r);
    this.schedule(loop, Math.max(0, began + loop.probe.periodSeconds * 1000 - clock.now()));
  }

  private record(loop: Loop, r: ProbeResult): void {
    const { probe, kind } = loop;
    if (r.ok) {
      loop.successes++;
      loop.failures = 0;
    } else {
      loop.failures++;
      loop.successes = 0;
      this.log.debug('probe failed', { container: this.o.label, probe: kind, failures: loop.failures, detail: r.detail });
    }
    switch (kind) {
      case 'startup':
        if (r.ok && loop.successes >= probe.successThreshold) {
          this.drop(loop);
          this.startedOk = true;
          this.log.info('startup probe succeeded', { container: this.o.label });
          this.beginMain();
          this.o.onChange();
        } else if (!r.ok && loop.failures >= probe.failureThreshold) {
          this.giveUp('startup', r.detail);
        }
        return;
      case 'liveness':
        // Any success resets the count (Kubernetes requires successThreshold 1 for liveness).
        if (!r.ok && loop.failures >= probe.failureThreshold) this.giveUp('liveness', r.detail);
        return;
      case 'readiness': {
        const before = this.readinessOk;
        if (r.ok && loop.successes >= probe.successThreshold) this.readinessOk = true;
        else if (!r.ok && loop.failures >= probe.failureThreshold) this.readinessOk = false;
        if (before !== this.readinessOk) {
          this.log.info(this.readinessOk ? 'container ready' : 'container not ready: readiness probe failed', { container: this.o.label, detail: r.detail });
          this.o.onChange();
        }
        return;
      }
    }
  }

  private drop(loop: Loop): void {
    this.halt(loop);
    const i = this.loops.indexOf(loop);
    if (i >= 0) this.loops.splice(i, 1);
  }

  /** The run is beyond saving: stop probing it and let the reconciler restart it. */
  private giveUp(kind: 'startup' | 'liveness', detail: string): void {
    this.sick = `Unhealthy: ${kind} probe failed: ${detail}`;
    for (const l of this.loops) this.halt(l);
    this.loops.length = 0;
    this.log.warn('container unhealthy; it will be restarted', { container: this.o.label, reason: this.sick });
    this.o.onChange();
  }
}
