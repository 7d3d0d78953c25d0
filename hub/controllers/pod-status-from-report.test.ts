import { describe, expect, it } from 'vitest';
import type { ObservedPod } from '../../protocol/messages.js';
import type { ContainerStatus, NodeObject, Pod, PodCondition, PodStatus } from '../../protocol/objects.js';
import { podReportEvents, podStatusFromReport } from './pod-status-from-report.js';

const T0 = '2026-01-01T00:00:00.000Z';
const NOW = new Date('2026-01-01T00:01:00.000Z');
const AT_NOW = NOW.toISOString();

function pod(status: Partial<PodStatus> = {}): Pod {
  return {
    apiVersion: 'orchard/v1',
    kind: 'Pod',
    metadata: { name: 'web-1', uid: 'u1', labels: {}, annotations: {} },
    spec: { containers: [{ name: 'c', image: 'img' }], nodeName: 'n1' },
    status: { phase: 'Pending', conditions: [], containerStatuses: [], ...status },
  } as unknown as Pod;
}

function observed(o: Partial<ObservedPod> = {}): ObservedPod {
  return { name: 'web-1', uid: 'u1', phase: 'Running', ready: false, conditions: [], containers: [], ...o };
}

function node(addresses: string[] | undefined): NodeObject {
  const info =
    addresses === undefined
      ? undefined
      : {
          arch: 'arm64',
          os: 'linux',
          cpu: { cores: 4 },
          memoryBytes: 1,
          engine: { name: 'docker', version: '20.10', memoryLimit: true, cpuLimit: true },
          agentVersion: '0.1.0',
          addresses,
        };
  return {
    apiVersion: 'orchard/v1',
    kind: 'Node',
    metadata: { name: 'n1', labels: {}, annotations: {} },
    spec: { unschedulable: false, taints: [] },
    status: { conditions: [], ...(info ? { info } : {}) },
  } as unknown as NodeObject;
}

const cs = (c: Partial<ContainerStatus> = {}): ContainerStatus => ({ name: 'c', image: 'img', state: 'running', restartCount: 0, ready: true, ...c });
const scheduled: PodCondition = { type: 'PodScheduled', status: 'True', lastTransitionTime: T0 };

