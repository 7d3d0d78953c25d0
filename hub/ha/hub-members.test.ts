import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/helpers/fake-clock.js';
import { FakeEtcd } from '../../test/helpers/fake-etcd.js';
import { createLogger } from '../log.js';
import type { EtcdClient } from '../store/etcd/etcd-client.js';
import { HubMembers } from './hub-members.js';

const log = createLogger('hub', 'silent');
const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

describe('HubMembers.unreadable', () => {
  it('says since when etcd has answered no read, keeps the first failure time, and clears on the first answer', async () => {
    const etcd = new FakeEtcd();
    await etcd.put('/orchard/leader', 'hub-a');
    const clock = new FakeClock();
    let down = true;
    const range = etcd.range.bind(etcd);
    const client = Object.assign(Object.create(etcd) as FakeEtcd, {
      range: (...a: Parameters<FakeEtcd['range']>) => (down ? Promise.reject(new Error('etcd: no endpoint answered /v3/kv/range')) : range(...a)),
    });
    const m = new HubMembers({ client: client as unknown as EtcdClient, prefix: '/orchard/', clock, log });
    const t0 = clock.now();
    await m.start();
    expect(m.unreadable()).toEqual({ since: t0, error: 'etcd: no endpoint answered /v3/kv/range' });
    expect(m.leader()).toBeUndefined();
    clock.advance(1_000);
    await flush();
    expect(m.unreadable()?.since).toBe(t0);
    down = false;
    clock.advance(1_000);
    await flush();
    expect(m.unreadable()).toBeUndefined();
    expect(m.leader()?.id).toBe('hub-a');
    m.stop();
  });
});
