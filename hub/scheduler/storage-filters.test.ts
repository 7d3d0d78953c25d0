import { describe, expect, it } from 'vitest';
import { schedule } from './scheduler.js';
import { ephemeralStorageFit, hostPathAllowed, pathAllowed, volumeAffinity } from './storage-filters.js';
import { Gi, mockNode, mockPod } from './testing.js';
import { podContext } from './pod-context.js';
import { scheduleWithVolumes } from './volume-pins.js';

const persistentPod = (name: string, owner = 'db') =>
  mockPod({
    name,
    owner,
    spec: { containers: [{ name: 'c', image: 'i', volumeMounts: [{ name: 'data', mountPath: '/data' }] }], volumes: [{ name: 'data', persistent: {} }] },
  });
const hostPathPod = (path: string) => mockPod({ spec: { containers: [{ name: 'c', image: 'i' }], volumes: [{ name: 'h', hostPath: { path } }] } });
const ephemeralPod = (q: string) => mockPod({ spec: { containers: [{ name: 'c', image: 'i', resources: { requests: { 'ephemeral-storage': q } } }] } });

describe('pathAllowed', () => {
  it.each([
    ['/srv/data', ['/srv'], true],
    ['/srv', ['/srv'], true],
    ['/srvx', ['/srv'], false],
    ['/srv/../etc', ['/srv'], false],
    ['/etc/passwd', [], false],
    ['/anything', ['/'], true],
    ['/data//x/./y', ['/data/x'], true],
  ] as const)('%s under %j → %s', (path, allow, want) => {
    expect(pathAllowed(path, allow)).toBe(want);
  });
});

describe('storage filters', () => {
  it('host-path rejects paths outside the allow-list a node reported, and passes nodes that reported none', () => {
    const pod = hostPathPod('/etc');
    const strict = mockNode({ name: 'a', storage: { hostPathAllow: ['/srv', '/data'], ephemeralRequested: 0 } });
    expect(hostPathAllowed.filter(pod, strict, podContext(pod))).toBe('hostPath not allowed: /etc (node allows /srv, /data; agent flag --host-path-allow)');
    expect(hostPathAllowed.filter(hostPathPod('/srv/x'), strict, podContext(pod))).toBeUndefined();
    expect(hostPathAllowed.filter(pod, mockNode(), podContext(pod))).toBeUndefined();
    const none = mockNode({ storage: { hostPathAllow: [], ephemeralRequested: 0 } });
    expect(hostPathAllowed.filter(pod, none, podContext(pod))).toMatch(/node allows no host paths/);
  });

  it('ephemeral-storage compares requests with free disk minus what is booked', () => {
    const pod = ephemeralPod('2Gi');
    const node = mockNode({ storage: { diskFreeBytes: 3 * Gi, ephemeralRequested: 0 } });
    expect(ephemeralStorageFit.filter(pod, node, podContext(pod))).toBeUndefined();
    node.storage = { diskFreeBytes: 3 * Gi, ephemeralRequested: 2 * Gi };
    expect(ephemeralStorageFit.filter(pod, node, podContext(pod))).toBe('insufficient ephemeral-storage: 1Gi free (needs 2Gi)');
    expect(ephemeralStorageFit.filter(mockPod(), node, podContext(mockPod()))).toBeUndefined();
  });

  it('volume-affinity keeps a pinned pod on its node and explains why', () => {
    const pod = { ...persistentPod('p'), volumePins: [{ volume: 'orchard-db-data', node: 'a' }] };
    expect(volumeAffinity.filter(pod, mockNode({ name: 'a' }), podContext(pod))).toBeUndefined();
    expect(volumeAffinity.filter(pod, mockNode({ name: 'b' }), podContext(pod))).toBe('volume on another node: orchard-db-data lives on a');
    const d = schedule(pod, [mockNode({ name: 'a', ready: false }), mockNode({ name: 'b' })]);
    expect(d.kind).toBe('unschedulable');
    if (d.kind === 'unschedulable') expect(d.explanation.filtered).toEqual({ a: ['not ready'], b: ['volume on another node: orchard-db-data lives on a'] });
  });
});

describe('scheduleWithVolumes', () => {
  const nodes = () => [mockNode({ name: 'a' }), mockNode({ name: 'b' }), mockNode({ name: 'c' })];

  it('pins pods to the node their bound volume lives on', () => {
    const d = scheduleWithVolumes([persistentPod('p1'), persistentPod('p2')], nodes(), new Map([['orchard-db-data', { node: 'c', startFresh: false }]]));
    expect(d.map((x) => (x.kind === 'bound' ? x.nodeName : x.kind))).toEqual(['c', 'c']);
  });

  it('keeps replicas sharing a new volume together, wherever the first one lands', () => {
    const d = scheduleWithVolumes([persistentPod('p1'), persistentPod('p2'), persistentPod('p3')], nodes(), new Map());
    const placed = d.map((x) => (x.kind === 'bound' ? x.nodeName : x.kind));
    expect(new Set(placed).size).toBe(1);
    expect(placed[0]).not.toBe('unschedulable');
  });

  it('holds a pod whose volume node is lost, unless its owner may start fresh', () => {
    const lost = [mockNode({ name: 'a', ready: false }), mockNode({ name: 'b' })];
    const held = scheduleWithVolumes([persistentPod('p1')], lost, new Map([['orchard-db-data', { node: 'a', startFresh: false }]]));
    expect(held[0]?.kind).toBe('unschedulable');
    if (held[0]?.kind === 'unschedulable') expect(held[0].summary).toMatch(/volume on another node/);
    const fresh = scheduleWithVolumes([persistentPod('p1')], lost, new Map([['orchard-db-data', { node: 'a', startFresh: true }]]));
    expect(fresh[0]).toMatchObject({ kind: 'bound', nodeName: 'b' });
  });

  it('leaves pods without persistent volumes to the plain scheduler', () => {
    const d = scheduleWithVolumes([mockPod({ name: 'x' })], nodes(), new Map());
    expect(d[0]?.kind).toBe('bound');
  });
});
