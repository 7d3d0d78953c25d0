import { describe, expect, it } from 'vitest';
import { EMPTY_SERVICE_TABLE, type ServiceTable } from '../../../agent/services/service-table-types.js';
import { endpointKeys, TimingDataPlane } from './timing-data-plane.js';

const table = (remote: string[], local: Array<{ uid: string; ready: boolean }> = []): ServiceTable => ({
  ...EMPTY_SERVICE_TABLE,
  listeners: [
    {
      key: 's/80/TCP',
      service: 's',
      address: '127.79.0.2',
      port: 80,
      protocol: 'TCP',
      policy: 'preferLocal',
      endpoints: remote.map((id) => ({ id, host: id.split(':')[0] ?? '', port: Number(id.split(':')[1]), local: false })),
    },
  ],
  endpointPorts: local.map((l, i) => ({
    key: `${30000 + i}/TCP`,
    port: 30000 + i,
    protocol: 'TCP',
    target: { host: '172.31.0.2', port: 8080 },
    uid: l.uid,
    ready: l.ready,
  })),
});

describe('endpointKeys', () => {
  it('lists remote endpoints by address:port and only ready local endpoint ports by uid', () => {
    expect(
      [
        ...endpointKeys(
          table(
            ['10.0.0.1:30001'],
            [
              { uid: 'a', ready: true },
              { uid: 'b', ready: false },
            ],
          ),
        ),
      ].sort(),
    ).toEqual(['10.0.0.1:30001', 'uid:a']);
  });
});

describe('TimingDataPlane', () => {
  it('keeps the time an endpoint appeared, forgets it when it goes, and answers for the earliest of several keys', async () => {
    let now = 100;
    const dp = new TimingDataPlane(() => now);
    await dp.apply(table(['h:1']));
    now = 200;
    await dp.apply(table(['h:1', 'h:2']));
    expect(dp.seen(['h:2'], 150)).toBe(200);
    expect(dp.seen(['h:1'], 150)).toBeUndefined(); // appeared before `since`
    expect(dp.seen(['h:2', 'uid:x'], 0)).toBe(200);
    now = 300;
    await dp.apply(table(['h:1'])); // h:2 gone
    expect(dp.seen(['h:2'], 0)).toBeUndefined();
    now = 400;
    await dp.apply(table(['h:1'], [{ uid: 'x', ready: true }]));
    expect(dp.seen(['h:2', 'uid:x'], 0)).toBe(400);
    expect(dp.applies).toBe(4);
    expect(dp.lastApplyAt).toBe(400);
    expect(dp.endpoints).toBe(2);
  });
});

describe('TimingDataPlane with shared listener objects (as ServiceTableCache builds them)', () => {
  it('an unchanged listener object is skipped, and an endpoint that stays in a rebuilt listener keeps the time it appeared', async () => {
    let now = 100;
    const dp = new TimingDataPlane(() => now);
    const a = table(['h:1']).listeners[0]!;
    const b = { ...table(['h:2']).listeners[0]!, key: 'b/80/TCP', service: 'b' };
    await dp.apply({ ...EMPTY_SERVICE_TABLE, listeners: [a, b] });
    now = 200;
    const b2 = { ...b, endpoints: [...b.endpoints, { id: 'h:3', host: 'h', port: 3, local: false }] };
    await dp.apply({ ...EMPTY_SERVICE_TABLE, listeners: [a, b2] });
    expect(dp.seen(['h:1'], 0)).toBe(100);
    expect(dp.seen(['h:2'], 0)).toBe(100);
    expect(dp.seen(['h:3'], 0)).toBe(200);
    expect(dp.endpoints).toBe(3);
    now = 300;
    await dp.apply({ ...EMPTY_SERVICE_TABLE, listeners: [a] });
    expect(dp.seen(['h:2'], 0)).toBeUndefined();
    expect(dp.endpoints).toBe(1);
  });
});
