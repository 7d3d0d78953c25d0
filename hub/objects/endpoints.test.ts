import { describe, expect, it } from 'vitest';
import { API_VERSION, ServiceSpecSchema, type ServiceSpec } from '../../protocol/manifest.js';
import type { NodeObject, Pod, ServiceObject } from '../../protocol/objects.js';
import { mockNodeObject } from '../scheduler/testing.js';
import { computeEndpoints, podNotReadyReason, publishNodes } from './endpoints.js';
import { EndpointPortAllocator, OrdinalAllocator, parsePortRange } from './service-allocation.js';

const META = { resourceVersion: 1, generation: 1, creationTimestamp: '2026-01-01T00:00:00Z', annotations: {} };

function service(spec: Partial<Record<keyof ServiceSpec, unknown>> = {}): Pick<ServiceObject, 'spec'> {
  return { spec: ServiceSpecSchema.parse({ selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }], ...spec }) };
}

function pod(
  name: string,
  o: {
    labels?: Record<string, string>;
    node?: string | undefined;
    phase?: Pod['status']['phase'];
    ready?: boolean;
    deleting?: boolean;
    ports?: Array<{ name?: string; containerPort: number; protocol?: 'TCP' | 'UDP'; hostPort?: number }>;
    containers?: Pod['status']['containerStatuses'];
  } = {},
): Pod {
  return {
    apiVersion: API_VERSION,
    kind: 'Pod',
    metadata: {
      ...META,
      name,
      uid: `uid-${name}`,
      labels: o.labels ?? { app: 'web' },
      ...(o.deleting ? { deletionTimestamp: '2026-01-01T00:01:00Z' } : {}),
    },
    spec: {
      containers: [{ name: 'web', image: 'web:1', ports: (o.ports ?? []).map((p) => ({ protocol: 'TCP' as const, ...p })) }],
      ...('node' in o ? (o.node === undefined ? {} : { nodeName: o.node }) : { nodeName: 'n1' }),
    } as Pod['spec'],
    status: {
      phase: o.phase ?? 'Running',
      conditions: [{ type: 'Ready', status: (o.ready ?? true) ? 'True' : 'False' }],
      containerStatuses: o.containers ?? [],
    },
  };
}

function node(name: string, o: { ready?: boolean; address?: string; labels?: Record<string, string> } = {}): NodeObject {
  const n = mockNodeObject(name, { ready: o.ready ?? true, labels: o.labels ?? {} });
  if (o.address !== undefined && n.status.info) n.status.info.advertiseAddress = o.address;
  return n;
}

const nodes = (...ns: NodeObject[]): Map<string, NodeObject> => new Map(ns.map((n) => [n.metadata.name, n]));

