import { describe, expect, it } from 'vitest';
import type { NodeStatusMessage, ObservedPod } from '../../protocol/messages.js';
import type { Condition } from '../objects/conditions.js';
import { topics } from '../../protocol/topics.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { MemoryStore } from '../store/memory-store.js';
import { DeploymentController } from './deployment-controller.js';
import { NodeController } from './node-controller.js';
import { markPodsNodeLost } from './node-lost-status.js';
import { SchedulingController } from './scheduling-controller.js';
import { mockNodeStatus, type MockNodeStatusOptions } from './test-fixtures.js';

/**
 * Every writer of status conditions goes through setCondition (hub/objects/conditions.ts): these
 * pin, per writer, when lastTransitionTime moves (only with status), what reason/message say and
 * where a condition sits in the list.
 */

const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();

const status = (node: string, o: MockNodeStatusOptions = {}): NodeStatusMessage => mockNodeStatus(node, o);

const manifest = (cpu: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 1
  template:
    spec:
      containers: [{ name: c, image: img, resources: { requests: { cpu: ${cpu}, memory: 16Mi } } }]
`;

function world() {
  let clock = T0;
  const now = (): Date => new Date(clock);
  const store = new MemoryStore({ now });
  const log = silentLogger;
  const ops = new Operations({ store, log, now });
  const deployments = new DeploymentController({ store, log, now });
  const scheduling = new SchedulingController({ store, log, now });
  const nodes = new NodeController({ store, log, now, heartbeatGraceMs: 40_000 });
  deployments.start();
  scheduling.start();
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) {
      await deployments.queue.idle();
      await scheduling.queue.idle();
    }
  };
  const report = (m: NodeStatusMessage): void => nodes.handle(topics.nodeStatus(m.node), Buffer.from(JSON.stringify(m)));
  const observe = (node: string, pods: Array<Partial<ObservedPod> & { name: string; uid: string }>): void =>
    nodes.handle(
      topics.nodeObserved(node),
      Buffer.from(JSON.stringify({ node, generation: 1, at: 'now', pods: pods.map((p) => ({ phase: 'Running', containers: [], ...p })) })),
    );
  const lastWill = (node: string): void => nodes.handle(topics.nodePresence(node), Buffer.from(JSON.stringify({ node, online: false })));
  const nodeConds = (name: string): Condition[] => store.get('Node', name)?.status.conditions ?? [];
  const pod = () => {
    const [p] = store.list('Pod');
    if (p === undefined) throw new Error('no pod');
    return p;
  };
  return {
    store,
    ops,
    nodes,
    settle,
    report,
    observe,
    lastWill,
    nodeConds,
    pod,
    setClock: (s: number) => (clock = T0 + s * 1000),
    stop: () => [deployments, scheduling].forEach((c) => c.stop()),
  };
}

const brief = (cs: readonly Condition[]): string[] => cs.map((c) => `${c.type}=${c.status}${c.reason ? `/${c.reason}` : ''}@${c.lastTransitionTime ?? '-'}`);

describe('condition writers', () => {
  it('NodeController (node): Ready and agent conditions keep their transition time until their status changes', () => {
    const w = world();
    w.report(status('n1'));
    expect(brief(w.nodeConds('n1'))).toEqual([`Ready=True/AgentReporting@${at(0)}`, `MemoryLimitUnsupported=False@${at(0)}`]);

    // Same statuses 10 s later: nothing moves. Memory limits lost at 20 s: only that condition moves.
    w.setClock(10);
    w.report(status('n1'));
    w.setClock(20);
    w.report(status('n1', { memoryLimit: false }));
    expect(brief(w.nodeConds('n1'))).toEqual([`Ready=True/AgentReporting@${at(0)}`, `MemoryLimitUnsupported=True/NoMemoryCgroup@${at(20)}`]);

    // DiskPressure from the agent: appended, stamped with the hub's clock (not the agent's), then
    // its message follows the agent while its transition time stays.
    w.setClock(30);
    w.report(
      status('n1', {
        memoryLimit: false,
        conditions: [{ type: 'DiskPressure', status: 'True', reason: 'ImageGC', message: '91% used', lastTransitionTime: '2000-01-01T00:00:00.000Z' }],
      }),
    );
    w.setClock(40);
    w.report(status('n1', { memoryLimit: false, conditions: [{ type: 'DiskPressure', status: 'True', reason: 'ImageGC', message: '95% used' }] }));
    const disk = w.nodeConds('n1').find((c) => c.type === 'DiskPressure');
    expect(disk).toMatchObject({ status: 'True', message: '95% used', lastTransitionTime: at(30) });

    // Last will: Ready flips (time moves, reason/message set); silence afterwards changes nothing.
    w.setClock(50);
    w.lastWill('n1');
    w.setClock(200);
    w.nodes.sweep();
    expect(w.nodeConds('n1').find((c) => c.type === 'Ready')).toEqual({
      type: 'Ready',
      status: 'False',
      reason: 'AgentDisconnected',
      message: 'the agent disconnected (MQTT last will)',
      lastTransitionTime: at(50),
    });
    // Back: True again, the reporting reason back, the time of this transition.
    w.setClock(210);
    w.report(status('n1', { memoryLimit: false }));
    expect(brief(w.nodeConds('n1'))).toEqual([
      `Ready=True/AgentReporting@${at(210)}`,
      `MemoryLimitUnsupported=True/NoMemoryCgroup@${at(20)}`,
      `DiskPressure=True/ImageGC@${at(30)}`,
    ]);
    w.stop();
  });

  it('NodeController (pods) and markPodsNodeLost: observed conditions replace the pod’s, times move only with status', async () => {
    const w = world();
    w.report(status('n1'));
    w.ops.apply(manifest('100m'));
    await w.settle();
    const { name, uid } = w.pod().metadata;
    expect(brief(w.pod().status.conditions)).toEqual([`PodScheduled=True@${at(0)}`]);

    w.setClock(5);
    w.observe('n1', [
      {
        name,
        uid,
        ready: false,
        conditions: [
          { type: 'ContainersReady', status: 'False', reason: 'ContainersNotReady' },
          { type: 'Ready', status: 'False', reason: 'ContainersNotReady' },
        ],
      },
    ]);
    w.setClock(10);
    w.observe('n1', [
      {
        name,
        uid,
        ready: true,
        conditions: [
          { type: 'ContainersReady', status: 'True' },
          { type: 'Ready', status: 'True' },
        ],
      },
    ]);
    w.setClock(15);
    // Same status again, and an agent that claims an earlier transition: the hub keeps its own time.
    w.observe('n1', [
      {
        name,
        uid,
        ready: true,
        conditions: [
          { type: 'ContainersReady', status: 'True' },
          { type: 'Ready', status: 'True', lastTransitionTime: at(-3600) },
        ],
      },
    ]);
    expect(brief(w.pod().status.conditions)).toEqual([`PodScheduled=True@${at(0)}`, `ContainersReady=True@${at(10)}`, `Ready=True@${at(10)}`]);

    // An agent that sends no conditions: Ready from `ready`, ContainersReady dropped (the agent's list wins).
    w.setClock(20);
    w.observe('n1', [{ name, uid, ready: true }]);
    expect(brief(w.pod().status.conditions)).toEqual([`PodScheduled=True@${at(0)}`, `Ready=True@${at(10)}`]);
    // A transition the agent dates itself: the hub's time is taken (a node must not back-date Ready).
    w.setClock(25);
    w.observe('n1', [{ name, uid, ready: false, conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: at(24) }] }]);
    expect(brief(w.pod().status.conditions)).toEqual([`PodScheduled=True@${at(0)}`, `Ready=False@${at(25)}`]);
    w.setClock(30);
    w.observe('n1', [
      {
        name,
        uid,
        ready: true,
        conditions: [
          { type: 'ContainersReady', status: 'True' },
          { type: 'Ready', status: 'True' },
        ],
      },
    ]);

    // The node is lost at 40 s: both readiness conditions False with the NodeLost reason.
    w.setClock(40);
    w.lastWill('n1');
    const lost = w.pod().status;
    expect(lost.phase).toBe('Unknown');
    expect(lost.conditions).toEqual([
      { type: 'PodScheduled', status: 'True', lastTransitionTime: at(0) },
      { type: 'Ready', status: 'False', reason: 'NodeLost', message: 'node n1 is not ready', lastTransitionTime: at(40) },
      { type: 'ContainersReady', status: 'False', reason: 'NodeLost', message: 'node n1 is not ready', lastTransitionTime: at(40) },
    ]);
    // Marking again later is a no-op (idempotent): nothing written, times kept.
    w.setClock(60);
    expect(w.store.transaction(() => markPodsNodeLost(w.store, 'n1', new Date(T0 + 60_000), 'the agent disconnected (MQTT last will)'))).toBe(0);
    expect(w.pod().status.conditions).toEqual(lost.conditions);
    w.stop();
  });

  it('SchedulingController: PodScheduled False keeps its time while the explanation changes; True when bound', async () => {
    const w = world();
    w.report(status('small', { cores: 1 }));
    w.ops.apply(manifest('3'));
    await w.settle();
    const first = w.pod().status.conditions.find((c) => c.type === 'PodScheduled');
    expect(first).toMatchObject({ status: 'False', reason: 'Unschedulable', lastTransitionTime: at(0) });

    // Another node that does not fit either: a new explanation, still pending since 0 s.
    w.setClock(10);
    w.report(status('small2', { cores: 2 }));
    await w.settle();
    const second = w.pod().status.conditions.find((c) => c.type === 'PodScheduled');
    expect(second?.message).not.toBe(first?.message);
    expect(second).toMatchObject({ status: 'False', reason: 'Unschedulable', lastTransitionTime: at(0) });

    w.setClock(20);
    w.report(status('big', { cores: 8 }));
    await w.settle();
    expect(w.pod().spec.nodeName).toBe('big');
    expect(w.pod().status.conditions).toEqual([{ type: 'PodScheduled', status: 'True', lastTransitionTime: at(20) }]);
    w.stop();
  });

  it('rollout status: Deployment conditions move lastTransitionTime with status and lastUpdateTime with reason/message', async () => {
    const w = world();
    w.report(status('n1'));
    w.ops.apply(manifest('100m'));
    await w.settle();
    const conds = () => w.store.get('Deployment', 'web')?.status.conditions ?? [];
    expect(conds().map((c) => c.type)).toEqual(['Available', 'Progressing']);
    expect(conds()).toEqual([
      expect.objectContaining({ type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', lastUpdateTime: at(0), lastTransitionTime: at(0) }),
      expect.objectContaining({ type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', lastUpdateTime: at(0), lastTransitionTime: at(0) }),
    ]);

    w.setClock(10);
    const { name, uid } = w.pod().metadata;
    w.observe('n1', [
      {
        name,
        uid,
        ready: true,
        conditions: [
          { type: 'ContainersReady', status: 'True' },
          { type: 'Ready', status: 'True' },
        ],
        containers: [{ name: 'c', image: 'img', state: 'running', restartCount: 0, ready: true }],
      },
    ]);
    await w.settle();
    expect(conds()).toEqual([
      expect.objectContaining({ type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', lastUpdateTime: at(10), lastTransitionTime: at(10) }),
      expect.objectContaining({ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', lastUpdateTime: at(10), lastTransitionTime: at(0) }),
    ]);
    w.stop();
  });
});
