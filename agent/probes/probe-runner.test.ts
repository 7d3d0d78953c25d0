import { describe, expect, it } from 'vitest';
import type { Probe } from '../../protocol/manifest.js';
import { ProbeSchema } from '../../protocol/manifest.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { flush } from '../test-fixtures.js';
import type { ProbeChecker, ProbeResult } from './probe-check.js';
import type { ContainerProbes } from './probe-runner.js';
import { ProbeRunner } from './probe-runner.js';

const probe = (
  name: string,
  over: Partial<Record<'initialDelaySeconds' | 'periodSeconds' | 'timeoutSeconds' | 'failureThreshold' | 'successThreshold', number>> = {},
): Probe => ProbeSchema.parse({ exec: { command: [name] }, ...over });

/** Answers per probe name from a queue (then `fallback`, then success); records calls. */
class Scripted implements ProbeChecker {
  readonly calls: string[] = [];
  constructor(
    private readonly answers: Record<string, Array<boolean | 'hang' | Promise<ProbeResult>>>,
    private readonly fallback: Record<string, boolean> = {},
  ) {}

  async check(p: Probe): Promise<ProbeResult> {
    const name = p.exec?.command[0] ?? '?';
    this.calls.push(name);
    const a = this.answers[name]?.shift() ?? this.fallback[name] ?? true;
    if (a === 'hang') return new Promise<ProbeResult>(() => {});
    if (typeof a === 'object') return a;
    return { ok: a, detail: a ? 'fine' : `${name} said no` };
  }

  count(name: string): number {
    return this.calls.filter((c) => c === name).length;
  }
}

function setup(probes: ContainerProbes, checker: Scripted, startedAgoMs = 0) {
  const clock = new FakeClock();
  let changes = 0;
  const r = new ProbeRunner({
    containerId: 'c1',
    startedAt: clock.now() - startedAgoMs,
    probes,
    checker,
    clock,
    label: 'web-1/main',
    onChange: () => changes++,
  });
  r.start();
  const step = async (ms: number): Promise<void> => {
    // Advance in 100 ms ticks so a run that finishes schedules its successor on time.
    for (let t = 0; t < ms; t += 100) {
      clock.advance(Math.min(100, ms - t));
      await flush(3);
    }
  };
  return { clock, r, step, changes: () => changes };
}

