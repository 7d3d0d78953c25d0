import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  DesiredSetMessageSchema,
  isDeflated,
  SERVICE_COUNTERS,
  USAGE_DELTA,
  type NodeStatusMessage,
  type NodeUsageReport,
} from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { MemoryStore } from '../store/memory-store.js';
import { DeploymentController } from './deployment-controller.js';
import { DesiredPublisher } from './desired-publisher.js';
import { isNodeReady as isReady } from '../objects/node.js';
import { NodeController } from './node-controller.js';
import { SchedulingController } from './scheduling-controller.js';
import { mockNodeStatus } from './test-fixtures.js';

const manifest = (replicas: number, cpu = '100m'): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: ${replicas}
  template:
    spec:
      containers: [{ name: c, image: img, resources: { requests: { cpu: ${cpu}, memory: 16Mi } } }]
`;

const status = (node: string, cores = 4, arch: 'amd64' | 'arm64' | 'arm' = 'arm64'): NodeStatusMessage => mockNodeStatus(node, { cores, arch });

function world(epoch?: number) {
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const now = (): Date => new Date(clock);
  const store = new MemoryStore({ now });
  const published: Array<{ topic: string; payload: string; retain: boolean | undefined; raw: Buffer }> = [];
  const publisher: Publisher = {
    publish: async (topic, payload, opts) => {
      published.push({ topic, payload: payload.toString(), retain: opts?.retain, raw: payload });
    },
  };
  const log = silentLogger;
  const ops = new Operations({ store, log, now });
  const deployments = new DeploymentController({ store, log, now });
  const scheduling = new SchedulingController({ store, log, now });
  const desired = new DesiredPublisher({ store, publisher, log, now, ...(epoch !== undefined ? { epoch } : {}) });
  const nodes = new NodeController({ store, log, now, heartbeatGraceMs: 40_000 });
  deployments.start();
  scheduling.start();
  desired.start();
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) {
      await deployments.queue.idle();
      await scheduling.queue.idle();
      await desired.queue.idle();
    }
  };
  const report = (m: NodeStatusMessage): void => nodes.handle(topics.nodeStatus(m.node), Buffer.from(JSON.stringify(m)));
  return {
    store,
    ops,
    nodes,
    desired,
    published,
    settle,
    report,
    advance: (ms: number) => (clock += ms),
    stop: () => [deployments, scheduling, desired].forEach((c) => c.stop()),
  };
}

describe('controllers (memory store, fake publisher)', () => {
  it('stamps the leader epoch on desired sets of agents that read it, never on older agents, and republishes when an agent starts reading it', async () => {
    const w = world(42);
    const reads = (m: NodeStatusMessage): NodeStatusMessage => ({ ...m, info: { ...m.info, features: ['epoch'] } });
    w.report(reads(status('new')));
    w.report(status('old'));
    w.ops.apply(manifest(2));
    await w.settle();
    const last = (node: string): Record<string, unknown> =>
      JSON.parse([...w.published].reverse().find((p) => p.topic === topics.nodeDesired(node))?.payload ?? '{}') as Record<string, unknown>;
    expect(last('new')['epoch']).toBe(42);
    expect(last('old')).not.toHaveProperty('epoch');
    // What an older agent gets still parses under the schema without the field (it is strict).
    expect(decodeMessage(DesiredSetMessageSchema.omit({ epoch: true }).strict(), JSON.stringify(last('old'))).ok).toBe(true);
    // The old agent is upgraded: its set comes again, now with the epoch.
    w.report(reads(status('old')));
    await w.settle();
    expect(last('old')['epoch']).toBe(42);
    // A single hub (no epoch) never stamps one.
    const single = world();
    single.report(reads(status('n1')));
    single.ops.apply(manifest(1));
    await single.settle();
    expect(single.published.filter((p) => p.topic === topics.nodeDesired('n1')).every((p) => !('epoch' in (JSON.parse(p.payload) as object)))).toBe(true);
    w.stop();
    single.stop();
  });

  it('on a store with a durability barrier (etcd) publishes a set only after the writes it reflects are durable, in order, and retries when the barrier fails', async () => {
    const w = world();
    // The MemoryStore stands in for a write-behind store: sync() resolves only when the test says so.
    const barriers: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
    (w.store as { sync?: (ms?: number) => Promise<void> }).sync = () => new Promise<void>((resolve, reject) => barriers.push({ resolve, reject }));
    const sets = (): unknown[] => w.published.filter((p) => p.topic === topics.nodeDesired('n1')).map((p) => JSON.parse(p.payload));
    w.report(status('n1'));
    w.ops.apply(manifest(1));
    await new Promise((r) => setTimeout(r, 50));
    expect(barriers.length).toBeGreaterThan(0);
    expect(sets()).toEqual([]); // nothing told to the agent while etcd lacks the binding
    barriers.shift()!.reject(new Error('no quorum'));
    for (const b of barriers.splice(0)) b.resolve();
    await new Promise((r) => setTimeout(r, 50));
    // The failed one is queued again (after 1 s); release every barrier as it comes.
    const release = setInterval(() => barriers.splice(0).forEach((b) => b.resolve()), 20);
    await new Promise((r) => setTimeout(r, 1_500));
    clearInterval(release);
    const last = sets().at(-1) as { pods?: unknown[] } | undefined;
    expect(last?.pods).toHaveLength(1);
    w.stop();
  });

  it('keeps replicas, spreads them over nodes and publishes each node its whole set', async () => {
    const w = world();
    w.report(status('n1'));
    w.report(status('n2'));
    w.ops.apply(manifest(3));
    await w.settle();
    const pods = w.store.list('Pod');
    expect(pods).toHaveLength(3);
    const perNode = pods.reduce<Record<string, number>>((a, p) => ({ ...a, [p.spec.nodeName ?? '-']: (a[p.spec.nodeName ?? '-'] ?? 0) + 1 }), {});
    expect(Object.values(perNode).sort()).toEqual([1, 2]);
    const last = (node: string) =>
      JSON.parse([...w.published].reverse().find((p) => p.topic === topics.nodeDesired(node))?.payload ?? '{}') as { pods: unknown[]; generation: number };
    expect(last('n1').pods.length + last('n2').pods.length).toBe(3);
    expect(w.published.every((p) => p.retain === true)).toBe(true);

    w.ops.scale('web', 1);
    await w.settle();
    expect(w.store.list('Pod')).toHaveLength(1);
    expect(last('n1').pods.length + last('n2').pods.length).toBe(1);

    w.ops.delete('deployments', 'web');
    await w.settle();
    expect(last('n1').pods).toEqual([]);
    expect(last('n2').pods).toEqual([]);
    w.stop();
  });

  it('does not republish a node whose set did not change (status writes are not spec)', async () => {
    const w = world();
    w.report(status('n1'));
    w.ops.apply(manifest(1));
    await w.settle();
    const count = w.published.length;
    const pod = w.store.list('Pod')[0];
    if (!pod) throw new Error('no pod');
    w.nodes.handle(
      topics.nodeObserved('n1'),
      Buffer.from(
        JSON.stringify({
          node: 'n1',
          generation: 1,
          at: 'now',
          pods: [
            {
              name: pod.metadata.name,
              uid: pod.metadata.uid,
              phase: 'Running',
              ready: true,
              containers: [{ name: 'c', image: 'img', state: 'running', restartCount: 0, ready: true }],
            },
          ],
        }),
      ),
    );
    await w.settle();
    expect(w.store.get('Pod', pod.metadata.name)?.status.phase).toBe('Running');
    expect(w.published.length).toBe(count);
    w.stop();
  });

  it('deflates a node desired set only when its agent reads deflate, and republishes when that changes', async () => {
    const w = world();
    const reads = (m: NodeStatusMessage, encodings?: string[]): NodeStatusMessage => ({ ...m, info: { ...m.info, ...(encodings ? { encodings } : {}) } });
    w.report(reads(status('new'), ['deflate', 'zstd-someday']));
    w.report(status('old'));
    w.ops.apply(manifest(20));
    await w.settle();
    const last = (node: string) => [...w.published].reverse().find((p) => p.topic === topics.nodeDesired(node));
    const newest = last('new');
    const oldest = last('old');
    expect(newest !== undefined && isDeflated(newest.raw)).toBe(true);
    expect(oldest !== undefined && isDeflated(oldest.raw)).toBe(false);
    const decoded = decodeMessage(DesiredSetMessageSchema, newest?.raw ?? Buffer.alloc(0));
    expect(decoded.ok && decoded.value.pods.length).toBe(10);
    expect(JSON.parse(oldest?.payload ?? '{}')).toMatchObject({ node: 'old' });

    // The old agent is upgraded (it now lists deflate): same pods, republished deflated; and back.
    w.report(reads(status('old'), ['deflate']));
    await w.settle();
    const upgraded = last('old');
    expect(upgraded !== oldest && upgraded !== undefined && isDeflated(upgraded.raw)).toBe(true);
    w.report(status('old'));
    await w.settle();
    const downgraded = last('old');
    expect(downgraded !== upgraded && downgraded !== undefined && isDeflated(downgraded.raw)).toBe(false);
    const count = w.published.length;
    w.report(status('old')); // nothing changed: no republish
    await w.settle();
    expect(w.published.length).toBe(count);
    w.stop();
  });

  it('usage-delta: only an agent that lists it is told the hub reads it; short heartbeats repeat the last usage, and stay proof of life', async () => {
    const w = world();
    const lists = (m: NodeStatusMessage, encodings: string[]): NodeStatusMessage => ({ ...m, info: { ...m.info, encodings } });
    w.report(lists(status('new'), ['deflate', USAGE_DELTA]));
    w.report(lists(status('old'), ['deflate']));
    w.ops.apply(manifest(20));
    await w.settle();
    const last = (node: string) => [...w.published].reverse().find((p) => p.topic === topics.nodeDesired(node));
    const set = (node: string) => decodeMessage(DesiredSetMessageSchema, last(node)?.raw ?? Buffer.alloc(0));
    const toNew = set('new');
    const toOld = set('old');
    expect(toNew.ok && toNew.value.reads).toEqual([USAGE_DELTA]);
    // An older agent's strict schema would refuse an unknown field: it never gets one.
    expect(toOld.ok && 'reads' in toOld.value).toBe(false);

    const got: NodeUsageReport[] = [];
    const nodes = new NodeController({ store: w.store, log: silentLogger, now: () => new Date(), onUsage: (m) => got.push(m) });
    const beat = (node: string, m: object): void => nodes.handle(topics.nodeUsage(node), Buffer.from(JSON.stringify(m)));
    beat('new', { node: 'new', usage: { cpuPercent: 50, memoryUsedBytes: 100, diskFreeBytes: 7, at: 't1' } });
    beat('new', { at: 't2' });
    beat('new', { usage: { cpuPercent: 80, memoryUsedBytes: 120, at: 't3' } });
    beat('new', { at: 't4', pods: { p1: { c: [1, 2] } } });
    expect(got.map((m) => [m.node, m.usage])).toEqual([
      ['new', { cpuPercent: 50, memoryUsedBytes: 100, diskFreeBytes: 7, at: 't1' }],
      ['new', { cpuPercent: 50, memoryUsedBytes: 100, diskFreeBytes: 7, at: 't2' }],
      ['new', { cpuPercent: 80, memoryUsedBytes: 120, diskFreeBytes: 7, at: 't3' }],
      ['new', { cpuPercent: 80, memoryUsedBytes: 120, diskFreeBytes: 7, at: 't4' }],
    ]);
    expect(got[3]?.pods).toEqual({ p1: { c: [1, 2] } });
    // Another node's name, and a heartbeat with neither usage nor time: dropped.
    beat('new', { node: 'old', at: 't5' });
    beat('new', {});
    expect(nodes.rejected).toBe(2);
    expect(got).toHaveLength(4);
    // A short beat from a node whose usage this hub never got: no usage to hand on.
    beat('old', { at: 't6' });
    expect(got).toHaveLength(4);
    w.stop();
  });

  it('service-counters: only an agent that lists it is told the hub reads it; its usage message then carries them, bounded', async () => {
    const w = world();
    const lists = (m: NodeStatusMessage, encodings: string[]): NodeStatusMessage => ({ ...m, info: { ...m.info, encodings } });
    w.report(lists(status('both'), ['deflate', USAGE_DELTA, SERVICE_COUNTERS]));
    w.report(lists(status('svc'), [SERVICE_COUNTERS]));
    w.report(lists(status('old'), ['deflate', USAGE_DELTA]));
    w.ops.apply(manifest(30));
    await w.settle();
    const last = (node: string) => [...w.published].reverse().find((p) => p.topic === topics.nodeDesired(node));
    const reads = (node: string) => {
      const r = decodeMessage(DesiredSetMessageSchema, last(node)?.raw ?? Buffer.alloc(0));
      return r.ok ? r.value.reads : 'undecodable';
    };
    expect(reads('both')).toEqual([USAGE_DELTA, SERVICE_COUNTERS]);
    expect(reads('svc')).toEqual([SERVICE_COUNTERS]);
    expect(reads('old')).toEqual([USAGE_DELTA]);

    const got: NodeUsageReport[] = [];
    const nodes = new NodeController({ store: w.store, log: silentLogger, now: () => new Date(), onUsage: (m) => got.push(m) });
    const beat = (m: object): void => nodes.handle(topics.nodeUsage('both'), Buffer.from(JSON.stringify(m)));
    beat({ usage: { cpuPercent: 5, memoryUsedBytes: 1, at: 't1' }, services: { web: { replays: 2, later: 1 } } });
    expect(got[0]?.services).toEqual({ web: { replays: 2 } }); // a counter this hub does not know is dropped
    // Refused whole: a name that is no service name, a negative or fractional count, too many services.
    beat({ at: 't2', services: { 'Not A Name': { replays: 1 } } });
    beat({ at: 't2', services: { web: { replays: -1 } } });
    beat({ at: 't2', services: { web: { replays: 1.5 } } });
    beat({ at: 't2', services: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`s-${i}`, { replays: 1 }])) });
    expect(nodes.rejected).toBe(4);
    expect(got).toHaveLength(1);
    w.stop();
  });

  it('explains why a pod cannot be placed, then places it when a fitting node joins', async () => {
    const w = world();
    w.report(status('small', 1));
    w.ops.apply(manifest(1, '2'));
    await w.settle();
    const pending = w.store.list('Pod')[0];
    expect(pending?.spec.nodeName).toBeUndefined();
    expect(pending?.status.unschedulable?.summary).toMatch(/^0\/1 nodes fit: 1 insufficient cpu/);
    expect(pending?.status.unschedulable?.nodes['small']?.[0]).toMatch(/insufficient cpu/);
    w.report(status('big', 8));
    await w.settle();
    expect(w.store.list('Pod')[0]?.spec.nodeName).toBe('big');
    expect(w.store.list('Pod')[0]?.status.unschedulable).toBeUndefined();
    w.stop();
  });

  it('ignores observed pods with a stale uid or from another node', async () => {
    const w = world();
    w.report(status('n1'));
    w.report(status('n2'));
    w.ops.apply(manifest(1));
    await w.settle();
    const pod = w.store.list('Pod')[0];
    if (!pod?.spec.nodeName) throw new Error('unbound');
    const other = pod.spec.nodeName === 'n1' ? 'n2' : 'n1';
    const obs = (node: string, uid: string) =>
      Buffer.from(JSON.stringify({ node, generation: 1, at: 'now', pods: [{ name: pod.metadata.name, uid, phase: 'Failed', containers: [] }] }));
    w.nodes.handle(topics.nodeObserved(other), obs(other, pod.metadata.uid));
    w.nodes.handle(topics.nodeObserved(pod.spec.nodeName), obs(pod.spec.nodeName, 'old-uid'));
    expect(w.store.get('Pod', pod.metadata.name)?.status.phase).toBe('Pending');
    w.stop();
  });

  it('marks a node NotReady on last-will and after a silent grace, Ready again on report', async () => {
    const w = world();
    w.report(status('n1'));
    expect(isReady(w.store.get('Node', 'n1')!)).toBe(true);
    w.nodes.handle(topics.nodePresence('n1'), Buffer.from(JSON.stringify({ node: 'n1', online: false })));
    expect(isReady(w.store.get('Node', 'n1')!)).toBe(false);
    w.nodes.handle(topics.nodeUsage('n1'), Buffer.from(JSON.stringify({ node: 'n1', usage: { cpuPercent: 3, memoryUsedBytes: 1, at: 'now' } })));
    expect(isReady(w.store.get('Node', 'n1')!)).toBe(true);
    w.advance(41_000);
    w.nodes.sweep();
    const n = w.store.get('Node', 'n1')!;
    expect(isReady(n)).toBe(false);
    expect(n.status.conditions.find((c) => c.type === 'Ready')?.message).toMatch(/no heartbeat for 41s/);
    expect(w.store.list('Event').map((e) => e.reason)).toEqual(expect.arrayContaining(['Registered', 'NodeNotReady', 'NodeReady']));
    w.stop();
  });

  it('drops malformed or mismatched node messages without throwing', () => {
    const w = world();
    const bad = ['', '{', '[]', JSON.stringify({ node: 'n1' }), JSON.stringify(status('n2'))];
    for (const p of bad) expect(() => w.nodes.handle(topics.nodeStatus('n1'), Buffer.from(p))).not.toThrow();
    for (const ch of ['usage', 'observed', 'presence'] as const) expect(() => w.nodes.handle(topics.node('n1', ch), Buffer.from('{"x":1}'))).not.toThrow();
    expect(w.nodes.rejected).toBe(bad.length + 3);
    expect(w.store.list('Node')).toHaveLength(0);
    w.stop();
  });

  it('warns when the engine cannot enforce memory limits', () => {
    const w = world();
    const m = status('pi');
    m.info.engine.memoryLimit = false;
    w.report(m);
    const cond = w.store.get('Node', 'pi')?.status.conditions.find((c) => c.type === 'MemoryLimitUnsupported');
    expect(cond?.status).toBe('True');
    expect(cond?.message).toMatch(/cgroup_enable=memory/);
    w.stop();
  });
});
