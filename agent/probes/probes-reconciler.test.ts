import { describe, expect, it } from 'vitest';
import type { DesiredPod, ObservedPod } from '../../protocol/messages.js';
import { DesiredPodSchema } from '../../protocol/messages.js';
import { plan } from '../plan.js';
import { Reconciler } from '../reconciler.js';
import { MemoryRuntime } from '../runtime/memory-runtime.js';
import type { RuntimeContainer } from '../runtime/runtime.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { TEST_IMAGE, flush, mockContainer } from '../test-fixtures.js';

/** Probes wired through the reconciler: memory runtime with scripted exec, hand-driven clock. */

const NODE = 'node-1';

function podWith(containers: Array<Record<string, unknown>>, over: Record<string, unknown> = {}): DesiredPod {
  return DesiredPodSchema.parse({
    name: 'web-1',
    uid: 'uid-web-1',
    deployment: 'web',
    spec: { containers: containers.map((c) => ({ image: TEST_IMAGE, command: ['sleep', '3600'], ...c })), terminationGracePeriodSeconds: 0, ...over },
  });
}
const execProbe = (cmd: string, over: Record<string, number> = {}) => ({ exec: { command: [cmd] }, periodSeconds: 1, failureThreshold: 3, ...over });

function setup() {
  const clock = new FakeClock();
  const runtime = new MemoryRuntime({ images: [TEST_IMAGE], now: clock.now });
  // Scripted container health: each probe command answers from this table.
  const healthy = new Map<string, boolean>();
  runtime.scriptExec((_id, cmd) => ((healthy.get(cmd[0] ?? '') ?? true) ? { exitCode: 0, output: '' } : { exitCode: 1, output: `${cmd[0]}: unhealthy` }));
  const observed: ObservedPod[][] = [];
  const rec = new Reconciler({ node: NODE, runtime, clock, onObserved: (pods) => observed.push(pods) });
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      await flush();
      await rec.idle();
    }
  };
  /** Advances the clock in 100 ms ticks, letting probes and passes run in between. */
  const step = async (ms: number): Promise<void> => {
    for (let t = 0; t < ms; t += 100) {
      clock.advance(Math.min(100, ms - t));
      await settle();
    }
  };
  const containers = (): Promise<RuntimeContainer[]> => runtime.listContainers(NODE);
  const last = (): ObservedPod | undefined => observed.at(-1)?.[0];
  return { clock, runtime, healthy, rec, observed, settle, step, containers, last };
}

