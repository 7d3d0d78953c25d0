import { describe, expect, it } from 'vitest';
import type { DesiredPod } from '../protocol/messages.js';
import { containerKey } from './container-spec.js';
import type { Action, ContainerFailure, RestartEntry } from './plan.js';
import { plan, restartDelayMs } from './plan.js';
import type { RuntimeContainer } from './runtime/runtime.js';
import { LABELS } from './runtime/runtime.js';
import { mockContainer, mockPod } from './test-fixtures.js';

const T0 = Date.parse('2024-01-01T00:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();
const web = mockPod();
const pair = mockPod({ name: 'pair-1', containers: ['app', 'sidecar'] });
const never = mockPod({ name: 'job-1', restartPolicy: 'Never' });
const onFail = mockPod({ name: 'job-2', restartPolicy: 'OnFailure' });

/** Actions in a compact, comparable form. */
function brief(a: Action): string {
  switch (a.type) {
    case 'create':
      return `create ${a.pod.name}/${a.container}`;
    case 'start':
      return `start ${a.id}${a.crashRestart ? ' (crash)' : ''}${a.resetBackoff ? ' (reset)' : ''}`;
    case 'restart':
      return `restart ${a.id}`;
    case 'kill':
      return `kill ${a.id}: ${a.reason}`;
    case 'remove':
      return `remove ${a.id}: ${a.reason}`;
  }
}

interface Row {
  name: string;
  desired: DesiredPod[];
  observed: RuntimeContainer[];
  now?: number;
  restarts?: Array<[string, RestartEntry]>;
  failures?: Array<[string, ContainerFailure]>;
  actions: string[];
  wakeAt?: number;
}

const exited = (
  pod: DesiredPod,
  index: number,
  exitCode: number,
  ranMs: number,
  finishedAt = T0 + ranMs,
  over: Partial<RuntimeContainer> = {},
): RuntimeContainer => mockContainer(pod, index, { state: 'exited', exitCode, startedAt: iso(finishedAt - ranMs), finishedAt: iso(finishedAt), ...over });

const table: Row[] = [
  { name: 'nothing desired, nothing observed', desired: [], observed: [], actions: [] },
  { name: 'creates a missing container', desired: [web], observed: [], actions: ['create web-1/main'] },
  { name: 'creates pod containers in order, first first', desired: [pair], observed: [], actions: ['create pair-1/app', 'create pair-1/sidecar'] },
  { name: 'leaves a matching running container alone', desired: [web], observed: [mockContainer(web, 0)], actions: [] },
  {
    name: 'removes a container of an undesired pod uid',
    desired: [],
    observed: [mockContainer(web, 0)],
    actions: ['remove web-1-0: pod is no longer desired on this node'],
  },
  {
    name: 'removes a stray container without pod labels',
    desired: [],
    observed: [{ id: 'stray', name: 'x', image: 'i', labels: { [LABELS.node]: 'node-1' }, state: 'running' }],
    actions: ['remove stray: stray container without a pod uid'],
  },
  {
    name: 'replaces a container whose spec hash changed (remove before create)',
    desired: [web],
    observed: [mockContainer(web, 0, { labels: { ...mockContainer(web, 0).labels, [LABELS.specHash]: 'old' } })],
    actions: ['remove web-1-0: spec changed', 'create web-1/main'],
  },
  {
    name: 'keeps the running one of two duplicates',
    desired: [web],
    observed: [mockContainer(web, 0, { id: 'a', state: 'exited', exitCode: 0 }), mockContainer(web, 0, { id: 'b' })],
    actions: ['remove a: duplicate container'],
  },
  { name: 'starts a created, never-started container', desired: [web], observed: [mockContainer(web, 0, { state: 'created' })], actions: ['start web-1-0'] },
  {
    name: 'first crash restarts immediately',
    desired: [web],
    observed: [exited(web, 0, 1, 5000)],
    now: T0 + 5000,
    actions: ['start web-1-0 (crash)'],
  },
  {
    name: 'second crash waits 1 s after the exit',
    desired: [web],
    observed: [exited(web, 0, 1, 100, T0 + 5000)],
    now: T0 + 5200,
    restarts: [['web-1-0', { restarts: 1, backoffStep: 1, lastRestartAt: T0 + 4900 }]],
    actions: [],
    wakeAt: T0 + 6000,
  },
  {
    name: 'second crash restarts once 1 s has passed',
    desired: [web],
    observed: [exited(web, 0, 1, 100, T0 + 5000)],
    now: T0 + 6000,
    restarts: [['web-1-0', { restarts: 1, backoffStep: 1, lastRestartAt: T0 + 4900 }]],
    actions: ['start web-1-0 (crash)'],
  },
  {
    name: 'back-off doubles: step 4 waits 8 s',
    desired: [web],
    observed: [exited(web, 0, 2, 100, T0 + 5000)],
    now: T0 + 5000,
    restarts: [['web-1-0', { restarts: 4, backoffStep: 4, lastRestartAt: T0 + 4900 }]],
    actions: [],
    wakeAt: T0 + 13_000,
  },
  {
    name: 'back-off is capped at 300 s',
    desired: [web],
    observed: [exited(web, 0, 2, 100, T0 + 5000)],
    now: T0 + 5000,
    restarts: [['web-1-0', { restarts: 30, backoffStep: 30, lastRestartAt: T0 + 4900 }]],
    actions: [],
    wakeAt: T0 + 305_000,
  },
  {
    name: 'back-off resets after 10 min running',
    desired: [web],
    observed: [exited(web, 0, 2, 11 * 60_000)],
    now: T0 + 11 * 60_000,
    restarts: [['web-1-0', { restarts: 30, backoffStep: 30, lastRestartAt: T0 }]],
    actions: ['start web-1-0 (crash) (reset)'],
  },
  { name: 'restartPolicy Never leaves an exited container', desired: [never], observed: [exited(never, 0, 1, 100)], actions: [] },
  { name: 'OnFailure leaves a clean exit', desired: [onFail], observed: [exited(onFail, 0, 0, 100)], actions: [] },
  { name: 'OnFailure restarts a failure', desired: [onFail], observed: [exited(onFail, 0, 3, 100)], now: T0 + 200, actions: ['start job-2-0 (crash)'] },
  { name: 'Always restarts a clean exit', desired: [web], observed: [exited(web, 0, 0, 100)], now: T0 + 200, actions: ['start web-1-0 (crash)'] },
  {
    name: 'waits out an image pull back-off before creating again',
    desired: [web],
    observed: [],
    now: T0,
    failures: [[containerKey(web.uid, 'main'), { reason: 'ErrImagePull', message: 'no such host', failures: 1, retryAt: T0 + 5000 }]],
    actions: [],
    wakeAt: T0 + 5000,
  },
  {
    name: 'creates again after the pull back-off',
    desired: [web],
    observed: [],
    now: T0 + 5000,
    failures: [[containerKey(web.uid, 'main'), { reason: 'ErrImagePull', message: 'no such host', failures: 1, retryAt: T0 + 5000 }]],
    actions: ['create web-1/main'],
  },
  {
    name: 'joined container is created once its owner exists',
    desired: [pair],
    observed: [mockContainer(pair, 0)],
    actions: ['create pair-1/sidecar'],
  },
  {
    name: 'joined container waits while its owner is in back-off',
    desired: [pair],
    observed: [
      exited(pair, 0, 1, 100, T0 + 5000),
      mockContainer(pair, 1, { ownerId: 'pair-1-0', state: 'exited', exitCode: 1, startedAt: iso(T0), finishedAt: iso(T0 + 5000) }),
    ],
    now: T0 + 5100,
    restarts: [['pair-1-0', { restarts: 1, backoffStep: 1, lastRestartAt: T0 }]],
    actions: [],
    wakeAt: T0 + 6000,
  },
  {
    name: 'joined container restarts after its owner restarted (stale network namespace)',
    desired: [pair],
    observed: [mockContainer(pair, 0, { startedAt: iso(T0 + 9000) }), mockContainer(pair, 1, { ownerId: 'pair-1-0', startedAt: iso(T0 + 1000) })],
    actions: ['restart pair-1-1'],
  },
  {
    name: 'owner replaced: the joined container is replaced too',
    desired: [pair],
    observed: [
      mockContainer(pair, 0, { labels: { ...mockContainer(pair, 0).labels, [LABELS.specHash]: 'old' } }),
      mockContainer(pair, 1, { ownerId: 'pair-1-0' }),
    ],
    actions: ['remove pair-1-0: spec changed', 'remove pair-1-1: network namespace owner was replaced', 'create pair-1/app', 'create pair-1/sidecar'],
  },
  {
    name: 'host network pods do not join a namespace',
    desired: [mockPod({ name: 'h-1', containers: ['a', 'b'], network: 'host' })],
    observed: [],
    actions: ['create h-1/a', 'create h-1/b'],
  },
];

describe('plan', () => {
  for (const row of table) {
    it(row.name, () => {
      const p = plan(row.desired, row.observed, row.now ?? T0, {
        containers: new Map(row.restarts ?? []),
        failures: new Map(row.failures ?? []),
      });
      expect(p.actions.map(brief)).toEqual(row.actions);
      expect(p.wakeAt).toBe(row.wakeAt);
    });
  }

  it('reports the back-off deadline of a waiting container', () => {
    const p = plan([web], [exited(web, 0, 1, 100, T0 + 5000)], T0 + 5200, {
      containers: new Map([['web-1-0', { restarts: 2, backoffStep: 2, lastRestartAt: T0 }]]),
      failures: new Map(),
    });
    expect(p.backoff.get('web-1-0')).toBe(T0 + 7000);
  });

  it('is deterministic and does not mutate its inputs', () => {
    const observed = [mockContainer(web, 0, { state: 'exited', exitCode: 1 })];
    const snapshot = JSON.stringify(observed);
    const a = plan([web], observed, T0, { containers: new Map(), failures: new Map() });
    const b = plan([web], observed, T0, { containers: new Map(), failures: new Map() });
    expect(a.actions.map(brief)).toEqual(b.actions.map(brief));
    expect(JSON.stringify(observed)).toBe(snapshot);
  });

  it('delays: 0, 1s, 2s, 4s … 300s', () => {
    expect([0, 1, 2, 3, 4, 9, 10, 50].map(restartDelayMs)).toEqual([0, 1000, 2000, 4000, 8000, 256_000, 300_000, 300_000]);
  });
});
