import { describe, expect, it } from 'vitest';
import type { DesiredSetMessage, NodeStatusMessage } from '../../protocol/messages.js';
import type { Deployment, Pod } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { DeploymentController } from '../controllers/deployment-controller.js';
import { DesiredPublisher } from '../controllers/desired-publisher.js';
import { GlobalController } from '../controllers/global-controller.js';
import { NodeController } from '../controllers/node-controller.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { MemoryStore } from '../store/memory-store.js';
import { strategyOf } from './rollout-reconciler.js';
import { RolloutOperations } from './rollout-ops.js';
import { mockNodeStatus } from '../controllers/test-fixtures.js';

/** Global-mode rollouts through the GlobalController over a memory store; the agents' part is played by `observe`. */

const manifest = (image: string, strategy = 'strategy: { rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } }'): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: edge, annotations: { orchard.dev/change-cause: "to ${image}" } }
spec:
  mode: global
  progressDeadlineSeconds: 60
  ${strategy}
  template:
    spec:
      containers: [{ name: c, image: ${image}, resources: { requests: { cpu: 10m, memory: 8Mi } } }]
`;

const status = (node: string): NodeStatusMessage => mockNodeStatus(node, { addresses: [] });

function world() {
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const now = (): Date => new Date(clock);
  const store = new MemoryStore({ now });
  const log = silentLogger;
  const sets = new Map<string, DesiredSetMessage>();
  const publisher: Publisher = {
    publish: async (topic, payload) => void (payload.length > 0 && sets.set(topic, JSON.parse(payload.toString()) as DesiredSetMessage)),
  };
  const ops = new Operations({ store, log, now });
  const rollout = new RolloutOperations({ store, log, now });
  const ctrl = [
    new DeploymentController({ store, log, now }),
    new GlobalController({ store, log, now }),
    new DesiredPublisher({ store, publisher, log, now }),
  ] as const;
  ctrl.forEach((c) => c.start());
  const nodes = new NodeController({ store, log, now, heartbeatGraceMs: 1e9 });
  const online = new Set<string>();
  const up = (n: string): void => {
    online.add(n);
    nodes.handle(topics.nodeStatus(n), Buffer.from(JSON.stringify(status(n))));
  };
  const down = (n: string): void => {
    online.delete(n);
    nodes.handle(topics.nodePresence(n), Buffer.from(JSON.stringify({ node: n, online: false })));
  };
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) for (const c of ctrl) await c.queue.idle();
  };
  /** The agents' part: every pod on an online node runs and is Ready. */
  const observe = (): void => {
    for (const p of store.list('Pod', { ownerName: 'edge' })) {
      if (p.spec.nodeName === undefined || !online.has(p.spec.nodeName) || p.status.phase === 'Running') continue;
      const next = structuredClone(p) as Pod;
      const image = p.spec.containers[0]?.image ?? '';
      next.status = {
        phase: 'Running',
        conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now().toISOString() }],
        containerStatuses: [{ name: 'c', image, state: 'running', restartCount: 0, ready: true }],
      };
      store.update(next);
    }
  };
  const ready = (p: Pod): boolean => p.status.phase === 'Running' && p.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True');
  /** Image per node, e.g. { n1: 'app:v2', … } (a node with two pods shows both, sorted: 'app:v1+app:v2'). */
  const images = (): Record<string, string> => {
    const byNode: Record<string, string[]> = {};
    for (const p of store.list('Pod', { ownerName: 'edge' })) (byNode[p.spec.nodeName ?? '-'] ??= []).push(p.spec.containers[0]?.image ?? '');
    return Object.fromEntries(Object.entries(byNode).map(([n, list]) => [n, list.sort().join('+')]));
  };
  /** Runs the rollout to the end; returns the most online nodes seen at once without a Ready pod. */
  const drive = async (steps = 20): Promise<number> => {
    let worst = 0;
    for (let i = 0; i < steps; i++) {
      await settle();
      const pods = store.list('Pod', { ownerName: 'edge' });
      worst = Math.max(worst, [...online].filter((n) => !pods.some((p) => p.spec.nodeName === n && ready(p))).length);
      observe();
      clock += 1000;
      await settle();
      const d = store.get('Deployment', 'edge');
      if (d?.status.rollout?.phase === 'Complete' && d.status.updatedReplicas === online.size) break;
    }
    return worst;
  };
  const deployment = (): Deployment => {
    const d = store.get('Deployment', 'edge');
    if (!d) throw new Error('no deployment');
    return d;
  };
  /** Time passes; the controller looks again (its own requeue timer runs on the real clock). */
  const advance = async (ms: number): Promise<void> => {
    clock += ms;
    ctrl[1].queue.add('edge');
    await settle();
  };
  return { store, ops, rollout, sets, up, down, drive, settle, advance, images, deployment, stop: () => ctrl.forEach((c) => c.stop()) };
}

describe('global-mode rollouts', () => {
  it('3 nodes, one offline: v2 reaches the two online nodes one at a time; the offline one keeps v1 until it returns, then gets v2', async () => {
    const w = world();
    for (const n of ['n1', 'n2', 'n3']) w.up(n);
    w.ops.apply(manifest('app:v1'));
    await w.drive();
    expect(w.images()).toEqual({ n1: 'app:v1', n2: 'app:v1', n3: 'app:v1' });
    expect(w.deployment().status.rollout?.phase).toBe('Complete');
    const n3Pod = w.store.list('Pod', { ownerName: 'edge' }).find((p) => p.spec.nodeName === 'n3')?.metadata.uid;

    w.down('n3');
    await w.settle();
    w.ops.apply(manifest('app:v2'));
    await w.settle();
    // First step: exactly one online node is being replaced (maxUnavailable 1, maxSurge 0).
    const firstStep = w.images();
    expect([firstStep['n1'], firstStep['n2']].sort()).toEqual(['app:v1', 'app:v2']);
    expect(firstStep['n3']).toBe('app:v1');
    expect(w.deployment().status.rollout?.phase).toBe('Progressing');

    const worst = await w.drive();
    expect(worst).toBe(1); // never more than one online node without a Ready pod
    expect(w.images()).toEqual({ n1: 'app:v2', n2: 'app:v2', n3: 'app:v1' });
    let d = w.deployment();
    // The two online nodes are what a global deployment should run on now: the rollout is complete.
    expect(d.status.rollout?.phase).toBe('Complete');
    expect(d.status.updatedReplicas).toBe(2);
    expect(d.status.currentRevision).toBe(d.status.updateRevision);
    expect(d.status.conditions?.find((c) => c.type === 'Progressing')?.reason).toBe('NewReplicaSetAvailable');
    expect(d.status.conditions?.find((c) => c.type === 'Available')?.status).toBe('True');
    expect(w.store.list('Pod', { ownerName: 'edge' }).find((p) => p.spec.nodeName === 'n3')?.metadata.uid).toBe(n3Pod); // untouched
    expect(w.rollout.history('edge').items.map((h) => [h.revision, h.changeCause, h.images, h.update, h.stable])).toEqual([
      [1, 'to app:v1', ['app:v1'], false, false],
      [2, 'to app:v2', ['app:v2'], true, true],
    ]);
    // The nodes keep v1 as well, so `rollout undo` needs no network.
    expect(w.sets.get(topics.nodeDesired('n1'))?.keepImages).toEqual(['app:v1', 'app:v2']);

    // n3 comes back (its agent reports, and its v1 pod is still running): updated under the same budget.
    w.up('n3');
    const worstBack = await w.drive();
    expect(worstBack).toBe(1);
    expect(w.images()).toEqual({ n1: 'app:v2', n2: 'app:v2', n3: 'app:v2' });
    d = w.deployment();
    expect(d.status.updatedReplicas).toBe(3);
    expect(d.status.rollout?.phase).toBe('Complete');
    const view = w.rollout.status('edge');
    expect(view.pods.map((p) => [p.node, p.revision, p.updated])).toEqual(
      expect.arrayContaining([
        ['n1', 2, true],
        ['n2', 2, true],
        ['n3', 2, true],
      ]),
    );

    // `rollout undo` works for global deployments too: v1 everywhere, as revision 3.
    expect(w.rollout.undo('edge').revision).toBe(1);
    await w.drive();
    expect(w.images()).toEqual({ n1: 'app:v1', n2: 'app:v1', n3: 'app:v1' });
    expect(w.rollout.history('edge').items.map((h) => h.revision)).toEqual([2, 3]);
    w.stop();
  });

  it('surge: the new pod starts beside the old one on the same node, which stays until its replacement is Ready', async () => {
    const w = world();
    for (const n of ['n1', 'n2']) w.up(n);
    const surge = 'strategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } }';
    w.ops.apply(manifest('app:v1', surge));
    await w.drive();
    w.ops.apply(manifest('app:v2', surge));
    await w.settle();
    const step = w.images();
    expect(Object.values(step).sort()).toEqual(['app:v1', 'app:v1+app:v2']);
    expect(await w.drive()).toBe(0); // maxUnavailable 0: every node always has a Ready pod
    expect(w.images()).toEqual({ n1: 'app:v2', n2: 'app:v2' });
    w.stop();
  });

  it('a failed rollout is rolled back to the stable revision, as in replicated mode', async () => {
    const w = world();
    for (const n of ['n1', 'n2']) w.up(n);
    w.ops.apply(manifest('app:v1'));
    await w.drive();
    w.ops.apply(manifest('app:bad'));
    await w.settle(); // one node gets the bad pod, which never becomes Ready (no observe)
    expect(Object.values(w.images()).sort()).toEqual(['app:bad', 'app:v1']);
    await w.advance(30_000);
    expect(w.deployment().status.rollout?.phase).toBe('Progressing');
    await w.advance(31_000); // past progressDeadlineSeconds (60) without progress: rolled back
    const d = w.deployment();
    expect(d.spec.template.spec.containers[0]?.image).toBe('app:v1');
    expect(w.store.list('Event').some((e) => e.reason === 'RolledBack' && e.message.includes('rolled back to revision 1'))).toBe(true);
    await w.drive();
    expect(w.images()).toEqual({ n1: 'app:v1', n2: 'app:v1' });
    w.stop();
  });

  it('defaults to one node at a time without surge when no strategy is given', () => {
    const base = { metadata: { name: 'x' }, spec: { mode: 'global' } } as unknown as Deployment; // only the fields strategyOf reads
    expect(strategyOf(base)).toEqual({ type: 'RollingUpdate', maxSurge: 0, maxUnavailable: 1 });
    expect(strategyOf({ ...base, spec: { ...base.spec, mode: 'replicated' } } as Deployment)).toEqual({
      type: 'RollingUpdate',
      maxSurge: 1,
      maxUnavailable: 0,
    });
  });
});