describe('podStatusFromReport', () => {
  it.each(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const)('takes the reported phase %s', (phase) => {
    expect(podStatusFromReport(pod({ phase: 'Running' }), observed({ phase }), undefined, NOW).phase).toBe(phase);
  });

  const conditionCases: Array<{ name: string; before: PodCondition[]; op: Partial<ObservedPod>; want: PodCondition[] }> = [
    {
      name: 'Ready True from op.ready when the agent sends no Ready',
      before: [],
      op: { ready: true },
      want: [{ type: 'Ready', status: 'True', lastTransitionTime: AT_NOW }],
    },
    {
      name: 'Ready False from op.ready when the agent sends no Ready',
      before: [],
      op: { ready: false },
      want: [{ type: 'Ready', status: 'False', lastTransitionTime: AT_NOW }],
    },
    {
      name: "the agent's Ready wins over op.ready",
      before: [],
      op: { ready: true, conditions: [{ type: 'Ready', status: 'False', reason: 'ContainersNotReady' }] },
      want: [{ type: 'Ready', status: 'False', reason: 'ContainersNotReady', lastTransitionTime: AT_NOW }],
    },
    {
      name: "PodScheduled is the hub's: kept, the agent's ignored",
      before: [scheduled],
      op: { ready: true, conditions: [{ type: 'PodScheduled', status: 'False', lastTransitionTime: AT_NOW }] },
      want: [scheduled, { type: 'Ready', status: 'True', lastTransitionTime: AT_NOW }],
    },
    {
      name: 'a condition the agent no longer sends is dropped',
      before: [scheduled, { type: 'ContainersReady', status: 'True', lastTransitionTime: T0 }, { type: 'Ready', status: 'True', lastTransitionTime: T0 }],
      op: { ready: true },
      want: [scheduled, { type: 'Ready', status: 'True', lastTransitionTime: T0 }],
    },
    {
      name: 'unchanged status keeps its lastTransitionTime (reason and message are the new ones)',
      before: [{ type: 'Ready', status: 'False', reason: 'A', lastTransitionTime: T0 }],
      op: { conditions: [{ type: 'Ready', status: 'False', reason: 'B', message: 'm' }] },
      want: [{ type: 'Ready', status: 'False', reason: 'B', message: 'm', lastTransitionTime: T0 }],
    },
    {
      name: 'unchanged status keeps the hub time even when the agent dates it earlier',
      before: [{ type: 'Ready', status: 'True', lastTransitionTime: T0 }],
      op: { conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: '2025-01-01T00:00:00.000Z' }] },
      want: [{ type: 'Ready', status: 'True', lastTransitionTime: T0 }],
    },
    {
      name: 'a changed status moves lastTransitionTime to now',
      before: [{ type: 'Ready', status: 'True', lastTransitionTime: T0 }],
      op: { ready: false },
      want: [{ type: 'Ready', status: 'False', lastTransitionTime: AT_NOW }],
    },
    {
      name: 'a changed status is stamped with the hub time, not one the agent sends',
      before: [{ type: 'Ready', status: 'False', lastTransitionTime: T0 }],
      op: { conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: '2020-01-01T00:00:00.000Z' }] },
      want: [{ type: 'Ready', status: 'True', lastTransitionTime: AT_NOW }],
    },
    {
      name: 'conditions keep their place; a new type is appended',
      before: [{ type: 'Ready', status: 'True', lastTransitionTime: T0 }, scheduled],
      op: {
        conditions: [
          { type: 'ContainersReady', status: 'True' },
          { type: 'Ready', status: 'True' },
        ],
      },
      want: [{ type: 'Ready', status: 'True', lastTransitionTime: T0 }, scheduled, { type: 'ContainersReady', status: 'True', lastTransitionTime: AT_NOW }],
    },
  ];
  it.each(conditionCases)('conditions: $name', ({ before, op, want }) => {
    const p = pod({ conditions: before });
    const frozen = structuredClone(p);
    expect(podStatusFromReport(p, observed(op), undefined, NOW).conditions).toEqual(want);
    expect(p).toEqual(frozen); // pure: the stored pod is untouched
  });

  const pull = { image: 'img', layersDone: 1, layersTotal: 3, bytesDone: 10, bytesTotal: 30 };
  const fieldCases: Array<{ name: string; op: Partial<ObservedPod>; n: NodeObject | undefined; before?: Partial<PodStatus>; want: Partial<PodStatus> }> = [
    { name: 'only phase, conditions and containers when the agent sends nothing else', op: {}, n: undefined, want: {} },
    {
      name: 'pull, reason, message and startTime when sent',
      op: { pull, reason: 'Evicted', message: 'disk', startTime: T0 },
      n: undefined,
      want: { pull, reason: 'Evicted', message: 'disk', startTime: T0 },
    },
    {
      name: 'fields the agent stops sending go (the old pull, reason, message, startTime, unschedulable)',
      op: {},
      n: undefined,
      before: { pull, reason: 'Old', message: 'old', startTime: T0, hostIP: '10.0.0.9', unschedulable: { summary: 's', nodes: {} } },
      want: {},
    },
    { name: "hostIP is the node's first address", op: {}, n: node(['192.168.1.5', '10.0.0.1']), want: { hostIP: '192.168.1.5' } },
    { name: 'no hostIP from a node with no address', op: {}, n: node([]), want: {} },
    { name: 'no hostIP from a node with no facts yet', op: {}, n: node(undefined), want: {} },
  ];
  it.each(fieldCases)('fields: $name', ({ op, n, before, want }) => {
    const containers = [cs({ restartCount: 2 })];
    const got = podStatusFromReport(pod(before), observed({ ...op, containers }), n, NOW);
    expect(got).toEqual({
      phase: 'Running',
      conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: AT_NOW }],
      containerStatuses: containers,
      ...want,
    });
  });
});