describe('computeEndpoints', () => {
  const fleet = nodes(node('n1', { address: '192.168.1.11' }), node('n2', { address: '192.168.1.12' }), node('lost', { ready: false }));

  it.each<[string, Pod, Partial<{ ready: boolean; terminating: boolean; reason: string | undefined; listed: boolean }>]>([
    ['ready pod on a ready node', pod('a'), { ready: true, terminating: false, reason: undefined }],
    ['other labels: not a member', pod('a', { labels: { app: 'db' } }), { listed: false }],
    ['superset of the selector: a member', pod('a', { labels: { app: 'web', tier: 'x' } }), { ready: true }],
    ['unbound pod: not a member', pod('a', { node: undefined }), { listed: false }],
    ['Succeeded: not a member', pod('a', { phase: 'Succeeded' }), { listed: false }],
    ['Failed: not a member', pod('a', { phase: 'Failed' }), { listed: false }],
    ['Pending: listed, not ready', pod('a', { phase: 'Pending' }), { ready: false, reason: 'pod is Pending' }],
    [
      'a container not ready',
      pod('a', { ready: false, containers: [{ name: 'web', image: 'w', state: 'running', ready: false, restartCount: 0 }] }),
      { ready: false, reason: 'container web not ready (readiness probe failing)' },
    ],
    [
      'a container crash-looping',
      pod('a', { ready: false, containers: [{ name: 'web', image: 'w', state: 'waiting', reason: 'CrashLoopBackOff', ready: false, restartCount: 3 }] }),
      { ready: false, reason: 'container web not ready (CrashLoopBackOff)' },
    ],
    ['terminating: listed, not ready', pod('a', { deleting: true }), { ready: false, terminating: true, reason: 'pod is terminating' }],
    ['on a NotReady (lost) node: listed, not ready', pod('a', { node: 'lost' }), { ready: false, reason: 'node lost is NotReady' }],
    ['on an unknown node', pod('a', { node: 'gone' }), { ready: false, reason: 'node gone is not registered' }],
  ])('%s', (_name, p, want) => {
    const eps = computeEndpoints(service(), [p], fleet);
    if (want.listed === false) {
      expect(eps).toEqual([]);
      return;
    }
    expect(eps).toHaveLength(1);
    const e = eps[0]!;
    if (want.ready !== undefined) expect(e.ready).toBe(want.ready);
    if (want.terminating !== undefined) expect(e.terminating).toBe(want.terminating);
    if ('reason' in want) expect(e.reason).toBe(want.reason);
  });

  it('resolves targetPort: a number, a name with the same protocol, the default = port; an unknown name omits that target and says so', () => {
    const svc = service({
      ports: [
        { name: 'http', port: 80, targetPort: 'web' },
        { name: 'dns', port: 53, targetPort: 'dns', protocol: 'UDP' },
        { name: 'plain', port: 9000 },
        { name: 'metrics', port: 9100, targetPort: 'metrics' },
      ],
    });
    const p = pod('a', {
      ports: [
        { name: 'web', containerPort: 8080 },
        { name: 'dns', containerPort: 5353, protocol: 'TCP' }, // wrong protocol: not a match for UDP
        { name: 'dns', containerPort: 5354, protocol: 'UDP' },
      ],
    });
    const [e] = computeEndpoints(svc, [p], fleet);
    expect(e?.targets.map((t) => [t.port, t.protocol, t.targetPort])).toEqual([
      [80, 'TCP', 8080],
      [53, 'UDP', 5354],
      [9000, 'TCP', 9000],
    ]);
    expect(e?.ready).toBe(true);
    expect(e?.reason).toBe('no container port named metrics/TCP');
  });

  it('a pod where no service port resolves is not ready', () => {
    const [e] = computeEndpoints(service({ ports: [{ port: 80, targetPort: 'nope' }] }), [pod('a')], fleet);
    expect(e?.ready).toBe(false);
    expect(e?.targets).toEqual([]);
    expect(e?.reason).toContain('no service port resolves');
  });

  it("carries the node's advertise address and endpoint ports only when the node has one", () => {
    const asked: string[] = [];
    const eps = computeEndpoints(service(), [pod('b', { node: 'n2' }), pod('a'), pod('c', { node: 'lost' })], fleet, (n, uid, tp, proto) => {
      asked.push(`${n}/${uid}/${tp}/${proto}`);
      return n === 'n1' ? 30000 : 30001;
    });
    expect(eps.map((e) => [e.pod, e.node, e.address, e.targets[0]?.endpointPort])).toEqual([
      ['a', 'n1', '192.168.1.11', 30000],
      ['b', 'n2', '192.168.1.12', 30001],
      ['c', 'lost', undefined, undefined],
    ]);
    expect(asked).toEqual(['n1/uid-a/8080/TCP', 'n2/uid-b/8080/TCP']);
  });

  it('podNotReadyReason: a Ready pod has none', () => {
    expect(podNotReadyReason(pod('a'))).toBeUndefined();
  });

  it('publishNodes: nodeSelector absent = every node (undefined), else the matching names', () => {
    const ns = [node('a', { labels: { edge: 'yes' } }), node('b'), node('c', { labels: { edge: 'yes' } })];
    expect(publishNodes(undefined, ns)).toBeUndefined();
    expect(publishNodes({ edge: 'yes' }, ns)).toEqual(['a', 'c']);
    expect(publishNodes({ edge: 'no' }, ns)).toEqual([]);
  });
});

describe('OrdinalAllocator', () => {
  it('lowest free, stable, freed on delete, exhausted → undefined', () => {
    const o = new OrdinalAllocator(2, 4);
    expect(o.claim('a')).toBe(2);
    expect(o.claim('b')).toBe(3);
    expect(o.claim('a')).toBe(2);
    expect(o.claim('c')).toBe(4);
    expect(o.claim('d')).toBeUndefined();
    o.release('b');
    expect(o.claim('d')).toBe(3);
    expect(o.claim('e')).toBeUndefined();
  });

  it('load keeps stored ordinals (hub restart) and refuses a duplicate', () => {
    const o = new OrdinalAllocator(2, 10);
    expect(o.load('web', 7)).toBe(true);
    expect(o.load('db', 7)).toBe(false);
    expect(o.claim('db')).toBe(2);
    expect(o.claim('web')).toBe(7);
    expect(o.load('x', 11)).toBe(false);
  });
});

