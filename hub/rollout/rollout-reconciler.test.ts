import { describe, expect, it } from 'vitest';
import type { DesiredSetMessage, NodeStatusMessage } from '../../protocol/messages.js';
import type { Pod } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { DeploymentController } from '../controllers/deployment-controller.js';
import { DesiredPublisher } from '../controllers/desired-publisher.js';
import { NodeController } from '../controllers/node-controller.js';
import { SchedulingController } from '../controllers/scheduling-controller.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { MemoryStore } from '../store/memory-store.js';
import { RolloutOperations } from './rollout-ops.js';
import { mockNodeStatus } from '../controllers/test-fixtures.js';

const manifest = (
  image: string,
  extra = '',
  strategy = 'strategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } }',
  cause = 'deploy ' + image,
): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web, annotations: { orchard.dev/change-cause: "${cause}" } }
spec:
  replicas: 3
  progressDeadlineSeconds: 15
  ${strategy}
  template:
    spec:
      containers: [{ name: c, image: ${image}, resources: { requests: { cpu: 10m, memory: 8Mi } } ${extra} }]
`;

const status = (node: string): NodeStatusMessage => mockNodeStatus(node, { arch: 'amd64' });

function world() {
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const now = (): Date => new Date(clock);
  const store = new MemoryStore({ now });
  const published: DesiredSetMessage[] = [];
  const publisher: Publisher = {
    publish: async (topic, payload) =>
      void (topic.endsWith('/desired') && payload.length > 0 && published.push(JSON.parse(payload.toString()) as DesiredSetMessage)),
  };
  const log = silentLogger;
  const ops = new Operations({ store, log, now });
  const rollout = new RolloutOperations({ store, log, now });
  const deployments = new DeploymentController({ store, log, now });
  const scheduling = new SchedulingController({ store, log, now });
  const desired = new DesiredPublisher({ store, publisher, log, now });
  const nodes = new NodeController({ store, log, now, heartbeatGraceMs: 1e9 });
  deployments.start();
  scheduling.start();
  desired.start();
  for (const n of ['n1', 'n2']) nodes.handle(topics.nodeStatus(n), Buffer.from(JSON.stringify(status(n))));
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) {
      await deployments.queue.idle();
      await scheduling.queue.idle();
      await desired.queue.idle();
    }
  };
  /** The agent's part: every bound pod of `image` becomes Running and Ready (or waits with `reason`). */
  const observe = (image: string, ready: boolean, reason?: string): void => {
    for (const p of store.list('Pod')) {
      if (!p.spec.nodeName || p.spec.containers[0]?.image !== image) continue;
      const next = structuredClone(p) as Pod;
      next.status = ready
        ? {
            phase: 'Running',
            conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now().toISOString() }],
            containerStatuses: [{ name: 'c', image, state: 'running', restartCount: 0, ready: true }],
          }
        : {
            phase: 'Pending',
            conditions: [{ type: 'Ready', status: 'False' }],
            containerStatuses: [
              {
                name: 'c',
                image,
                state: 'waiting',
                reason: reason ?? 'ContainerCreating',
                message: `${reason ?? ''} for ${image}`,
                restartCount: 0,
                ready: false,
              },
            ],
          };
      store.update(next);
    }
  };
  const images = (): string[] =>
    store
      .list('Pod')
      .map((p) => p.spec.containers[0]?.image ?? '')
      .sort();
  const stop = (): void => [deployments, scheduling, desired].forEach((c) => c.stop());
  return { store, ops, rollout, settle, observe, images, published, deployments, advance: (ms: number) => (clock += ms), stop };
}

/** Drives the rollout: mark pods of `image` ready after each controller step; returns the most unavailable seen. */
async function drive(w: ReturnType<typeof world>, image: string, steps = 20): Promise<number> {
  let worst = 0;
  for (let i = 0; i < steps; i++) {
    await w.settle();
    const pods = w.store.list('Pod');
    const readyCount = pods.filter((p) => p.status.phase === 'Running').length;
    worst = Math.max(worst, 3 - readyCount);
    w.observe(image, true);
    await w.settle();
    const d = w.store.get('Deployment', 'web');
    if (d?.status.rollout?.phase === 'Complete' && d.status.updatedReplicas === 3) break;
  }
  return worst;
}

describe('rollouts through the controllers (memory store)', () => {
  it('rolls v1 → v2 with maxUnavailable 0, records revisions with change causes, and keeps both images on the nodes', async () => {
    const w = world();
    w.ops.apply(manifest('app:v1'));
    await drive(w, 'app:v1');
    let d = w.store.get('Deployment', 'web');
    expect(d?.status.rollout?.phase).toBe('Complete');
    expect(d?.status.currentRevision).toBe(d?.status.updateRevision);

    w.ops.apply(manifest('app:v2'));
    const worst = await drive(w, 'app:v2');
    expect(worst).toBe(0); // maxUnavailable 0: never fewer than 3 ready pods
    expect(w.images()).toEqual(['app:v2', 'app:v2', 'app:v2']);
    d = w.store.get('Deployment', 'web');
    expect(d?.status.updatedReplicas).toBe(3);
    expect(d?.status.conditions?.find((c) => c.type === 'Progressing')?.reason).toBe('NewReplicaSetAvailable');
    const history = w.rollout.history('web').items;
    expect(history.map((h) => [h.revision, h.changeCause, h.images])).toEqual([
      [1, 'deploy app:v1', ['app:v1']],
      [2, 'deploy app:v2', ['app:v2']],
    ]);
    const last = w.published.filter((m) => m.pods.length > 0).at(-1);
    expect(last?.keepImages).toEqual(['app:v1', 'app:v2']);
    w.stop();
  });

  it('a rollout that makes no progress by the deadline is rolled back to the stable revision, with an Event saying why', async () => {
    const w = world();
    w.ops.apply(manifest('app:v1'));
    await drive(w, 'app:v1');
    w.ops.apply(manifest('app:bad'));
    await w.settle();
    w.observe('app:bad', false, 'ErrImagePull');
    await w.settle();
    expect(w.images().filter((i) => i === 'app:v1')).toHaveLength(3); // old pods untouched
    w.advance(16_000);
    w.deployments.queue.add('web');
    await w.settle();
    const d = w.store.get('Deployment', 'web');
    expect(d?.spec.template.spec.containers[0]?.image).toBe('app:v1');
    expect(d?.status.rollout?.rolledBackFrom?.revision).toBe(2);
    const ev = w.store.list('Event').find((e) => e.reason === 'RolledBack');
    expect(ev?.message).toMatch(/revision 2 failed .*ErrImagePull.*rolled back to revision 1 \(app:v1\)/);
    await drive(w, 'app:v1');
    expect(w.images()).toEqual(['app:v1', 'app:v1', 'app:v1']);
    expect(w.store.get('Deployment', 'web')?.status.rollout?.phase).toBe('RolledBack');
    w.stop();
  });

  it('canary: one pod of v2, held until promote, then all v2; undo returns to v1', async () => {
    const w = world();
    const canary = 'strategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 0 }, canary: { replicas: 1 } }';
    w.ops.apply(manifest('app:v1', '', canary));
    await drive(w, 'app:v1');
    w.ops.apply(manifest('app:v2', '', canary));
    await drive(w, 'app:v2', 6);
    expect(w.images()).toEqual(['app:v1', 'app:v1', 'app:v2']);
    expect(w.store.get('Deployment', 'web')?.status.rollout?.phase).toBe('CanaryPaused');
    w.rollout.promote('web');
    await drive(w, 'app:v2');
    expect(w.images()).toEqual(['app:v2', 'app:v2', 'app:v2']);

    expect(w.rollout.undo('web').revision).toBe(1);
    await drive(w, 'app:v1');
    expect(w.images()).toEqual(['app:v1', 'app:v1', 'app:v1']);
    expect(w.rollout.history('web').items.map((h) => h.revision)).toEqual([2, 3]);
    expect(() => w.rollout.undo('web', 9)).toThrow(/no revision 9/);
    w.stop();
  });

  it('pause holds a rollout; resume continues; restart makes a new revision', async () => {
    const w = world();
    w.ops.apply(manifest('app:v1'));
    await drive(w, 'app:v1');
    w.rollout.setPaused('web', true);
    w.ops.apply(manifest('app:v2').replace('progressDeadlineSeconds: 15', 'progressDeadlineSeconds: 15\n  paused: true'));
    await drive(w, 'app:v2', 3);
    expect(w.images()).toEqual(['app:v1', 'app:v1', 'app:v1']);
    expect(w.store.get('Deployment', 'web')?.status.rollout?.phase).toBe('Paused');
    w.rollout.setPaused('web', false);
    await drive(w, 'app:v2');
    expect(w.images()).toEqual(['app:v2', 'app:v2', 'app:v2']);
    const before = new Set(w.store.list('Pod').map((p) => p.metadata.name));
    w.rollout.restart('web');
    await drive(w, 'app:v2');
    const after = w.store.list('Pod').map((p) => p.metadata.name);
    expect(after.some((n) => before.has(n))).toBe(false);
    expect(w.rollout.history('web').items.at(-1)?.changeCause).toMatch(/rollout restart/);
    w.stop();
  });
});
