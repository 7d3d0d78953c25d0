import { describe, expect, it } from 'vitest';
import { API_VERSION } from '../../protocol/manifest.js';
import { decodeMessage, ServiceIndexMessageSchema, ServiceMessageSchema } from '../../protocol/messages.js';
import type { Pod, ServiceObject } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { mockNodeObject } from '../scheduler/testing.js';
import { MemoryStore } from '../store/memory-store.js';
import type { Store } from '../store/store.js';
import { EndpointsController } from './endpoints-controller.js';

const svcYaml = (name: string, extra = ''): string => `apiVersion: orchard/v1
kind: Service
metadata: { name: ${name} }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
${extra}`;

function addNode(store: Store, name: string, address?: string, labels: Record<string, string> = {}): void {
  const n = mockNodeObject(name, { labels });
  if (address !== undefined && n.status.info) n.status.info.advertiseAddress = address;
  const { uid: _u, resourceVersion: _r, generation: _g, creationTimestamp: _c, ...metadata } = n.metadata;
  store.create({ ...n, metadata });
}

function addPod(store: Store, name: string, node: string, o: { ready?: boolean; hostPort?: number; labels?: Record<string, string> } = {}): Pod {
  return store.create({
    apiVersion: API_VERSION,
    kind: 'Pod',
    metadata: { name, labels: o.labels ?? { app: 'web' }, annotations: {} },
    spec: {
      nodeName: node,
      containers: [{ name: 'web', image: 'w', ports: o.hostPort ? [{ containerPort: 8080, hostPort: o.hostPort, protocol: 'TCP' }] : [] }],
    } as Pod['spec'],
    status: { phase: 'Running', conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }], containerStatuses: [] },
  });
}

function setReady(store: Store, name: string, ready: boolean): void {
  const p = structuredClone(store.get('Pod', name)!) as Pod;
  p.status.conditions = [{ type: 'Ready', status: ready ? 'True' : 'False' }];
  store.update(p);
}

function world(store: Store = new MemoryStore(), o: { ordinals?: [number, number]; epoch?: number } = {}) {
  const now = (): Date => new Date('2026-01-01T00:00:00Z');
  const retained = new Map<string, Buffer>();
  const log: string[] = [];
  const publisher: Publisher = {
    publish: async (topic, payload) => {
      log.push(`${topic}${payload.length === 0 ? ' (cleared)' : ''}`);
      if (payload.length === 0) retained.delete(topic);
      else retained.set(topic, payload);
    },
  };
  const ops = new Operations({ store, log: silentLogger, now });
  const c = new EndpointsController({
    store,
    publisher,
    log: silentLogger,
    now,
    mergeMs: 0,
    endpointPorts: { min: 30000, max: 30009 },
    ...(o.ordinals ? { ordinals: { min: o.ordinals[0], max: o.ordinals[1] } } : {}),
    ...(o.epoch !== undefined ? { epoch: o.epoch } : {}),
  });
  c.start();
  const decode = <T>(r: { ok: true; value: T } | { ok: false; error: string }): T => {
    if (!r.ok) throw new Error(r.error);
    return r.value;
  };
  const service = (name: string) => {
    const raw = retained.get(topics.service(name));
    return raw === undefined ? undefined : decode(decodeMessage(ServiceMessageSchema, raw));
  };
  const index = () => decode(decodeMessage(ServiceIndexMessageSchema, retained.get(topics.serviceIndex())!));
  return { store, ops, c, retained, log, service, index };
}

