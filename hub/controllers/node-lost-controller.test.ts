import { describe, expect, it } from 'vitest';
import type { NodeStatusMessage } from '../../protocol/messages.js';
import type { Pod } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { MemoryStore } from '../store/memory-store.js';
import { DeploymentController } from './deployment-controller.js';
import { DesiredPublisher } from './desired-publisher.js';
import { isNodeReady as isReady } from '../objects/node.js';
import { NodeController } from './node-controller.js';
import { AGENT_RETRY_CYCLE_MS, DEFAULT_RETURN_QUIET_MS, NodeLostController, nodeLostPolicy } from './node-lost-controller.js';
import { SchedulingController } from './scheduling-controller.js';
import { mockNodeStatus } from './test-fixtures.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function manifest(name: string, replicas: number, extra = '', podExtra = ''): string {
  return `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: ${replicas}
${extra}
  template:
    spec:
${podExtra}
      containers: [{ name: c, image: img, resources: { requests: { cpu: 100m, memory: 16Mi } }${podExtra ? ', volumeMounts: [{ name: data, mountPath: /data }]' : ''} }]
`;
}
const persistent = '      volumes: [{ name: data, persistent: {} }]';

const status = (node: string): NodeStatusMessage => mockNodeStatus(node, { at: new Date(T0).toISOString() });

/**
 * The hub's controllers over one MemoryStore with a fake clock; `restartHub` rebuilds them on the
 * same store. The node startup grace is 0 unless a test is about it ('default': the controller's own).
 */
function world(startupGraceMs: number | 'default' = 0) {
  let clock = T0;
  const now = (): Date => new Date(clock);
  const store = new MemoryStore({ now });
  const published: Array<{ topic: string; payload: string }> = [];
  const publisher: Publisher = { publish: async (topic, payload) => void published.push({ topic, payload: payload.toString() }) };
  const log = silentLogger;
  const ops = new Operations({ store, log, now });
  const build = () => {
    let lost: NodeLostController | undefined;
    const nodes = new NodeController({ store, log, now, heartbeatGraceMs: 40_000, returnsOver: (t) => lost?.graceOver(t) ?? false });
    lost = new NodeLostController({
      store,
      log,
      now,
      lastReturnAt: () => nodes.lastReturnAt(),
      // The storm tests' arithmetic uses a 60 s quiet window; the default's own test sets none.
      ...(startupGraceMs === 'default' ? {} : { startupGraceMs, returnQuietMs: 60_000 }),
    });
    const c = {
      deployments: new DeploymentController({ store, log, now }),
      scheduling: new SchedulingController({ store, log, now }),
      desired: new DesiredPublisher({ store, publisher, log, now }),
      nodes,
      // Wired as hub.ts does: the grace holds while nodes keep coming back, and a node first heard
      // after it ended does not reopen it.
      lost,
    };
    c.deployments.start();
    c.scheduling.start();
    c.desired.start();
    c.lost.start();
    return c;
  };
  let c = build();
  const stopAll = (): void => {
    c.deployments.stop();
    c.scheduling.stop();
    c.desired.stop();
    c.lost.stop();
    c.nodes.stop();
  };
  const w = {
    store,
    ops,
    published,
    get c() {
      return c;
    },
    advance: (ms: number) => (clock += ms),
    async settle(): Promise<void> {
      for (let i = 0; i < 4; i++) {
        await c.deployments.queue.idle();
        await c.scheduling.queue.idle();
        await c.desired.queue.idle();
        await c.lost.queue.idle();
      }
    },
    report: (node: string) => c.nodes.handle(topics.nodeStatus(node), Buffer.from(JSON.stringify(status(node)))),
    will: (node: string) => c.nodes.handle(topics.nodePresence(node), Buffer.from(JSON.stringify({ node, online: false }))),
    online: (node: string) => c.nodes.handle(topics.nodePresence(node), Buffer.from(JSON.stringify({ node, online: true }))),
    observe(node: string, pods: Pod[]): void {
      const msg = {
        node,
        generation: store.revision(),
        at: now().toISOString(),
        pods: pods.map((p) => ({
          name: p.metadata.name,
          uid: p.metadata.uid,
          phase: 'Running',
          ready: true,
          containers: [{ name: 'c', image: 'img', state: 'running', restartCount: 0, ready: true, containerId: `ctr-${p.metadata.name}` }],
        })),
      };
      c.nodes.handle(topics.nodeObserved(node), Buffer.from(JSON.stringify(msg)));
    },
    desiredOf(node: string): string[] {
      const last = [...published].reverse().find((p) => p.topic === topics.nodeDesired(node));
      return last ? (JSON.parse(last.payload) as { pods: Array<{ name: string }> }).pods.map((p) => p.name).sort() : [];
    },
    pods: (dep: string) => store.list('Pod', { ownerName: dep }),
    on: (dep: string, node: string) => store.list('Pod', { ownerName: dep }).filter((p) => p.spec.nodeName === node),
    async restartHub(): Promise<void> {
      stopAll();
      c = build();
      await w.settle();
    },
    stop: stopAll,
  };
  return w;
}

