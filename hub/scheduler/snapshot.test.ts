import { describe, expect, it } from 'vitest';
import { schedule } from './scheduler.js';
import { buildSchedNodes, podToSchedPod } from './snapshot.js';
import { Gi, Mi, mockNodeObject, mockPodObject } from './testing.js';

describe('buildSchedNodes', () => {
  it("carries the node's local images (NodeInfo.localImages) so the image-platform filter can judge local images", () => {
    const withImages = mockNodeObject('pi', { arch: 'arm64' });
    withImages.status.info!.localImages = [{ image: 'orchard-test/busybox:1', platform: 'linux/amd64' }];
    const [n, bare] = buildSchedNodes([withImages, mockNodeObject('old')], []);
    expect([...(n?.localImages ?? [])]).toEqual([['orchard-test/busybox:1', 'linux/amd64']]);
    expect(bare?.localImages).toBeUndefined();
    const pod = podToSchedPod(mockPodObject('p'), {});
    pod.spec = { ...pod.spec, containers: pod.spec.containers.map((c) => ({ ...c, image: 'orchard-test/busybox:1' })) };
    const d = schedule(pod, [n!]);
    expect(d.kind === 'unschedulable' && d.summary).toBe('0/1 nodes fit: 1 image has no linux/arm64 variant');
  });

  it('derives allocatable from capacity minus the default reservation (100m, 64Mi)', () => {
    const [n] = buildSchedNodes([mockNodeObject('a', { capacity: { cpuMillis: 2000, memoryBytes: Gi, pods: 20 } })], []);
    expect(n?.allocatable).toEqual({ cpuMillis: 1900, memoryBytes: Gi - 64 * Mi, pods: 20 });
  });

  it('falls back to reported cores and memory, with a pod limit', () => {
    const [n] = buildSchedNodes([mockNodeObject('a', { cores: 4, memoryBytes: 2 * Gi })], [], {
      systemReserved: { cpuMillis: 0, memoryBytes: 0 },
      maxPodsPerNode: 30,
    });
    expect(n?.allocatable).toEqual({ cpuMillis: 4000, memoryBytes: 2 * Gi, pods: 30 });
  });

  it('maps readiness, arch, cordon, labels and taints; a node with no info has unknown arch and no capacity', () => {
    const nodes = buildSchedNodes(
      [
        mockNodeObject('a', { arch: 'arm', ready: false, unschedulable: true, labels: { zone: 'north' }, taints: [{ key: 'k', effect: 'NoSchedule' }] }),
        mockNodeObject('b', { noInfo: true }),
      ],
      [],
    );
    expect(nodes[0]).toMatchObject({
      name: 'a',
      arch: 'arm',
      os: 'linux',
      ready: false,
      unschedulable: true,
      labels: { zone: 'north' },
      taints: [{ key: 'k', effect: 'NoSchedule' }],
    });
    expect(nodes[1]).toMatchObject({ name: 'b', arch: undefined, ready: true, allocatable: { cpuMillis: 0, memoryBytes: 0, pods: 110 } });
  });

  it('sums requests, host ports and owners of live pods bound to each node', () => {
    const nodes = buildSchedNodes(
      [mockNodeObject('a'), mockNodeObject('b')],
      [
        mockPodObject('w1', { nodeName: 'a', owner: 'web', cpu: '250m', memory: '128Mi', hostPort: 8080 }),
        mockPodObject('w2', { nodeName: 'a', owner: 'web', cpu: '250m', phase: 'Pending' }),
        mockPodObject('done', { nodeName: 'a', owner: 'job', cpu: '1', phase: 'Succeeded' }),
        mockPodObject('dead', { nodeName: 'b', cpu: '1', phase: 'Failed' }),
        mockPodObject('pending', { cpu: '1' }),
        mockPodObject('elsewhere', { nodeName: 'gone', cpu: '1' }),
      ],
    );
    const a = nodes[0]!;
    expect(a.requested).toEqual({ cpuMillis: 500, memoryBytes: 128 * Mi, pods: 2 });
    expect([...a.usedHostPorts]).toEqual(['TCP/0.0.0.0/8080']);
    expect([...a.podsByOwner]).toEqual([['web', 2]]);
    expect(nodes[1]?.requested).toEqual({ cpuMillis: 0, memoryBytes: 0, pods: 0 });
  });

  it('leaves out nodes being deleted', () => {
    const gone = mockNodeObject('gone');
    gone.metadata.deletionTimestamp = '2024-01-01T00:00:00Z';
    expect(buildSchedNodes([gone, mockNodeObject('kept')], []).map((n) => n.name)).toEqual(['kept']);
  });

  it('feeds the scheduler: a stored pod lands where it fits', () => {
    const nodes = buildSchedNodes(
      [mockNodeObject('a', { capacity: { cpuMillis: 1100, memoryBytes: Gi, pods: 10 } }), mockNodeObject('b')],
      [mockPodObject('hog', { nodeName: 'b', cpu: '3900m' })],
    );
    const pod = podToSchedPod(mockPodObject('web-1', { owner: 'web', cpu: '500m' }));
    expect(pod).toMatchObject({ name: 'web-1', owner: 'web' });
    expect(schedule(pod, nodes)).toMatchObject({ kind: 'bound', nodeName: 'a' });
  });
});
