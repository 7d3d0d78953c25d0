import { describe, expect, it } from 'vitest';
import { clearForGeneration, ejectAfterFailure, pick, type Candidate, type Ejection, type PickInput, type Sticky } from './endpoint-picker.js';

const L1: Candidate = { id: 'l1', local: true };
const L2: Candidate = { id: 'l2', local: true };
const R1: Candidate = { id: 'r1', local: false };
const R2: Candidate = { id: 'r2', local: false };
const NOW = 1_000_000;

const input = (over: Partial<PickInput>): PickInput => ({
  endpoints: [L1, L2, R1, R2],
  policy: 'preferLocal',
  client: '10.0.0.9',
  now: NOW,
  ejected: new Map(),
  sticky: new Map(),
  cursor: 0,
  ...over,
});
const ej = (...ids: Array<[string, number]>): Map<string, Ejection> => new Map(ids.map(([id, until]) => [id, { until, failures: 1 }]));

describe('pick: order by policy, ejection and round robin', () => {
  const table: Array<[string, Partial<PickInput>, string[]]> = [
    ['preferLocal: locals first, then remotes', {}, ['l1', 'l2', 'r1', 'r2']],
    ['preferLocal: cursor rotates within each group', { cursor: 1 }, ['l2', 'l1', 'r2', 'r1']],
    ['preferLocal: no local → remotes', { endpoints: [R1, R2] }, ['r1', 'r2']],
    ['preferLocal: an ejected local goes last, after remotes', { ejected: ej(['l1', NOW + 1]) }, ['l2', 'r1', 'r2', 'l1']],
    ['local: never a remote', { policy: 'local' }, ['l1', 'l2']],
    ['local: only remotes → nothing', { policy: 'local', endpoints: [R1, R2] }, []],
    ['local: all local ejected → still tried', { policy: 'local', ejected: ej(['l1', NOW + 5], ['l2', NOW + 1]) }, ['l2', 'l1']],
    ['cluster: all, round robin', { policy: 'cluster', cursor: 2 }, ['r1', 'r2', 'l1', 'l2']],
    ['cluster: ejected last, soonest back first', { policy: 'cluster', ejected: ej(['l1', NOW + 9], ['r1', NOW + 3]) }, ['l2', 'r2', 'r1', 'l1']],
    ['an expired ejection counts as healthy', { policy: 'cluster', ejected: ej(['l1', NOW]) }, ['l1', 'l2', 'r1', 'r2']],
    ['an ejection of an unknown id is ignored', { ejected: ej(['gone', NOW + 1]) }, ['l1', 'l2', 'r1', 'r2']],
    ['no endpoints → nothing', { endpoints: [] }, []],
  ];
  it.each(table)('%s', (_name, over, want) => {
    expect(pick(input(over)).order).toEqual(want);
  });

  it('the cursor spreads successive picks over every endpoint', () => {
    let cursor = 0;
    const firsts: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = pick(input({ policy: 'cluster', endpoints: [L1, R1, R2], cursor }));
      firsts.push(r.order[0] ?? '');
      cursor = r.cursor;
    }
    expect(firsts).toEqual(['l1', 'r1', 'r2', 'l1', 'r1', 'r2']);
  });
});

describe('pick: session affinity by client address', () => {
  const aff = { timeoutSeconds: 60 };
  const st = (endpoint: string, until: number): Map<string, Sticky> => new Map([['10.0.0.9', { endpoint, until }]]);
  const table: Array<[string, Partial<PickInput>, string[], Sticky | undefined]> = [
    ['no entry: pick and record it', { affinity: aff }, ['l1', 'l2', 'r1', 'r2'], { endpoint: 'l1', until: NOW + 60_000 }],
    ['entry wins and is refreshed', { affinity: aff, sticky: st('r2', NOW + 1) }, ['r2', 'l1', 'l2', 'r1'], { endpoint: 'r2', until: NOW + 60_000 }],
    ['expired entry: pick anew', { affinity: aff, sticky: st('r2', NOW) }, ['l1', 'l2', 'r1', 'r2'], { endpoint: 'l1', until: NOW + 60_000 }],
    [
      'entry for an endpoint no longer listed: pick anew',
      { affinity: aff, endpoints: [L1, R1], sticky: st('r2', NOW + 1) },
      ['l1', 'r1'],
      { endpoint: 'l1', until: NOW + 60_000 },
    ],
    [
      'entry for an ejected endpoint: pick anew',
      { affinity: aff, sticky: st('r2', NOW + 1), ejected: ej(['r2', NOW + 1]) },
      ['l1', 'l2', 'r1', 'r2'],
      { endpoint: 'l1', until: NOW + 60_000 },
    ],
    [
      'another client is not affected',
      { affinity: aff, client: '10.0.0.8', sticky: st('r2', NOW + 1) },
      ['l1', 'l2', 'r1', 'r2'],
      { endpoint: 'l1', until: NOW + 60_000 },
    ],
    ['no affinity: no entry', { sticky: st('r2', NOW + 1) }, ['l1', 'l2', 'r1', 'r2'], undefined],
    ['nothing to pick: no entry', { affinity: aff, endpoints: [] }, [], undefined],
  ];
  it.each(table)('%s', (_name, over, order, sticky) => {
    const r = pick(input(over));
    expect(r.order).toEqual(order);
    expect(r.sticky?.[1]).toEqual(sticky);
    if (sticky) expect(r.sticky?.[0]).toBe(over.client ?? '10.0.0.9');
  });

  it('a sticky hit does not move the cursor', () => {
    expect(pick(input({ affinity: aff, sticky: st('r2', NOW + 1), cursor: 4 })).cursor).toBe(4);
    expect(pick(input({ affinity: aff, cursor: 4 })).cursor).toBe(5);
  });
});

describe('ejection backoff', () => {
  it('10 s after one failure, doubling, capped at 5 min', () => {
    const untils: number[] = [];
    let e: Ejection | undefined;
    for (let i = 0; i < 8; i++) {
      e = ejectAfterFailure(e, NOW);
      untils.push((e.until - NOW) / 1000);
    }
    expect(untils).toEqual([10, 20, 40, 80, 160, 300, 300, 300]);
    expect(e?.failures).toBe(8);
  });

  it('a new generation listing an endpoint ready clears its ejection, others stay', () => {
    const before = new Map<string, Ejection>([
      ['a', { until: NOW + 10, failures: 3 }],
      ['b', { until: NOW + 10, failures: 1 }],
    ]);
    const after = clearForGeneration(before, ['a', 'c']);
    expect([...after.keys()]).toEqual(['b']);
    expect(before.size).toBe(2);
  });
});
