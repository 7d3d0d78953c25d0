import { describe, expect, it } from 'vitest';
import type { DeploymentCondition, NodeCondition, PodCondition } from '../../protocol/objects.js';
import { setCondition, type Condition } from './conditions.js';

const T0 = '2026-01-01T00:00:00.000Z';
const NOW = '2026-01-01T00:05:00.000Z';
const AGENT = '2026-01-01T00:04:00.000Z';

describe('setCondition', () => {
  it.each<[string, Condition[] | undefined, Condition, Condition[]]>([
    ['adds to an empty list, stamped now', [], { type: 'Ready', status: 'True' }, [{ type: 'Ready', status: 'True', lastTransitionTime: NOW }]],
    ['adds to an undefined list', undefined, { type: 'Ready', status: 'True' }, [{ type: 'Ready', status: 'True', lastTransitionTime: NOW }]],
    [
      'same status keeps lastTransitionTime',
      [{ type: 'Ready', status: 'True', lastTransitionTime: T0 }],
      { type: 'Ready', status: 'True', lastTransitionTime: NOW },
      [{ type: 'Ready', status: 'True', lastTransitionTime: T0 }],
    ],
    [
      'same status, reason and message updated, lastTransitionTime kept',
      [{ type: 'Ready', status: 'False', reason: 'AgentDisconnected', message: 'last will', lastTransitionTime: T0 }],
      { type: 'Ready', status: 'False', reason: 'NodeStatusUnknown', message: 'no heartbeat for 41s' },
      [{ type: 'Ready', status: 'False', reason: 'NodeStatusUnknown', message: 'no heartbeat for 41s', lastTransitionTime: T0 }],
    ],
    [
      'a reason the new condition lacks is dropped',
      [{ type: 'Ready', status: 'False', reason: 'NodeLost', message: 'm', lastTransitionTime: T0 }],
      { type: 'Ready', status: 'False' },
      [{ type: 'Ready', status: 'False', lastTransitionTime: T0 }],
    ],
    [
      'status change sets lastTransitionTime to now',
      [{ type: 'Ready', status: 'True', lastTransitionTime: T0 }],
      { type: 'Ready', status: 'False', reason: 'NodeLost' },
      [{ type: 'Ready', status: 'False', reason: 'NodeLost', lastTransitionTime: NOW }],
    ],
    [
      'Unknown counts as a status of its own',
      [{ type: 'Progressing', status: 'True', lastTransitionTime: T0 }],
      { type: 'Progressing', status: 'Unknown' },
      [{ type: 'Progressing', status: 'Unknown', lastTransitionTime: NOW }],
    ],
    [
      'status change takes the time the caller set',
      [{ type: 'Ready', status: 'False', lastTransitionTime: T0 }],
      { type: 'Ready', status: 'True', lastTransitionTime: AGENT },
      [{ type: 'Ready', status: 'True', lastTransitionTime: AGENT }],
    ],
    [
      'a new type takes the time the caller set',
      [],
      { type: 'Ready', status: 'True', lastTransitionTime: AGENT },
      [{ type: 'Ready', status: 'True', lastTransitionTime: AGENT }],
    ],
    [
      'a missing lastTransitionTime is filled (same status)',
      [{ type: 'Ready', status: 'True' }],
      { type: 'Ready', status: 'True' },
      [{ type: 'Ready', status: 'True', lastTransitionTime: NOW }],
    ],
    [
      'order: a condition keeps its place',
      [
        { type: 'PodScheduled', status: 'True', lastTransitionTime: T0 },
        { type: 'Ready', status: 'True', lastTransitionTime: T0 },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: T0 },
      ],
      { type: 'Ready', status: 'False' },
      [
        { type: 'PodScheduled', status: 'True', lastTransitionTime: T0 },
        { type: 'Ready', status: 'False', lastTransitionTime: NOW },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: T0 },
      ],
    ],
    [
      'order: a new type is appended, others untouched',
      [{ type: 'Ready', status: 'True', lastTransitionTime: T0 }],
      { type: 'DiskPressure', status: 'False' },
      [
        { type: 'Ready', status: 'True', lastTransitionTime: T0 },
        { type: 'DiskPressure', status: 'False', lastTransitionTime: NOW },
      ],
    ],
    [
      'duplicates of the type become one, at the first place, compared with the first',
      [
        { type: 'Ready', status: 'True', lastTransitionTime: T0 },
        { type: 'PodScheduled', status: 'True', lastTransitionTime: T0 },
        { type: 'Ready', status: 'False', lastTransitionTime: AGENT },
      ],
      { type: 'Ready', status: 'True' },
      [
        { type: 'Ready', status: 'True', lastTransitionTime: T0 },
        { type: 'PodScheduled', status: 'True', lastTransitionTime: T0 },
      ],
    ],
    [
      'without updateTime, lastUpdateTime is what the caller sets',
      [{ type: 'Available', status: 'True', lastUpdateTime: T0, lastTransitionTime: T0 }],
      { type: 'Available', status: 'True' },
      [{ type: 'Available', status: 'True', lastTransitionTime: T0 }],
    ],
  ])('%s', (_name, list, cond, want) => {
    const before = structuredClone(list);
    expect(setCondition(list, cond, NOW)).toEqual(want);
    expect(list).toEqual(before); // the input list is never changed
  });

  const P = {
    type: 'Progressing',
    status: 'True',
    reason: 'ReplicaSetUpdated',
    message: '1 of 3 updated',
    lastUpdateTime: T0,
    lastTransitionTime: T0,
  } as const satisfies DeploymentCondition;
  it.each<[string, DeploymentCondition[], DeploymentCondition, { lastUpdateTime: string; lastTransitionTime: string }]>([
    [
      'nothing changed: both kept',
      [P],
      { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: '1 of 3 updated' },
      { lastUpdateTime: T0, lastTransitionTime: T0 },
    ],
    [
      'message changed: lastUpdateTime now',
      [P],
      { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: '2 of 3 updated' },
      { lastUpdateTime: NOW, lastTransitionTime: T0 },
    ],
    [
      'reason changed: lastUpdateTime now',
      [P],
      { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: '1 of 3 updated' },
      { lastUpdateTime: NOW, lastTransitionTime: T0 },
    ],
    [
      'status changed: both now',
      [P],
      { type: 'Progressing', status: 'False', reason: 'ReplicaSetUpdated', message: '1 of 3 updated' },
      { lastUpdateTime: NOW, lastTransitionTime: NOW },
    ],
    ['new: both now', [], { type: 'Available', status: 'True' }, { lastUpdateTime: NOW, lastTransitionTime: NOW }],
    [
      'missing times are filled',
      [{ type: 'Available', status: 'True' }],
      { type: 'Available', status: 'True' },
      { lastUpdateTime: NOW, lastTransitionTime: NOW },
    ],
  ])('updateTime: %s', (_name, list, cond, want) => {
    const [got] = setCondition(list, cond, NOW, { updateTime: true }).filter((c) => c.type === cond.type);
    expect(got).toMatchObject(want);
  });

  it('keeps the element type (Node, Pod conditions)', () => {
    const nodes: NodeCondition[] = setCondition<NodeCondition>([], { type: 'MemoryLimitUnsupported', status: 'False' }, NOW);
    const pods: PodCondition[] = setCondition<PodCondition>([], { type: 'PodScheduled', status: 'True' }, NOW);
    expect([nodes[0]?.type, pods[0]?.type]).toEqual(['MemoryLimitUnsupported', 'PodScheduled']);
  });
});
