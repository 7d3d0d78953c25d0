import { describe, expect, it } from 'vitest';
import type { NodeStatusMessage } from '../../protocol/messages.js';
import type { Pod } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import { DeploymentController } from '../controllers/deployment-controller.js';
import { NodeController } from '../controllers/node-controller.js';
import { SchedulingController } from '../controllers/scheduling-controller.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { MemoryStore } from '../store/memory-store.js';
import { mockNodeStatus } from '../controllers/test-fixtures.js';

const manifest = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 3
  template:
    spec:
      containers: [{ name: c, image: app:v1, resources: { requests: { cpu: 10m, memory: 8Mi } } }]
`;

const status = (node: string): NodeStatusMessage => mockNodeStatus(node, { arch: 'amd64' });

describe('deployment status throttle (statusMinIntervalMs)', () => {
  it('defers counts-only status writes, writes phase changes at once, and always writes the final counts', async () => {
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const now = (): Date => new Date(clock);
    const store = new MemoryStore({ now });
    const log = silentLogger;
    const ops = new Operations({ store, log, now });
    const deployments = new DeploymentController({ store, log, now, statusMinIntervalMs: 1000 });
    const scheduling = new SchedulingController({ store, log, now });
    const nodes = new NodeController({ store, log, now, heartbeatGraceMs: 1e9 });
    deployments.start();
    scheduling.start();
    nodes.handle(topics.nodeStatus('n1'), Buffer.from(JSON.stringify(status('n1'))));
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 4; i++) {
        await deployments.queue.idle();
        await scheduling.queue.idle();
      }
    };
    const ready = (count: number): void => {
      for (const p of store.list('Pod').slice(0, count)) {
        if (p.status.phase === 'Running') continue;
        const next = structuredClone(p) as Pod;
        next.status = {
          phase: 'Running',
          conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now().toISOString() }],
          containerStatuses: [{ name: 'c', image: 'app:v1', state: 'running', restartCount: 0, ready: true }],
        };
        store.update(next);
      }
    };
    const web = () => store.get('Deployment', 'web')?.status;

    ops.apply(manifest);
    await settle();
    expect(store.list('Pod').every((p) => p.spec.nodeName === 'n1')).toBe(true);
    const writes = (): number => (web() === undefined ? 0 : (store.get('Deployment', 'web')?.metadata.resourceVersion ?? 0));

    ready(1);
    await settle();
    expect(web()?.readyReplicas).toBe(0); // counts only, within a second of the last write: deferred
    const rv = writes();

    clock += 1000;
    deployments.queue.add('web'); // what the requeue timer does
    await settle();
    expect(web()?.readyReplicas).toBe(1);
    expect(writes()).toBeGreaterThan(rv);

    ready(3); // the rollout completes: phase and Available change, so it is written at once
    await settle();
    expect(web()?.rollout?.phase).toBe('Complete');
    expect(web()?.readyReplicas).toBe(3);
    expect(web()?.availableReplicas).toBe(3);
    deployments.stop();
    scheduling.stop();
    nodes.stop();
  });
});