/** Two Ready nodes, deployment `name` with 2 replicas (one per node, spread), all Running. */
async function twoNodes(name: string, extra = '', podExtra = '', startupGraceMs?: number | 'default') {
  const w = world(startupGraceMs);
  w.report('n1');
  w.report('n2');
  w.ops.apply(manifest(name, 2, extra, podExtra));
  await w.settle();
  expect(w.on(name, 'n1')).toHaveLength(1);
  expect(w.on(name, 'n2')).toHaveLength(1);
  w.observe('n1', w.on(name, 'n1'));
  w.observe('n2', w.on(name, 'n2'));
  await w.settle();
  expect(w.pods(name).every((p) => p.status.phase === 'Running')).toBe(true);
  return w;
}

describe('nodeLostPolicy', () => {
  it.each([
    [{ mode: 'replicated' as const }, { action: 'reschedule', afterSeconds: 60, startFresh: false }],
    [{ mode: 'global' as const }, { action: 'keep', afterSeconds: 60, startFresh: false }],
    [
      { mode: 'replicated' as const, onNodeLost: { action: 'keep' as const, afterSeconds: 5, startFresh: false } },
      { action: 'keep', afterSeconds: 5, startFresh: false },
    ],
    [
      { mode: 'replicated' as const, onNodeLost: { action: 'reschedule' as const, afterSeconds: 0, startFresh: true } },
      { action: 'reschedule', afterSeconds: 0, startFresh: true },
    ],
    // One pod per node: a global pod has nowhere else to go, whatever the manifest says.
    [
      { mode: 'global' as const, onNodeLost: { action: 'reschedule' as const, afterSeconds: 1, startFresh: false } },
      { action: 'keep', afterSeconds: 1, startFresh: false },
    ],
  ])('%o → %o', (spec, want) => {
    expect(nodeLostPolicy(spec)).toEqual(want);
  });
});