describe('podReportEvents', () => {
  const cases: Array<{ name: string; before: Partial<PodStatus>; next: Partial<PodStatus>; want: Array<[string, string, string]> }> = [
    { name: 'nothing new: no event', before: { containerStatuses: [cs()] }, next: { phase: 'Running', containerStatuses: [cs()] }, want: [] },
    { name: 'turning Running: no event', before: { phase: 'Pending' }, next: { phase: 'Running', containerStatuses: [cs()] }, want: [] },
    {
      name: 'a restart, with exit code and reason',
      before: { containerStatuses: [cs()] },
      next: { containerStatuses: [cs({ restartCount: 1, exitCode: 137, reason: 'OOMKilled' })] },
      want: [['Warning', 'Restarted', 'container c restarted (exit code 137, OOMKilled)']],
    },
    {
      name: 'a restart without exit code',
      before: { containerStatuses: [cs()] },
      next: { containerStatuses: [cs({ restartCount: 1 })] },
      want: [['Warning', 'Restarted', 'container c restarted (exit code unknown)']],
    },
    { name: 'a container first seen with restarts: no Restarted', before: {}, next: { containerStatuses: [cs({ restartCount: 3 })] }, want: [] },
    {
      name: 'ErrImagePull once, with its message',
      before: { containerStatuses: [cs()] },
      next: { containerStatuses: [cs({ state: 'waiting', reason: 'ErrImagePull', message: 'manifest unknown' })] },
      want: [['Warning', 'ErrImagePull', 'manifest unknown']],
    },
    {
      name: 'ErrImagePull without message names the image',
      before: {},
      next: { containerStatuses: [cs({ state: 'waiting', reason: 'ErrImagePull' })] },
      want: [['Warning', 'ErrImagePull', 'cannot pull img']],
    },
    {
      name: 'ErrImagePull repeated: no event',
      before: { containerStatuses: [cs({ reason: 'ErrImagePull' })] },
      next: { containerStatuses: [cs({ reason: 'ErrImagePull', message: 'again' })] },
      want: [],
    },
    {
      name: 'VolumePathEscape once',
      before: {},
      next: { containerStatuses: [cs({ state: 'waiting', reason: 'VolumePathEscape' })] },
      want: [['Warning', 'VolumePathEscape', 'container c: a volume path leads outside its volume']],
    },
    {
      name: 'VolumePathEscape repeated: no event',
      before: { containerStatuses: [cs({ reason: 'VolumePathEscape' })] },
      next: { containerStatuses: [cs({ reason: 'VolumePathEscape' })] },
      want: [],
    },
    {
      name: 'Forbidden names container and node',
      before: {},
      next: { containerStatuses: [cs({ state: 'waiting', reason: 'Forbidden', message: 'privileged not allowed' })] },
      want: [['Warning', 'Forbidden', 'container c on n1: privileged not allowed']],
    },
    {
      name: 'Forbidden with a new message: again',
      before: { containerStatuses: [cs({ reason: 'Forbidden', message: 'a' })] },
      next: { containerStatuses: [cs({ reason: 'Forbidden', message: 'b' })] },
      want: [['Warning', 'Forbidden', 'container c on n1: b']],
    },
    {
      name: 'Forbidden unchanged: no event',
      before: { containerStatuses: [cs({ reason: 'Forbidden', message: 'a' })] },
      next: { containerStatuses: [cs({ reason: 'Forbidden', message: 'a' })] },
      want: [],
    },
    {
      name: 'CreateContainerConfigError without message',
      before: {},
      next: { containerStatuses: [cs({ reason: 'CreateContainerConfigError' })] },
      want: [['Warning', 'CreateContainerConfigError', 'container c on n1: CreateContainerConfigError']],
    },
    { name: 'Failed', before: { phase: 'Running' }, next: { phase: 'Failed' }, want: [['Warning', 'Failed', 'pod is Failed on n1']] },
    { name: 'Succeeded', before: { phase: 'Running' }, next: { phase: 'Succeeded' }, want: [['Normal', 'Succeeded', 'pod is Succeeded on n1']] },
    { name: 'still Failed: no event', before: { phase: 'Failed' }, next: { phase: 'Failed' }, want: [] },
    {
      name: 'container events first, then the phase',
      before: { phase: 'Running', containerStatuses: [cs()] },
      next: { phase: 'Failed', containerStatuses: [cs({ restartCount: 1, exitCode: 1 })] },
      want: [
        ['Warning', 'Restarted', 'container c restarted (exit code 1)'],
        ['Warning', 'Failed', 'pod is Failed on n1'],
      ],
    },
  ];
  it.each(cases)('$name', ({ before, next, want }) => {
    const got = podReportEvents(pod({ phase: 'Running', ...before }), { phase: 'Running', conditions: [], containerStatuses: [], ...next }, 'n1');
    expect(got.map((e) => [e.type, e.reason, e.message])).toEqual(want);
    for (const e of got) expect({ kind: e.kind, name: e.name }).toEqual({ kind: 'Pod', name: 'web-1' });
  });
});