describe('EndpointsController', () => {
  it('publishes the service with its endpoints, then the index; a pod turning ready republishes with a larger generation', async () => {
    const w = world();
    addNode(w.store, 'n1', '10.0.0.1');
    addNode(w.store, 'n2');
    addPod(w.store, 'web-a', 'n1', { ready: false });
    addPod(w.store, 'web-b', 'n2');
    addPod(w.store, 'db-a', 'n1', { labels: { app: 'db' } });
    w.ops.apply(svcYaml('web'));
    await w.c.idle();
    const m1 = w.service('web')!;
    expect(m1.ordinal).toBe(2);
    expect(m1.endpoints.map((e) => [e.pod, e.ready, e.address, e.targets[0]?.endpointPort])).toEqual([
      ['web-a', false, '10.0.0.1', 30000],
      ['web-b', true, undefined, undefined],
    ]);
    expect(w.index()).toMatchObject({ services: ['web'], peers: { n1: '10.0.0.1' } });
    const stored = w.store.get('Service', 'web')!;
    expect(stored.status.ordinal).toBe(2);
    expect(stored.status.conditions.find((c) => c.type === 'NoEndpoints')?.status).toBe('False');

    const before = w.log.length;
    setReady(w.store, 'web-a', true);
    await w.c.idle();
    const m2 = w.service('web')!;
    expect(m2.endpoints[0]?.ready).toBe(true);
    expect(m2.generation).toBeGreaterThan(m1.generation);
    expect(w.log.slice(before)).toEqual([topics.service('web')]); // the index did not change

    // A status-only write that changes nothing a service uses publishes nothing.
    const p = structuredClone(w.store.get('Pod', 'web-a')!) as Pod;
    p.status.hostIP = '10.0.0.1';
    w.store.update(p);
    await w.c.idle();
    expect(w.log.length).toBe(before + 1);
  });

  it('an advertise address two nodes claim belongs to the node registered first; the other is left without one until it stops claiming it', async () => {
    const w = world();
    addNode(w.store, 'n1', '10.0.0.1');
    await new Promise((r) => setTimeout(r, 5)); // a later creationTimestamp
    addNode(w.store, 'thief', '10.0.0.1');
    addPod(w.store, 'web-a', 'n1');
    addPod(w.store, 'web-b', 'thief');
    w.ops.apply(svcYaml('web'));
    await w.c.idle();
    const eps = w.service('web')!.endpoints.map((e) => [e.pod, e.address ?? null, e.targets[0]?.endpointPort ?? null]);
    expect(eps).toEqual([
      ['web-a', '10.0.0.1', 30000],
      ['web-b', null, null],
    ]);
    expect(w.index().peers).toEqual({ n1: '10.0.0.1' });
    expect(w.service('web')!.endpoints[1]?.reason).toMatch(/no advertise address/);
    // The thief reports its own address: now both are reachable.
    const t = structuredClone(w.store.get('Node', 'thief')!);
    t.status.info!.advertiseAddress = '10.0.0.2';
    w.store.update(t);
    await w.c.idle();
    expect(w.service('web')!.endpoints.map((e) => e.address)).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(w.index().peers).toEqual({ n1: '10.0.0.1', thief: '10.0.0.2' });
  });

  it('NoEndpoints is True with no ready pod; delete: index first, then the retained topic cleared; the ordinal is freed', async () => {
    const w = world();
    addNode(w.store, 'n1', '10.0.0.1');
    w.ops.apply(svcYaml('a'));
    w.ops.apply(svcYaml('b'));
    await w.c.idle();
    expect(w.store.get('Service', 'a')!.status.conditions.find((c) => c.type === 'NoEndpoints')).toMatchObject({ status: 'True', reason: 'NoMatchingPods' });
    expect(w.index().services).toEqual(['a', 'b']);
    const before = w.log.length;
    w.ops.delete('services', 'a');
    await w.c.idle();
    expect(w.log.slice(before)).toEqual([topics.serviceIndex(), `${topics.service('a')} (cleared)`]);
    expect(w.index().services).toEqual(['b']);
    w.ops.apply(svcYaml('c'));
    await w.c.idle();
    expect(w.service('c')?.ordinal).toBe(2);
    expect(w.service('b')?.ordinal).toBe(3);
  });

  it('ordinals exhausted: condition and a Warning event naming ERR_SERVICE_ORDINALS_EXHAUSTED; served once one is freed', async () => {
    const w = world(new MemoryStore(), { ordinals: [2, 3] });
    for (const n of ['a', 'b', 'c']) w.ops.apply(svcYaml(n));
    await w.c.idle();
    const c = w.store.get('Service', 'c')!;
    expect(c.status.ordinal).toBeUndefined();
    expect(c.status.conditions.find((x) => x.type === 'OrdinalsExhausted')?.status).toBe('True');
    expect(w.store.list('Event').some((e) => e.involvedObject.name === 'c' && e.message.includes('ERR_SERVICE_ORDINALS_EXHAUSTED'))).toBe(true);
    expect(w.service('c')).toBeUndefined();
    w.ops.delete('services', 'a');
    await w.c.idle();
    expect(w.service('c')?.ordinal).toBe(2);
    expect(w.store.get('Service', 'c')!.status.conditions.some((x) => x.type === 'OrdinalsExhausted')).toBe(false);
  });

  it('endpoint ports avoid hostPorts and published ports on the node; publish lists nodes by nodeSelector and flags conflicts', async () => {
    const w = world();
    addNode(w.store, 'n1', '10.0.0.1', { edge: 'yes' });
    addNode(w.store, 'n2', '10.0.0.2');
    addPod(w.store, 'other', 'n1', { hostPort: 30000, labels: { app: 'x' } });
    addPod(w.store, 'web-a', 'n1');
    w.ops.apply(svcYaml('web', '  publish: [{ port: 30001, nodeSelector: { edge: "yes" } }]'));
    await w.c.idle();
    const m = w.service('web')!;
    expect(m.endpoints[0]?.targets[0]?.endpointPort).toBe(30002);
    expect(m.publish).toEqual([{ port: 30001, servicePort: 80, protocol: 'TCP', nodes: ['n1'] }]);
    expect(w.store.get('Service', 'web')!.status.conditions.find((c) => c.type === 'PublishPortConflict')?.status).toBe('False');

    // A node relabelled into the selector is added to `nodes`.
    const n2 = structuredClone(w.store.get('Node', 'n2')!);
    n2.metadata.labels = { edge: 'yes' };
    w.store.update(n2);
    await w.c.idle();
    expect(w.service('web')!.publish[0]?.nodes).toEqual(['n1', 'n2']);

    // A hostPort pod bound later on the published port: condition True naming it.
    addPod(w.store, 'squatter', 'n2', { hostPort: 30001, labels: { app: 'y' } });
    await w.c.idle();
    expect(w.store.get('Service', 'web')!.status.conditions.find((c) => c.type === 'PublishPortConflict')).toMatchObject({
      status: 'True',
      message: '30001/TCP on n2: hostPort of pod squatter',
    });
  });

  it('a restart on the same store republishes the same ordinals and endpoint ports', async () => {
    const store = new MemoryStore();
    const w1 = world(store);
    addNode(store, 'n1', '10.0.0.1');
    addPod(store, 'web-a', 'n1');
    addPod(store, 'web-b', 'n1');
    for (const n of ['a', 'b', 'web']) w1.ops.apply(svcYaml(n));
    await w1.c.idle();
    w1.ops.delete('services', 'a');
    await w1.c.idle();
    const before = w1.service('web')!;
    w1.c.stop();
    const w2 = world(store);
    await w2.c.idle();
    const after = w2.service('web')!;
    expect(after.ordinal).toBe(before.ordinal);
    expect(after.ordinal).toBe(4);
    expect(after.endpoints).toEqual(before.endpoints);
    expect(w2.index().services).toEqual(['b', 'web']);
    w2.ops.apply(svcYaml('d'));
    await w2.c.idle();
    expect(w2.service('d')?.ordinal).toBe(2);
  });

  it('a pod relabelled out of the selector leaves the endpoints (old labels enqueue the service)', async () => {
    const w = world();
    addNode(w.store, 'n1', '10.0.0.1');
    addPod(w.store, 'web-a', 'n1');
    w.ops.apply(svcYaml('web'));
    await w.c.idle();
    expect(w.service('web')!.endpoints).toHaveLength(1);
    const p = structuredClone(w.store.get('Pod', 'web-a')!) as Pod;
    p.metadata.labels = { app: 'other' };
    w.store.update(p);
    await w.c.idle();
    expect(w.service('web')!.endpoints).toHaveLength(0);
    expect((w.store.get('Service', 'web') as ServiceObject).status.endpoints).toHaveLength(0);
  });

  it('stamps the leader epoch on service and index messages only while every node reads epochs, and follows nodes added, upgraded and deleted', async () => {
    const w = world(new MemoryStore(), { epoch: 7 });
    const features = (name: string, f: string[]): void => {
      const n = structuredClone(w.store.get('Node', name)!);
      if (n.status.info) n.status.info.features = f;
      w.store.update(n);
    };
    addNode(w.store, 'n1', '10.0.0.1');
    features('n1', ['epoch']);
    addPod(w.store, 'p1', 'n1');
    w.ops.apply(svcYaml('web'));
    await w.c.idle();
    expect(w.service('web')!.epoch).toBe(7);
    expect(w.index().epoch).toBe(7);
    addNode(w.store, 'old', '10.0.0.2'); // an agent that predates epochs
    await w.c.idle();
    expect(w.service('web')!.epoch).toBeUndefined();
    expect(w.index().epoch).toBeUndefined();
    features('old', ['epoch']); // upgraded
    await w.c.idle();
    expect(w.service('web')!.epoch).toBe(7);
    addNode(w.store, 'old2');
    await w.c.idle();
    expect(w.index().epoch).toBeUndefined();
    w.store.delete('Node', 'old2');
    await w.c.idle();
    expect(w.index().epoch).toBe(7);
    expect(w.service('web')!.epoch).toBe(7);
  });
});