describe('EndpointPortAllocator', () => {
  const none = (): ReadonlySet<number> => new Set();

  it('next free per node (round the range), shared by services selecting the same pod+targetPort, separate per node', () => {
    const a = new EndpointPortAllocator({ min: 30000, max: 30009 });
    const s1 = a.begin('s1', none);
    expect(s1.lookup('n1', 'u1', 80, 'TCP')).toBe(30000);
    expect(s1.lookup('n1', 'u2', 80, 'TCP')).toBe(30001);
    expect(s1.lookup('n2', 'u3', 80, 'TCP')).toBe(30000);
    expect(s1.lookup('n1', 'u1', 53, 'UDP')).toBe(30002); // one cursor per node, whatever the protocol
    s1.end();
    const s2 = a.begin('s2', none);
    expect(s2.lookup('n1', 'u1', 80, 'TCP')).toBe(30000); // shared
    expect(s2.lookup('n1', 'u1', 81, 'TCP')).toBe(30003);
    s2.end();
  });

  it('stable across passes; freed when no service uses it any more', () => {
    const a = new EndpointPortAllocator({ min: 30000, max: 30009 });
    let p = a.begin('s1', none);
    p.lookup('n1', 'u1', 80, 'TCP');
    p.lookup('n1', 'u2', 80, 'TCP');
    p.end();
    p = a.begin('s1', none);
    expect(p.lookup('n1', 'u2', 80, 'TCP')).toBe(30001); // u1 left: u2 keeps its port
    p.end();
    expect(a.portOf('n1', 'u1', 80, 'TCP')).toBeUndefined();
    p = a.begin('s1', none);
    // u1's freed 30000 is not handed out again until the range has gone round (review finding 7:
    // an agent holding an older message would dial it and land in another pod).
    expect(p.lookup('n1', 'u3', 80, 'TCP')).toBe(30002);
    p.end();
    p = a.begin('s1', none);
    for (let i = 4; i <= 10; i++) p.lookup('n1', `u${i}`, 80, 'TCP'); // 30003…30009
    expect(p.lookup('n1', 'u11', 80, 'TCP')).toBe(30000); // wrapped: now the freed port
    p.end();
    a.releaseService('s1');
    expect(a.portOf('n1', 'u2', 80, 'TCP')).toBeUndefined();
  });

  it('a port shared by two services stays until the last one lets go', () => {
    const a = new EndpointPortAllocator({ min: 30000, max: 30009 });
    for (const s of ['s1', 's2']) {
      const p = a.begin(s, none);
      p.lookup('n1', 'u1', 80, 'TCP');
      p.end();
    }
    a.releaseService('s1');
    expect(a.portOf('n1', 'u1', 80, 'TCP')).toBe(30000);
    a.releaseService('s2');
    expect(a.portOf('n1', 'u1', 80, 'TCP')).toBeUndefined();
  });

  it("avoids the node's hostPorts and published ports; moves a port that became taken; undefined when the range is full", () => {
    const a = new EndpointPortAllocator({ min: 30000, max: 30002 });
    let taken = new Set([30000]);
    let p = a.begin('s1', (n) => (n === 'n1' ? taken : new Set()));
    expect(p.lookup('n1', 'u1', 80, 'TCP')).toBe(30001);
    expect(p.lookup('n2', 'u2', 80, 'TCP')).toBe(30000);
    p.end();
    taken = new Set([30000, 30001]);
    p = a.begin('s1', (n) => (n === 'n1' ? taken : new Set()));
    expect(p.lookup('n1', 'u1', 80, 'TCP')).toBe(30002);
    expect(p.lookup('n1', 'u9', 80, 'TCP')).toBeUndefined();
    p.end();
  });

  it('load rebuilds from stored statuses (hub restart gives the same ports)', () => {
    const a = new EndpointPortAllocator({ min: 30000, max: 30009 });
    a.load({
      metadata: { name: 's1' } as ServiceObject['metadata'],
      status: {
        endpoints: [
          { pod: 'p', uid: 'u1', node: 'n1', ready: true, terminating: false, targets: [{ port: 80, protocol: 'TCP', targetPort: 8080, endpointPort: 30005 }] },
        ],
        conditions: [],
        observedGeneration: 0,
      },
    });
    const p = a.begin('s2', none);
    expect(p.lookup('n1', 'u1', 8080, 'TCP')).toBe(30005);
    expect(p.lookup('n1', 'u2', 8080, 'TCP')).toBe(30006); // continues after the highest port in use
    p.end();
  });

  it('parsePortRange', () => {
    expect(parsePortRange('30000-30999')).toEqual({ min: 30000, max: 30999 });
    expect(parsePortRange('31000-30000')).toBeUndefined();
    expect(parsePortRange('0-10')).toBeUndefined();
    expect(parsePortRange('80')).toBeUndefined();
  });
});