describe('ProbeRunner', () => {
  it('liveness: unhealthy after failureThreshold failures in a row, not before; a success resets the count', async () => {
    const c = new Scripted({ live: [false, false, true, false, false, false] });
    const t = setup({ livenessProbe: probe('live', { periodSeconds: 10, failureThreshold: 3 }) }, c);
    await t.step(0);
    await t.step(1); // first run at t=0 (no initial delay)
    expect(c.count('live')).toBe(1);
    await t.step(40_000); // runs at 10, 20, 30, 40 s: fail, success, fail, fail
    expect(t.r.unhealthy).toBeUndefined();
    expect(t.r.ready).toBe(true); // no readiness probe: ready while started and healthy
    await t.step(10_000); // third failure in a row
    expect(t.r.unhealthy).toBe('Unhealthy: liveness probe failed: live said no');
    expect(t.r.ready).toBe(false);
    expect(t.changes()).toBe(1);
    const n = c.count('live');
    await t.step(60_000); // gave up: no more runs
    expect(c.count('live')).toBe(n);
  });

  it('honours initialDelaySeconds from the container start, and probes an adopted old container at once', async () => {
    const c = new Scripted({});
    const t = setup({ livenessProbe: probe('live', { initialDelaySeconds: 15, periodSeconds: 5 }) }, c);
    await t.step(14_900);
    expect(c.count('live')).toBe(0);
    await t.step(200);
    expect(c.count('live')).toBe(1);

    const c2 = new Scripted({});
    const t2 = setup({ livenessProbe: probe('live', { initialDelaySeconds: 15 }) }, c2, 60_000);
    await t2.step(1);
    expect(c2.count('live')).toBe(1);
  });

  it('never overlaps runs of one probe and bounds each run by timeoutSeconds', async () => {
    const c = new Scripted({ live: ['hang', 'hang', 'hang'] });
    const t = setup({ livenessProbe: probe('live', { periodSeconds: 1, timeoutSeconds: 5, failureThreshold: 3 }) }, c);
    await t.step(4_900);
    expect(c.count('live')).toBe(1); // still waiting for the first (hung) run despite a 1 s period
    await t.step(200); // timed out at 5 s, next one starts at once (period already passed)
    expect(c.count('live')).toBe(2);
    await t.step(10_000);
    expect(c.count('live')).toBe(3);
    expect(t.r.unhealthy).toBe('Unhealthy: liveness probe failed: timed out after 5s');
  });

  it('a run slower than the period delays the next one instead of overlapping it', async () => {
    const clock = new FakeClock();
    let inFlight = 0;
    let maxInFlight = 0;
    let runs = 0;
    const slow: ProbeChecker = {
      check: () => {
        runs++;
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        return new Promise((resolve) =>
          clock.setTimeout(() => {
            inFlight--;
            resolve({ ok: true, detail: 'slow' });
          }, 2500),
        );
      },
    };
    const r = new ProbeRunner({
      containerId: 'c1',
      startedAt: clock.now(),
      probes: { livenessProbe: probe('live', { periodSeconds: 1, timeoutSeconds: 10 }) },
      checker: slow,
      clock,
      label: 'x',
      onChange: () => {},
    });
    r.start();
    for (let i = 0; i < 100; i++) {
      clock.advance(100);
      await flush(3);
    }
    expect(maxInFlight).toBe(1);
    expect(runs).toBe(4); // starts at 0, 2.5, 5, 7.5 s
    r.stop();
  });

  it('readiness: not ready until successThreshold successes, not ready again after failureThreshold failures', async () => {
    const c = new Scripted({ ready: [true, true, false, false, true] }, { ready: true });
    const t = setup({ readinessProbe: probe('ready', { periodSeconds: 1, successThreshold: 2, failureThreshold: 2 }) }, c);
    expect(t.r.ready).toBe(false);
    await t.step(1);
    expect(t.r.ready).toBe(false); // one success of two
    await t.step(1000);
    expect(t.r.ready).toBe(true);
    expect(t.changes()).toBe(1);
    await t.step(1000);
    expect(t.r.ready).toBe(true); // one failure of two
    await t.step(1000);
    expect(t.r.ready).toBe(false);
    expect(t.changes()).toBe(2);
    await t.step(2000); // true, true (fallback)
    expect(t.r.ready).toBe(true);
    expect(t.changes()).toBe(3);
    expect(t.r.unhealthy).toBeUndefined(); // readiness never restarts anything
  });

  it('startup gates liveness and readiness, then hands over', async () => {
    const c = new Scripted({ start: [false, false, true] });
    const t = setup(
      {
        startupProbe: probe('start', { periodSeconds: 2, failureThreshold: 10 }),
        livenessProbe: probe('live', { periodSeconds: 1 }),
        readinessProbe: probe('ready', { periodSeconds: 1 }),
      },
      c,
    );
    await t.step(3_000);
    expect(c.count('start')).toBe(2);
    expect(c.count('live') + c.count('ready')).toBe(0);
    expect(t.r.ready).toBe(false);
    await t.step(1_100); // startup succeeds at 4 s
    expect(c.count('start')).toBe(3);
    expect(c.count('live')).toBeGreaterThan(0);
    expect(t.r.ready).toBe(true);
    await t.step(10_000);
    expect(c.count('start')).toBe(3); // startup never runs again
  });

  it('a startup probe that keeps failing makes the container unhealthy', async () => {
    const c = new Scripted({}, { start: false });
    const t = setup({ startupProbe: probe('start', { periodSeconds: 1, failureThreshold: 3 }), livenessProbe: probe('live') }, c);
    await t.step(2_100);
    expect(t.r.unhealthy).toBe('Unhealthy: startup probe failed: start said no');
    expect(c.count('live')).toBe(0);
  });

  it('stop() ends all probing and silences callbacks, even for a run in flight', async () => {
    let release: (r: ProbeResult) => void = () => {};
    const slow = new Promise<ProbeResult>((r) => (release = r));
    const c = new Scripted({ live: [slow] }, { live: false });
    const t = setup({ livenessProbe: probe('live', { periodSeconds: 1, failureThreshold: 1 }) }, c);
    await t.step(1);
    t.r.stop();
    release({ ok: false, detail: 'late' });
    await t.step(5_000);
    expect(c.count('live')).toBe(1);
    expect(t.r.unhealthy).toBeUndefined();
    expect(t.changes()).toBe(0);
    expect(t.clock.pending).toBe(0);
  });
});
