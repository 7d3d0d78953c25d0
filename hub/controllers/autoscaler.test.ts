import { describe, expect, it } from 'vitest';
import { OrchardError } from '../../protocol/errors.js';
import type { Deployment, EventObject, Pod } from '../../protocol/objects.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { silentLogger } from '../log.js';
import { UsageStore } from '../metrics/usage-store.js';
import { Operations } from '../operations.js';
import { mockNodeObject } from '../scheduler/testing.js';
import { MemoryStore } from '../store/memory-store.js';
import { Autoscaler } from './autoscaler.js';

/**
 * The autoscaler controller on a MemoryStore and a fake clock: pods and usage are written by hand
 * (no agents), so each pass sees exactly the numbers a test sets. The arithmetic itself is
 * hpa.test.ts's.
 */
const MANIFEST = (extra = ''): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 2
  autoscale: { minReplicas: 1, maxReplicas: 8, targetCPUUtilizationPercentage: 50${extra} }
  template:
    spec:
      containers: [{ name: app, image: img, resources: { requests: { cpu: 200m } } }]
`;

function world(o: { graceMs?: number } = {}) {
  const clock = new FakeClock(Date.parse('2026-01-01T00:00:00Z'));
  const now = (): Date => new Date(clock.now());
  const store = new MemoryStore({ now });
  const usage = new UsageStore({ now: () => clock.now() });
  const ops = new Operations({ store, log: silentLogger, now });
  const scaler = new Autoscaler({ store, usage, log: silentLogger, clock, startupGraceMs: o.graceMs ?? 0, syncPeriodMs: 15_000, downscaleWindowMs: 300_000 });
  store.create(mockNodeObject('n1'));
  ops.apply(MANIFEST());
  const podCpu = new Map<string, number>();
  /** Running, Ready pods of `web` on n1, started long ago (past the CPU initialisation period). */
  const syncPods = (): void => {
    const d = store.get('Deployment', 'web') as Deployment;
    const have = store.list('Pod', { ownerName: 'web' });
    const long = new Date(clock.now() - 3_600_000).toISOString();
    for (let i = have.length; i < d.spec.replicas; i++) {
      store.create({
        apiVersion: 'orchard/v1',
        kind: 'Pod',
        metadata: { name: `web-${i}`, labels: {}, annotations: {}, ownerName: 'web' },
        spec: { ...structuredClone(d.spec.template.spec), nodeName: 'n1' } as Pod['spec'],
        status: { phase: 'Running', startTime: long, conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: long }], containerStatuses: [] },
      });
    }
    for (const p of have.slice(d.spec.replicas)) store.delete('Pod', p.metadata.name);
  };
  /** Two usage reports 10 s apart in which every pod burns `cores` (so the hub has a rate). */
  const report = (cores: number): void => {
    for (let r = 0; r < 2; r++) {
      const pods: Record<string, Record<string, [number, number]>> = {};
      for (const p of store.list('Pod', { ownerName: 'web' })) {
        const total = (podCpu.get(p.metadata.name) ?? 0) + (r === 0 ? 0 : cores * 10);
        podCpu.set(p.metadata.name, total);
        pods[p.metadata.name] = { app: [total, 1024] };
      }
      usage.ingest({ node: 'n1', usage: { cpuPercent: 10, memoryUsedBytes: 1, at: new Date(clock.now()).toISOString() }, pods, full: true });
      if (r === 0) clock.advance(10_000);
    }
  };
  const pass = async (): Promise<Deployment> => {
    await scaler.reconcile('web');
    return store.get('Deployment', 'web') as Deployment;
  };
  const events = (reason: string): EventObject[] => store.list('Event').filter((e) => e.reason === reason);
  return { clock, store, usage, ops, scaler, syncPods, report, pass, events };
}

describe('Autoscaler', () => {
  it('scales spec.replicas on the pods usage, with the numbers in status and a SuccessfulRescale event', async () => {
    const w = world();
    w.syncPods();
    w.report(0.2); // 200m of a 200m request: 100 % against 50 % → ceil(2 × 2) = 4
    const d = await w.pass();
    expect(d.spec.replicas).toBe(4);
    expect(d.status.autoscale?.metrics).toEqual([
      { resource: 'cpu', targetPercent: 50, currentPercent: 100, ready: 2, unready: 0, missing: 0, ignored: 0, recommendation: 4 },
    ]);
    expect(d.status.autoscale?.lastDecision).toMatchObject({ currentReplicas: 2, desiredReplicas: 4, recommendation: 4, reason: 'DesiredWithinRange' });
    expect(d.status.autoscale?.lastScaleTime).toBe(new Date(w.clock.now()).toISOString());
    expect(w.events('SuccessfulRescale').map((e) => e.message)).toEqual([
      'replicas 2 → 4 (DesiredWithinRange): cpu 100% of requests (target 50%) over 2 ready, 0 unready, 0 missing → 4; recommendation 4',
    ]);
  });

  it('waits for its sync period between passes, and runs at once when spec.autoscale changes', async () => {
    const w = world();
    w.syncPods();
    w.report(0.2);
    expect((await w.scaler.reconcile('web')) ?? {}).toEqual({ requeueAfterMs: 15_000 });
    w.syncPods();
    w.report(0.4); // 10 s later: not due yet
    expect(await w.scaler.reconcile('web')).toEqual({ requeueAfterMs: 5_000 });
    expect((w.store.get('Deployment', 'web') as Deployment).spec.replicas).toBe(4);
    w.ops.autoscale({ name: 'web', maxReplicas: 5 });
    expect((await w.pass()).spec.replicas).toBe(5);
  });

  it('makes no decision inside the node-startup grace, then does', async () => {
    const w = world({ graceMs: 60_000 });
    w.scaler.start();
    w.syncPods();
    w.report(0.2);
    let d = await w.pass();
    expect(d.spec.replicas).toBe(2);
    expect(d.status.autoscale?.lastDecision.reason).toBe('NodeStartupGrace');
    w.clock.advance(60_000);
    w.report(0.2);
    d = await w.pass();
    expect(d.spec.replicas).toBe(4);
    w.scaler.stop();
  });

  it('holds a scale-down for the window, recording the hold once, and leaves status alone when nothing changed', async () => {
    const w = world();
    w.syncPods();
    w.report(0.05); // 25 % → ceil(0.5 × 2) = 1, but the first pass's window is seeded with 2
    let d = await w.pass();
    expect([d.spec.replicas, d.status.autoscale?.lastDecision.reason]).toEqual([2, 'ScaleDownStabilized']);
    const rv = d.metadata.resourceVersion;
    w.clock.advance(15_000);
    d = await w.pass();
    expect(d.metadata.resourceVersion).toBe(rv); // same decision, same numbers: no write (SD cards)
    expect(w.events('AutoscaleHeld')).toHaveLength(1);
    w.clock.advance(300_000);
    w.report(0.05);
    d = await w.pass();
    expect(d.spec.replicas).toBe(1);
  });

  it('treats replicas set to 0 by hand as autoscaling off, and clears its status when autoscale is removed', async () => {
    const w = world();
    w.ops.scale('web', 0);
    let d = await w.pass();
    expect([d.spec.replicas, d.status.autoscale?.lastDecision.reason]).toEqual([0, 'ScaledToZero']);
    w.ops.autoscale({ name: 'web', off: true });
    d = await w.pass();
    expect(d.spec.autoscale).toBeUndefined();
    expect(d.status.autoscale).toBeUndefined();
  });
});

describe('Operations: autoscale and apply', () => {
  it('autoscale merges the values given into spec.autoscale and validates the result naming the field', () => {
    const w = world();
    const d = w.ops.autoscale({ name: 'web', minReplicas: 2, scaleDownStabilizationWindowSeconds: 60 });
    expect(d.spec.autoscale).toEqual({ minReplicas: 2, maxReplicas: 8, targetCPUUtilizationPercentage: 50, scaleDownStabilizationWindowSeconds: 60 });
    const err = (() => {
      try {
        w.ops.autoscale({ name: 'web', minReplicas: 9 });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(OrchardError.is(err, 'ERR_VALIDATION')).toBe(true);
    expect((err as OrchardError).details?.issues).toContainEqual({ path: 'spec.autoscale.minReplicas', message: 'must be at most maxReplicas (9 > 8)' });
    // The memory target needs memory requests: the container has only cpu.
    expect(() => w.ops.autoscale({ name: 'web', memoryPercent: 70 })).toThrow(/spec.template.spec.containers\[0\].resources.requests.memory/);
  });

  it('a new deployment without max is refused; off removes the policy', () => {
    const w = world();
    w.ops.autoscale({ name: 'web', off: true });
    expect(() => w.ops.autoscale({ name: 'web', cpuPercent: 50 })).toThrow(/maxReplicas: required/);
    expect(() => w.ops.autoscale({ name: 'nope', off: true })).toThrow(/not found/);
  });

  it('re-applying the manifest keeps the replicas the autoscaler chose (clamped to the new bounds)', () => {
    const w = world();
    w.ops.scale('web', 6);
    expect(w.ops.apply(MANIFEST()).results[0]?.action).toBe('unchanged');
    expect((w.store.get('Deployment', 'web') as Deployment).spec.replicas).toBe(6);
    w.ops.apply(MANIFEST().replace('maxReplicas: 8', 'maxReplicas: 4'));
    expect((w.store.get('Deployment', 'web') as Deployment).spec.replicas).toBe(4);
  });
});