describe('probes through the reconciler', () => {
  it('liveness failing failureThreshold times restarts the container in place, counted, with the reason; then backs off', async () => {
    const t = setup();
    t.rec.setDesired([podWith([{ name: 'main', livenessProbe: execProbe('live') }])], 1);
    await t.rec.start();
    await t.settle();
    await t.step(2000);
    const [c] = await t.containers();
    const id = c?.id ?? '';
    expect(t.last()).toMatchObject({ phase: 'Running', ready: true });
    expect(t.runtime.calls.exec).toBeGreaterThanOrEqual(2);

    t.healthy.set('live', false);
    await t.step(2000); // two failures: not yet
    expect(t.runtime.calls.stop).toBe(0);
    await t.step(1100); // third failure → stop → exited → restarted at once (first restart)
    expect(t.runtime.calls.stop).toBe(1);
    const after = (await t.containers())[0];
    expect(after).toMatchObject({ id, state: 'running' });
    expect(after?.startedAt).not.toBe(c?.startedAt);
    expect(t.last()?.containers[0]).toMatchObject({
      state: 'running',
      restartCount: 1,
      ready: true,
      message: 'last termination: Unhealthy: liveness probe failed: command ["live"] exited with 1: live: unhealthy',
    });

    // Still failing: the new run gets its own three strikes (probed at 0, 1, 2 s), then waits out a 1 s back-off.
    await t.step(2500);
    expect(t.runtime.calls.stop).toBe(2);
    expect((await t.containers())[0]?.state).toBe('exited');
    expect(t.last()?.containers[0]).toMatchObject({ state: 'waiting', reason: 'CrashLoopBackOff' });
    expect(t.last()?.containers[0]?.message).toMatch(/Unhealthy: liveness probe failed/);
    t.healthy.set('live', true);
    await t.step(1100);
    expect((await t.containers())[0]).toMatchObject({ id, state: 'running' });
    expect(t.last()?.containers[0]?.restartCount).toBe(2);
    await t.step(10_000); // healthy again: no more restarts
    expect(t.runtime.calls.stop).toBe(2);
    await t.rec.stop();
  });

  it('readiness drives the container and pod ready flags and the Ready condition; never restarts', async () => {
    const t = setup();
    t.healthy.set('ready', false);
    t.rec.setDesired([podWith([{ name: 'main', readinessProbe: execProbe('ready', { failureThreshold: 2 }) }])], 1);
    await t.rec.start();
    await t.settle();
    await t.step(3000);
    expect(t.last()).toMatchObject({ phase: 'Running', ready: false });
    expect(t.last()?.conditions).toContainEqual({
      type: 'Ready',
      status: 'False',
      reason: 'ContainersNotReady',
      message: 'containers with unready status: [main]',
    });
    expect(t.last()?.containers[0]).toMatchObject({ state: 'running', ready: false });

    const published = t.observed.length;
    t.healthy.set('ready', true);
    await t.step(1100);
    expect(t.last()).toMatchObject({ phase: 'Running', ready: true });
    expect(t.last()?.conditions).toContainEqual({ type: 'Ready', status: 'True' });
    expect(t.observed.length).toBe(published + 1); // republished once, on the change

    t.healthy.set('ready', false);
    await t.step(1000);
    expect(t.last()?.ready).toBe(true); // one failure of two
    await t.step(1000);
    expect(t.last()?.ready).toBe(false);
    expect(t.observed.length).toBe(published + 2);
    expect(t.runtime.calls.stop).toBe(0);
    expect(t.last()?.containers[0]?.restartCount).toBe(0);
    await t.rec.stop();
  });

  it('a pod is ready only when every container is: one without a readiness probe is ready when running', async () => {
    const t = setup();
    t.healthy.set('side-ready', false);
    t.rec.setDesired([podWith([{ name: 'main' }, { name: 'side', readinessProbe: execProbe('side-ready') }])], 1);
    await t.rec.start();
    await t.step(2000);
    expect(t.last()?.containers.map((s) => [s.name, s.ready])).toEqual([
      ['main', true],
      ['side', false],
    ]);
    expect(t.last()?.ready).toBe(false);
    t.healthy.set('side-ready', true);
    await t.step(1100);
    expect(t.last()?.ready).toBe(true);
    await t.rec.stop();
  });

  it('restartPolicy Never: a liveness failure stops the container for good and the pod fails', async () => {
    const t = setup();
    t.healthy.set('live', false);
    t.rec.setDesired([podWith([{ name: 'main', livenessProbe: execProbe('live', { failureThreshold: 1 }) }], { restartPolicy: 'Never' })], 1);
    await t.rec.start();
    await t.step(3000);
    expect((await t.containers())[0]?.state).toBe('exited');
    expect(t.runtime.calls.stop).toBe(1);
    expect(t.last()).toMatchObject({ phase: 'Failed', ready: false });
    expect(t.last()?.containers[0]).toMatchObject({
      state: 'terminated',
      reason: 'Error',
      message: 'Unhealthy: liveness probe failed: command ["live"] exited with 1: live: unhealthy',
    });
    await t.rec.stop();
  });

  it('stop() ends probing: no exec after the reconciler stopped', async () => {
    const t = setup();
    t.rec.setDesired([podWith([{ name: 'main', livenessProbe: execProbe('live') }])], 1);
    await t.rec.start();
    await t.step(2000);
    await t.rec.stop();
    const n = t.runtime.calls.exec;
    await t.step(5000);
    expect(t.runtime.calls.exec).toBe(n);
  });
});

describe('plan() with unhealthy runs', () => {
  const pod = podWith([{ name: 'main', livenessProbe: execProbe('live') }]);
  const c = mockContainer(pod, 0, { startedAt: '2024-01-01T00:00:05.000Z' });
  const state = (startedAt: string) => ({
    containers: new Map(),
    failures: new Map(),
    unhealthy: new Map([[c.id, { startedAt, reason: 'Unhealthy: liveness probe failed: x' }]]),
  });

  it('stops the run the probe gave up on, with its grace period', () => {
    expect(plan([pod], [c], Date.parse('2024-01-01T00:01:00Z'), state('2024-01-01T00:00:05.000Z')).actions).toMatchObject([
      { type: 'kill', id: c.id, reason: 'Unhealthy: liveness probe failed: x', graceSeconds: 0 },
    ]);
  });

  it('leaves a later run of the same container alone', () => {
    expect(plan([pod], [c], Date.parse('2024-01-01T00:01:00Z'), state('2024-01-01T00:00:01.000Z')).actions).toEqual([]);
  });
});
