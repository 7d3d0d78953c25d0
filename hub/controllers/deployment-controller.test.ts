import { describe, expect, it } from 'vitest';
import type { Pod } from '../../protocol/objects.js';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { MemoryStore } from '../store/memory-store.js';
import { DeploymentController, statusOnly } from './deployment-controller.js';

const manifest = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 3
  template:
    spec:
      containers: [{ name: c, image: app:v1 }]
`;

function setup(statusReconcileIntervalMs?: number) {
  const clock = new FakeClock();
  const now = (): Date => new Date(clock.now());
  const store = new MemoryStore({ now });
  const ops = new Operations({ store, log: silentLogger, now });
  const ctrl = new DeploymentController({
    store,
    log: silentLogger,
    now,
    clock,
    ...(statusReconcileIntervalMs !== undefined ? { statusReconcileIntervalMs } : {}),
  });
  const runs: number[] = [];
  const inner = ctrl.reconcile.bind(ctrl);
  ctrl.reconcile = (name: string) => {
    runs.push(clock.now());
    return inner(name);
  };
  ctrl.start();
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 3; i++) await ctrl.queue.idle();
  };
  /** A status-only write (what an agent's report does): one more restart, Running, maybe Ready. */
  const report = (p: Pod, ready: boolean): void => {
    const next = structuredClone(store.get('Pod', p.metadata.name)) as Pod;
    next.status.phase = 'Running';
    next.status.conditions = ready ? [{ type: 'Ready', status: 'True', lastTransitionTime: new Date(0).toISOString() }] : [];
    next.status.containerStatuses = [
      { name: 'c', image: 'app:v1', state: 'running', restartCount: (next.status.containerStatuses[0]?.restartCount ?? 0) + 1, ready },
    ];
    store.update(next);
  };
  /** Moves the fake clock (firing due deferred passes) and lets the queue drain. */
  const elapse = async (ms: number): Promise<void> => {
    clock.advance(ms);
    await settle();
  };
  return { store, ops, ctrl, runs, settle, report, clock, elapse };
}

describe('DeploymentController status coalescing (statusReconcileIntervalMs)', () => {
  it('runs status-driven passes at most once per interval, and always once after the last change', async () => {
    const { store, ops, ctrl, runs, settle, report, clock, elapse } = setup(200);
    ops.apply(manifest);
    await settle();
    const pods = store.list('Pod');
    expect(pods).toHaveLength(3);
    const before = runs.length;
    const t0 = clock.now();
    // 12 report batches over 120 ms: unthrottled, each would run the rollout pass.
    for (let i = 0; i < 12; i++) {
      for (const p of pods) report(p, i === 11);
      await elapse(10);
    }
    const during = runs.slice(before).filter((t) => t < t0 + 190).length;
    expect(during).toBeLessThanOrEqual(1);
    expect(store.get('Deployment', 'web')?.status.readyReplicas ?? 0).toBeLessThan(3);
    // The last change is never lost: a deferred pass runs within the interval.
    await elapse(250);
    expect(store.get('Deployment', 'web')?.status.readyReplicas).toBe(3);
    expect(runs.length - before).toBeLessThanOrEqual(3);
    ctrl.stop();
  });

  it('reconciles pod deletes, spec changes and failures at once', async () => {
    const { store, ops, ctrl, settle, report } = setup(60_000);
    ops.apply(manifest);
    await settle();
    const [a, b] = store.list('Pod');
    report(a!, false); // leading edge: runs now and starts the (long) interval
    await settle();
    store.delete('Pod', b!.metadata.name);
    await settle();
    expect(store.list('Pod')).toHaveLength(3);
    const failed = structuredClone(store.get('Pod', a!.metadata.name)) as Pod;
    failed.status.phase = 'Failed';
    store.update(failed);
    await settle();
    // Replaced without waiting the 60 s interval.
    expect(store.get('Pod', a!.metadata.name)).toBeUndefined();
    expect(store.list('Pod')).toHaveLength(3);
    ctrl.stop();
  });

  it('without the option every status change reconciles at once', async () => {
    const { store, ops, ctrl, settle, report } = setup();
    ops.apply(manifest);
    await settle();
    for (const p of store.list('Pod')) report(p, true);
    await settle();
    expect(store.get('Deployment', 'web')?.status.readyReplicas).toBe(3);
    ctrl.stop();
  });
});

describe('statusOnly', () => {
  it('tells status reports from changes the planner must see at once', async () => {
    const { store, ops, ctrl, settle } = setup();
    ops.apply(manifest);
    await settle();
    ctrl.stop();
    const p = store.list('Pod')[0]!;
    const edit = (fn: (x: Pod) => void): Pod => {
      const x = structuredClone(p) as Pod;
      fn(x);
      return x;
    };
    expect(
      statusOnly(
        p,
        edit((x) => (x.status.conditions = [{ type: 'Ready', status: 'True' }])),
      ),
    ).toBe(true);
    expect(
      statusOnly(
        p,
        edit((x) => (x.status.phase = 'Running')),
      ),
    ).toBe(true);
    expect(
      statusOnly(
        p,
        edit((x) => (x.status.phase = 'Failed')),
      ),
    ).toBe(false);
    expect(
      statusOnly(
        p,
        edit((x) => (x.metadata.generation += 1)),
      ),
    ).toBe(false);
    expect(
      statusOnly(
        p,
        edit((x) => (x.metadata.deletionTimestamp = new Date().toISOString())),
      ),
    ).toBe(false);
    expect(
      statusOnly(
        p,
        edit((x) => delete x.metadata.ownerName),
      ),
    ).toBe(false);
  });
});
