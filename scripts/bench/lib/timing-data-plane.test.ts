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