describe('NodeLostController (memory store, fake clock)', () => {
  it('marks pods of a lost node Unknown / not Ready, and the next observed set restores them', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: keep }');
    w.will('n1');
    const [p] = w.on('web', 'n1');
    expect(p?.status.phase).toBe('Unknown');
    expect(p?.status.reason).toBe('NodeLost');
    expect(p?.status.conditions.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'NodeLost' });
    expect(p?.status.containerStatuses.every((c) => !c.ready)).toBe(true);
    expect(w.on('web', 'n2')[0]?.status.phase).toBe('Running'); // the other node's pods are untouched
    await w.settle();
    expect(w.store.get('Deployment', 'web')?.status.readyReplicas).toBe(1);

    w.online('n1');
    w.observe('n1', w.on('web', 'n1'));
    await w.settle();
    const back = w.on('web', 'n1')[0];
    expect(back?.status.phase).toBe('Running');
    expect(back?.status.reason).toBeUndefined();
    expect(back?.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(w.store.get('Deployment', 'web')?.status.readyReplicas).toBe(2);
    w.stop();
  });

  it('keep: nothing moves however long the node is lost, and its desired set is never touched', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: keep, afterSeconds: 1 }');
    const before = w
      .pods('web')
      .map((p) => `${p.metadata.name}@${p.spec.nodeName}/${p.metadata.generation}`)
      .sort();
    const publishes = w.published.length;
    w.will('n1');
    w.advance(3600_000);
    expect(w.c.lost.reconcile('n1')).toBeUndefined(); // no wake-up needed either
    await w.settle();
    expect(
      w
        .pods('web')
        .map((p) => `${p.metadata.name}@${p.spec.nodeName}/${p.metadata.generation}`)
        .sort(),
    ).toEqual(before);
    expect(w.published.length).toBe(publishes); // status writes are not spec: no new desired set, no restart
    expect(w.c.lost.replaced).toBe(0);
    w.stop();
  });

  it('reschedule: waits afterSeconds from the transition, replaces on the Ready node, fences the returning node', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: reschedule, afterSeconds: 30 }');
    const [old] = w.on('web', 'n1');
    if (!old) throw new Error('no pod on n1');
    w.will('n1');
    await w.settle();
    w.advance(10_000);
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 20_000 });
    expect(w.store.get('Pod', old.metadata.name)).toBeDefined();

    w.advance(20_000);
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.store.get('Pod', old.metadata.name)).toBeUndefined();
    expect(w.pods('web')).toHaveLength(2);
    expect(w.on('web', 'n2')).toHaveLength(2); // never the NotReady node
    expect(w.on('web', 'n1')).toHaveLength(0);
    expect(w.desiredOf('n1')).toEqual([]); // the retained set the agent gets on reconnect
    expect(w.store.list('Event').map((e) => e.reason)).toEqual(expect.arrayContaining(['NodeLost', 'Rescheduling']));

    // The node returns still running the old pod: its report is stale news, nothing duplicates.
    w.report('n1');
    w.observe('n1', [old]);
    await w.settle();
    expect(isReady(w.store.get('Node', 'n1')!)).toBe(true);
    expect(w.pods('web')).toHaveLength(2);
    expect(w.store.get('Pod', old.metadata.name)).toBeUndefined();
    expect(w.desiredOf('n1')).toEqual([]);
    w.stop();
  });

  it('the default for a replicated deployment is reschedule after 60 s', async () => {
    const w = await twoNodes('web');
    w.will('n1');
    w.advance(59_000);
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 1000 });
    w.advance(1000);
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.on('web', 'n2')).toHaveLength(2);
    w.stop();
  });

  it('a node that comes back before the deadline keeps its pods', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: reschedule, afterSeconds: 30 }');
    const names = w
      .pods('web')
      .map((p) => p.metadata.name)
      .sort();
    w.will('n1');
    w.advance(20_000);
    w.online('n1');
    w.advance(60_000);
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(
      w
        .pods('web')
        .map((p) => p.metadata.name)
        .sort(),
    ).toEqual(names);
    w.stop();
  });

  it('pods with a persistent volume stay pinned unless startFresh', async () => {
    // One replica, wherever the scheduler (and any volume pinning) puts it; that node is lost.
    const oneDb = async (policy: string) => {
      const w = world();
      w.report('n1');
      w.report('n2');
      w.ops.apply(manifest('db', 1, policy, persistent));
      await w.settle();
      const pod = w.pods('db')[0];
      if (!pod?.spec.nodeName) throw new Error('db pod not bound');
      return { w, pod, node: pod.spec.nodeName };
    };
    const pinned = await oneDb('  onNodeLost: { action: reschedule, afterSeconds: 0 }');
    pinned.w.will(pinned.node);
    pinned.w.advance(1000);
    pinned.w.c.lost.reconcile(pinned.node);
    pinned.w.c.lost.reconcile(pinned.node);
    await pinned.w.settle();
    expect(pinned.w.pods('db').map((p) => p.metadata.name)).toEqual([pinned.pod.metadata.name]);
    expect(
      pinned.w.store
        .list('Event')
        .filter((e) => e.reason === 'NodeLostPinned')
        .map((e) => e.count),
    ).toEqual([1]);
    pinned.w.stop();

    const fresh = await oneDb('  onNodeLost: { action: reschedule, afterSeconds: 0, startFresh: true }');
    fresh.w.will(fresh.node);
    await fresh.w.settle(); // afterSeconds 0: the watch-driven pass deletes it at once
    expect(fresh.w.store.get('Pod', fresh.pod.metadata.name)).toBeUndefined();
    const replacement = fresh.w.pods('db');
    expect(replacement).toHaveLength(1);
    // Where a fresh copy may go is the volume code's business; never back onto the lost node.
    expect(replacement[0]?.spec.nodeName).not.toBe(fresh.node);
    fresh.w.stop();
  });

  it('a node lost before the hub started is timed from the end of the startup grace, not from its transition', async () => {
    const w = await twoNodes('web', '', '', 60_000); // default policy: reschedule after 60 s
    w.will('n1');
    w.advance(600_000); // hub down for 10 minutes
    await w.restartHub();
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 120_000 }); // start + grace + afterSeconds
    w.advance(119_000);
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 1000 });
    await w.settle();
    expect(w.on('web', 'n1')).toHaveLength(1);
    w.advance(1000);
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.on('web', 'n1')).toHaveLength(0);
    expect(w.on('web', 'n2')).toHaveLength(2);
    w.stop();
  });

  it('reconnect storm: a node lost 10 s after a hub restart keeps its pods at start + 70 s, loses them at start + 120 s', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: reschedule, afterSeconds: 60 }', '', 60_000);
    const names = w
      .pods('web')
      .map((p) => p.metadata.name)
      .sort();
    w.advance(300_000); // long after the first start: the grace of the first process is over
    await w.restartHub(); // kill -9 and restart: start = now
    w.advance(10_000);
    w.will('n1'); // its CONNECT timed out on the busy hub: last will, then a long back-off
    await w.settle();
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 110_000 }); // woken at start + 120 s
    w.advance(60_000); // start + 70 s: since + afterSeconds has passed, the grace still holds
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 50_000 });
    await w.settle();
    expect(
      w
        .pods('web')
        .map((p) => p.metadata.name)
        .sort(),
    ).toEqual(names);
    expect(w.c.lost.replaced).toBe(0);
    w.advance(50_000); // start + 120 s
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.c.lost.replaced).toBe(1);
    expect(w.on('web', 'n1')).toHaveLength(0);
    expect(w.on('web', 'n2')).toHaveLength(2);
    w.stop();
  });

  it('reconnect storm longer than the grace (issue 19, 10,000 nodes): nothing moves while nodes are still coming back; afterSeconds runs from 60 s after the last return', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: reschedule, afterSeconds: 60 }', '', 60_000);
    for (const n of ['n3', 'n4', 'n5']) w.report(n);
    await w.settle();
    const names = w
      .pods('web')
      .map((p) => `${p.metadata.name}@${p.spec.nodeName}`)
      .sort();
    w.advance(300_000);
    await w.restartHub(); // a new leader (or a restarted hub): start = now
    w.advance(10_000);
    w.will('n1'); // connected in the storm, then its CONNECT timed out: last will, back-off
    w.report('n2');
    // The rest of the fleet trickles back through the busy hub: one node every 50 s.
    for (const n of ['n3', 'n4', 'n5']) {
      w.advance(50_000);
      w.report(n);
    }
    await w.settle(); // start + 160 s, the last return just now
    w.advance(100_000); // start + 260 s: a fixed 60 s grace would have replaced n1's pod at start + 120 s
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.c.lost.replaced).toBe(0);
    expect(
      w
        .pods('web')
        .map((p) => `${p.metadata.name}@${p.spec.nodeName}`)
        .sort(),
    ).toEqual(names);
    // The grace ended 60 s after the last return (start + 220 s): n1 goes at start + 280 s.
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 20_000 });
    w.advance(20_000);
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.c.lost.replaced).toBe(1);
    expect(w.on('web', 'n1')).toHaveLength(0);
    w.stop();
  });

  it('the storm grace is capped (10 min by default) and, once over, a node enrolled later does not reopen it', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: reschedule, afterSeconds: 60 }', '', 60_000);
    w.advance(300_000);
    await w.restartHub();
    const start = w.advance(0);
    w.will('n1');
    w.report('n2');
    // A node comes back for the first time every 30 s, for 15 minutes.
    for (let i = 0; i < 30; i++) {
      w.advance(30_000);
      w.report(`late-${i}`);
    }
    await w.settle(); // start + 900 s
    expect(w.c.lost.graceEnd(start + 900_000)).toBe(start + 600_000);
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.c.lost.replaced).toBe(1); // start + 600 s + 60 s has passed
    w.report('another');
    expect(w.c.lost.graceEnd(start + 900_000)).toBe(start + 600_000);
    w.stop();
  });

  it('a node first heard after the grace ended, with no reconcile in between, does not push the end out', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: reschedule, afterSeconds: 60 }', '', 60_000);
    w.advance(300_000);
    await w.restartHub();
    const start = w.advance(0);
    w.will('n1');
    w.report('n2');
    w.advance(30_000);
    w.report('n3'); // the last of the storm: the grace ends at start + 90 s
    await w.settle();
    w.advance(200_000); // no reconcile of n1 in between (its requeue has not fired in this test)
    w.report('enrolled-late'); // first heard at start + 230 s: before the fix, the end moved to start + 290 s
    expect(w.c.lost.graceEnd(start + 230_000)).toBe(start + 90_000);
    // n1 was lost in the grace: due at its end + 60 s = start + 150 s, long past.
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.c.lost.replaced).toBe(1);
    w.stop();
  });

  it('a node lost after the startup grace is timed from its transition alone', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: reschedule, afterSeconds: 60 }', '', 60_000);
    w.advance(90_000); // start + 90 s: past the grace
    w.will('n1');
    await w.settle();
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 60_000 });
    w.advance(59_000);
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 1000 });
    expect(w.on('web', 'n1')).toHaveLength(1);
    w.advance(1000);
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.on('web', 'n1')).toHaveLength(0);
    expect(w.on('web', 'n2')).toHaveLength(2);
    w.stop();
  });

  it('the startup grace defaults to 60 s, and holds until 120 s (two agent retry cycles) after the last node came back', async () => {
    expect(DEFAULT_RETURN_QUIET_MS).toBe(2 * AGENT_RETRY_CYCLE_MS);
    // Both nodes registered at the start (their first return): the grace ends at start + 120 s.
    const w = await twoNodes('web', '  onNodeLost: { action: reschedule, afterSeconds: 0 }', '', 'default');
    w.advance(10_000);
    w.will('n1');
    await w.settle();
    expect(w.c.lost.reconcile('n1')).toEqual({ requeueAfterMs: 110_000 });
    expect(w.on('web', 'n1')).toHaveLength(1);
    w.advance(110_000);
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.on('web', 'n1')).toHaveLength(0);
    w.stop();
  });

  it('a minute without a return in a storm (the hub too busy for CONNECTs: 64 s at 10,000 nodes on etcd) does not end the default grace', async () => {
    const w = world('default');
    w.report('n1');
    w.report('n2');
    await w.settle();
    w.ops.apply(manifest('web', 2));
    await w.settle();
    w.advance(300_000);
    await w.restartHub();
    const start = w.advance(0);
    w.advance(10_000);
    w.will('n1'); // its CONNECT timed out on the busy hub: last will, then back-off
    w.advance(30_000);
    w.report('n2'); // a first return at start + 40 s
    await w.settle();
    w.advance(64_000); // then none for 64 s: every other agent inside a CONNECT timeout + back-off
    // With a 60 s window the grace was over here (at start + 100 s) and n1's pods would be due.
    expect(w.c.lost.graceOver(start + 104_000)).toBe(false);
    expect(w.c.lost.graceEnd(start + 104_000)).toBe(start + 160_000);
    w.report('n1'); // the storm goes on: n1 comes back inside the grace
    w.c.lost.reconcile('n1');
    await w.settle();
    expect(w.c.lost.replaced).toBe(0);
    w.stop();
  });

  it('a hub restart alone moves nothing: Ready nodes get a grace period to report in', async () => {
    const w = await twoNodes('web', '  onNodeLost: { action: reschedule, afterSeconds: 0 }');
    const before = w
      .pods('web')
      .map((p) => `${p.metadata.name}@${p.spec.nodeName}/${p.metadata.resourceVersion}`)
      .sort();
    w.advance(35_000); // silent for almost a grace while the hub was down
    await w.restartHub();
    w.c.nodes.sweep(); // first sweep after start: nobody seen yet → grace, not NotReady
    w.advance(30_000);
    w.report('n1'); // agents reconnect
    w.online('n2');
    w.c.nodes.sweep();
    await w.settle();
    expect(w.store.list('Node').every(isReady)).toBe(true);
    expect(
      w
        .pods('web')
        .map((p) => `${p.metadata.name}@${p.spec.nodeName}/${p.metadata.resourceVersion}`)
        .sort(),
    ).toEqual(before);
    expect(w.c.lost.replaced).toBe(0);

    // …but one that never comes back is lost one grace after the restart, and then replaced.
    w.advance(41_000);
    w.online('n1');
    w.c.nodes.sweep();
    await w.settle();
    expect(isReady(w.store.get('Node', 'n2')!)).toBe(false);
    expect(w.on('web', 'n1')).toHaveLength(2);
    w.stop();
  });
});
