import { describe, expect, it } from 'vitest';
import { OrchardError } from '../../protocol/errors.js';
import { API_VERSION } from '../../protocol/manifest.js';
import type { Pod } from '../../protocol/objects.js';
import { DeploymentController } from './deployment-controller.js';
import { SchedulingController } from './scheduling-controller.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { mockNodeObject } from '../scheduler/testing.js';
import { MemoryStore } from '../store/memory-store.js';
import type { Store } from '../store/store.js';
import { publishedPortKeys, publishedPorts, selectorsMayOverlap } from './service-publish.js';

const svc = (name: string, publish: string, selector = 'app: web'): string => `apiVersion: orchard/v1
kind: Service
metadata: { name: ${name} }
spec:
  selector: { ${selector} }
  ports: [{ name: http, port: 80 }, { name: dns, port: 53, protocol: UDP }]
  publish: ${publish}
`;

function addNode(store: Store, name: string, labels: Record<string, string> = {}): void {
  const { uid: _u, resourceVersion: _r, generation: _g, creationTimestamp: _c, ...metadata } = mockNodeObject(name, { labels }).metadata;
  store.create({ ...mockNodeObject(name, { labels }), metadata });
}

function addHostPortPod(store: Store, name: string, node: string, hostPort: number): void {
  store.create({
    apiVersion: API_VERSION,
    kind: 'Pod',
    metadata: { name, labels: {}, annotations: {} },
    spec: { nodeName: node, containers: [{ name: 'c', image: 'i', ports: [{ containerPort: 80, hostPort, protocol: 'TCP' }] }] } as Pod['spec'],
    status: { phase: 'Running', conditions: [], containerStatuses: [] },
  });
}

function refusal(fn: () => unknown): OrchardError {
  try {
    fn();
  } catch (e) {
    if (OrchardError.is(e, 'ERR_SERVICE_PORT_CONFLICT')) return e as OrchardError;
    throw e;
  }
  throw new Error('not refused');
}

describe('publish validation at apply', () => {
  const world = () => {
    const now = (): Date => new Date('2026-01-01T00:00:00Z');
    const store = new MemoryStore({ now });
    return { store, ops: new Operations({ store, log: silentLogger, now }) };
  };

  it('refuses a port another service publishes on nodes that may overlap, naming the field and the owner; nothing is written', () => {
    const w = world();
    w.ops.apply(svc('a', '[{ port: 8080, nodeSelector: { zone: north } }]'));
    const e = refusal(() => w.ops.apply(svc('b', '[{ port: 9090 }, { port: 8080 }]')));
    expect(e.details?.issues).toEqual([
      { path: 'spec.publish[1].port', message: expect.stringContaining('already published by service "a"') as unknown as string },
    ]);
    expect(e.message).toContain('8080/TCP');
    expect(w.store.get('Service', 'b')).toBeUndefined();
    // Disjoint selectors, or the other protocol: fine.
    expect(w.ops.apply(svc('c', '[{ port: 8080, nodeSelector: { zone: south } }]')).results[0]?.action).toBe('created');
    expect(w.ops.apply(svc('d', '[{ port: 8080, servicePort: dns }]')).results[0]?.action).toBe('created');
    // Re-applying a service unchanged is never refused.
    expect(w.ops.apply(svc('a', '[{ port: 8080, nodeSelector: { zone: north } }]')).results[0]?.action).toBe('unchanged');
  });

  it("refuses a port that is a pod's hostPort on a node it would publish on", () => {
    const w = world();
    addNode(w.store, 'n1', { zone: 'north' });
    addNode(w.store, 'n2', { zone: 'south' });
    addHostPortPod(w.store, 'legacy', 'n2', 8080);
    const e = refusal(() => w.ops.apply(svc('a', '[{ port: 8080 }]')));
    expect(e.message).toContain('hostPort of pod "legacy" on node n2');
    expect(w.ops.apply(svc('a', '[{ port: 8080, nodeSelector: { zone: north } }]')).results[0]?.action).toBe('created');
  });

  it('selectorsMayOverlap is conservative; publishedPortKeys follow nodeSelector and protocol', () => {
    expect(selectorsMayOverlap(undefined, { a: '1' })).toBe(true);
    expect(selectorsMayOverlap({ a: '1' }, { b: '2' })).toBe(true);
    expect(selectorsMayOverlap({ a: '1' }, { a: '2' })).toBe(false);
    const w = world();
    w.ops.apply(svc('a', '[{ port: 8080, nodeSelector: { zone: north } }, { port: 5353, servicePort: dns }]'));
    const ports = publishedPorts('a', w.store.get('Service', 'a')!.spec);
    expect([...(publishedPortKeys(ports, { zone: 'north' }) ?? [])]).toEqual(['TCP/0.0.0.0/8080', 'UDP/0.0.0.0/5353']);
    expect([...(publishedPortKeys(ports, {}) ?? [])]).toEqual(['UDP/0.0.0.0/5353']);
  });
});

describe('scheduler: published ports are taken', () => {
  it('a pod with that hostPort is not placed on a node a service publishes it on; deleting the service lets it in', async () => {
    const now = (): Date => new Date('2026-01-01T00:00:00Z');
    const store = new MemoryStore({ now });
    const ops = new Operations({ store, log: silentLogger, now });
    const deployments = new DeploymentController({ store, log: silentLogger, now });
    const scheduling = new SchedulingController({ store, log: silentLogger, now });
    deployments.start();
    scheduling.start();
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 4; i++) {
        await deployments.queue.idle();
        await scheduling.queue.idle();
      }
    };
    addNode(store, 'n1', { zone: 'north' });
    addNode(store, 'n2', { zone: 'south' });
    ops.apply(svc('pub', '[{ port: 8080, nodeSelector: { zone: north } }]', 'app: other'));
    ops.apply(`apiVersion: orchard/v1
kind: Deployment
metadata: { name: hp }
spec:
  replicas: 2
  template:
    spec:
      containers: [{ name: c, image: i, ports: [{ containerPort: 80, hostPort: 8080 }] }]
`);
    await settle();
    const pods = store.list('Pod', { ownerName: 'hp' });
    expect(pods.map((p) => p.spec.nodeName ?? '-').sort()).toEqual(['-', 'n2']);
    const pending = pods.find((p) => p.spec.nodeName === undefined)!;
    expect(pending.status.unschedulable?.nodes['n1']).toEqual(['host port published by a service: TCP/0.0.0.0/8080']);
    ops.delete('services', 'pub');
    await settle();
    expect(
      store
        .list('Pod', { ownerName: 'hp' })
        .map((p) => p.spec.nodeName ?? '-')
        .sort(),
    ).toEqual(['n1', 'n2']);
    deployments.stop();
    scheduling.stop();
  });
});
