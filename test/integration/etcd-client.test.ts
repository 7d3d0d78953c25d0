import { afterAll, describe, expect, it } from 'vitest';
import { EtcdClient, prefixEnd, type WatchEvent } from '../../hub/store/etcd/etcd-client.js';
import { Election } from '../../hub/store/etcd/election.js';
import { systemClock } from '../../protocol/clock.js';
import { OrchardError } from '../../protocol/errors.js';
import { useEtcdCluster } from '../helpers/etcd-suite.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/** The etcd client and election (issue 19) against real etcd members (Debian's etcd-server). */

const waitFor = async (what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('etcd client on one real member', () => {
  const cluster = useEtcdCluster();

  it('puts, gets, ranges a prefix and deletes, with revisions', async () => {
    const r1 = await cluster.client.put('/t/a', 'one');
    const r2 = await cluster.client.put('/t/b', Buffer.from([0, 1, 255]));
    await cluster.client.put('/u/c', 'other prefix');
    expect(r2).toBeGreaterThan(r1);
    const a = await cluster.client.get('/t/a');
    expect(a?.value.toString()).toBe('one');
    expect(a?.createRevision).toBe(r1);
    expect(a?.version).toBe(1);
    const all = await cluster.client.range('/t/', { prefix: true });
    expect(all.kvs.map((k) => k.key)).toEqual(['/t/a', '/t/b']);
    expect([...all.kvs[1]!.value]).toEqual([0, 1, 255]);
    expect(all.count).toBe(2);
    await cluster.client.delete('/t/', { prefix: true });
    expect((await cluster.client.range('/t/', { prefix: true })).kvs).toEqual([]);
    expect(await cluster.client.get('/u/c')).toBeDefined();
    expect(await cluster.client.get('/missing')).toBeUndefined();
  });

  it('runs a transaction only when its compares hold', async () => {
    const rev = await cluster.client.put('/cas', 'v1');
    const kv = await cluster.client.get('/cas');
    const ok = await cluster.client.txn([{ key: '/cas', target: 'MOD', modRevision: kv!.modRevision }], [{ put: { key: '/cas', value: 'v2' } }]);
    expect(ok.succeeded).toBe(true);
    expect(ok.revision).toBeGreaterThan(rev);
    const stale = await cluster.client.txn(
      [{ key: '/cas', target: 'MOD', modRevision: kv!.modRevision }],
      [{ put: { key: '/cas', value: 'v3' } }],
      [{ range: { key: '/cas' } }],
    );
    expect(stale.succeeded).toBe(false);
    expect(stale.ranges[0]?.kvs[0]?.value.toString()).toBe('v2');
    const create = await cluster.client.txn([{ key: '/fresh', target: 'CREATE', createRevision: 0 }], [{ put: { key: '/fresh', value: 'x' } }]);
    expect(create.succeeded).toBe(true);
    const again = await cluster.client.txn([{ key: '/fresh', target: 'CREATE', createRevision: 0 }], [{ put: { key: '/fresh', value: 'y' } }]);
    expect(again.succeeded).toBe(false);
    expect((await cluster.client.get('/fresh'))?.value.toString()).toBe('x');
  });

  it('watches a prefix in revision order and replays from a start revision', async () => {
    const seen: WatchEvent[] = [];
    const ended: OrchardError[] = [];
    const w = cluster.client.watch(
      '/w/',
      { prefix: true },
      (ev) => seen.push(...ev),
      (e) => ended.push(e),
    );
    await w.ready;
    const first = await cluster.client.put('/w/1', 'a');
    await cluster.client.put('/w/2', 'b');
    await cluster.client.delete('/w/1');
    await cluster.client.put('/elsewhere', 'not watched');
    await waitFor('3 watch events', () => seen.length >= 3);
    expect(seen.map((e) => `${e.type} ${e.kv.key}`)).toEqual(['PUT /w/1', 'PUT /w/2', 'DELETE /w/1']);
    w.cancel();
    const replay: WatchEvent[] = [];
    const w2 = cluster.client.watch(
      '/w/',
      { prefix: true, startRevision: first },
      (ev) => replay.push(...ev),
      () => undefined,
    );
    await waitFor('replayed events', () => replay.length >= 3);
    expect(replay.map((e) => `${e.type} ${e.kv.key}`)).toEqual(['PUT /w/1', 'PUT /w/2', 'DELETE /w/1']);
    w2.cancel();
    expect(ended).toEqual([]);
  });

  it('leases: keys die with a revoked lease, and keep-alive then answers 0', async () => {
    const lease = await cluster.client.leaseGrant(5);
    expect(lease.ttl).toBe(5);
    await cluster.client.put('/leased', 'x', { lease: lease.id });
    expect(await cluster.client.leaseKeepAlive(lease.id)).toBe(5);
    expect((await cluster.client.get('/leased'))?.lease).toBe(lease.id);
    expect(lease.id).toMatch(/^\d+$/);
    await cluster.client.leaseRevoke(lease.id);
    expect(await cluster.client.get('/leased')).toBeUndefined();
    expect(await cluster.client.leaseKeepAlive(lease.id)).toBe(0);
  });

  it('takes a snapshot and reports status', async () => {
    const chunks: Buffer[] = [];
    await cluster.client.snapshot((c) => chunks.push(c));
    const total = chunks.reduce((n, c) => n + c.length, 0);
    expect(total).toBeGreaterThan(1000);
    const s = await cluster.client.status();
    expect(s.version).toMatch(/^3\./);
    expect(s.revision).toBeGreaterThan(0);
  });

  it('prefixEnd is the first key after the prefix', () => {
    expect(prefixEnd('/a/').toString()).toBe('/a0');
    expect([...prefixEnd('\u00ff')]).toEqual([0xc3, 0xc0]);
  });

  it('gives a clear ERR_STORE when no endpoint answers', async () => {
    const dead = new EtcdClient({ endpoints: ['http://127.0.0.1:1'], timeoutMs: 500 });
    await expect(dead.get('/x')).rejects.toMatchObject({ code: 'ERR_STORE', message: expect.stringMatching(/no endpoint answered/) });
    dead.close();
  });
});

describe('election with fencing on one real member', () => {
  // The suite's own client goes unused: each candidate has its own (closed below, before etcd).
  const cluster = useEtcdCluster();
  const clients: EtcdClient[] = [];
  const proxies: TcpProxy[] = [];
  afterAll(async () => {
    for (const c of clients) c.close();
    for (const p of proxies) await p.close();
  });

  const candidate = (id: string, endpoint: string, log: string[]) => {
    const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 1_000 });
    clients.push(client);
    const e = new Election({
      client,
      key: '/orchard/leader',
      id,
      ttlSeconds: 2,
      clock: systemClock,
      onElected: (epoch) => log.push(`${id} elected ${epoch}`),
      onLost: (why) => log.push(`${id} lost: ${why}`),
    });
    return { client, e };
  };

  it('elects one leader, hands over on stop with a larger epoch, and refuses the old leader’s fenced writes', async () => {
    const log: string[] = [];
    const a = candidate('hub-a', cluster.etcd.endpoints[0]!, log);
    a.e.start();
    await waitFor('a leads', () => a.e.status === 'leader');
    const b = candidate('hub-b', cluster.etcd.endpoints[0]!, log);
    b.e.start();
    await new Promise((r) => setTimeout(r, 300));
    expect(b.e.status).toBe('campaigning');
    expect(await b.e.leader()).toEqual({ id: 'hub-a', epoch: a.e.epoch });
    const epochA = a.e.epoch;
    const fenceA = a.e.fence();
    expect((await a.client.txn([fenceA], [{ put: { key: '/state', value: 'from a' } }])).succeeded).toBe(true);

    await a.e.stop();
    await waitFor('b leads', () => b.e.status === 'leader');
    expect(b.e.epoch).toBeGreaterThan(epochA);
    expect(() => a.e.fence()).toThrow(/not the leader/);
    // A write fenced with a's old epoch (as a paused leader would still send) is refused by etcd.
    const late = await a.client.txn([fenceA], [{ put: { key: '/state', value: 'late a' } }]);
    expect(late.succeeded).toBe(false);
    expect((await a.client.get('/state'))?.value.toString()).toBe('from a');
    expect(log).toEqual([`hub-a elected ${epochA}`, 'hub-a lost: stopped', `hub-b elected ${b.e.epoch}`]);
    await b.e.stop();
  });

  it('a keep-alive that fails slowly is tried again at once, so one slow answer does not end the leadership', async () => {
    const log: string[] = [];
    const client = new EtcdClient({ endpoints: [cluster.etcd.endpoints[0]!], timeoutMs: 1_000 });
    clients.push(client);
    // The first keep-alive after the election hangs 2.5 s and fails (as one timing out on a busy
    // etcd would). TTL 6 s: sent at 2 s, failed at 4.5 s; a retry a third of the TTL later (6.5 s)
    // would come after the local deadline (6 s from the grant); 500 ms later it is in time.
    const real = client.leaseKeepAlive.bind(client);
    let calls = 0;
    client.leaseKeepAlive = async (id: string) => {
      if (++calls === 1) {
        await new Promise((r) => setTimeout(r, 2_500));
        throw new OrchardError('ERR_STORE', 'etcd: timed out');
      }
      return real(id);
    };
    const e = new Election({
      client,
      key: '/orchard/slow-keepalive',
      id: 'hub-s',
      ttlSeconds: 6,
      clock: systemClock,
      onElected: (epoch) => log.push(`elected ${epoch}`),
      onLost: (why) => log.push(`lost: ${why}`),
    });
    e.start();
    await waitFor('s leads', () => e.status === 'leader');
    await new Promise((r) => setTimeout(r, 8_000));
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(e.status).toBe('leader');
    expect(log.filter((l) => l.startsWith('lost'))).toEqual([]);
    await e.stop();
  }, 20_000);

  it('a partitioned leader steps down by its own deadline, another is elected, and its writes stay fenced after the heal', async () => {
    const log: string[] = [];
    const [host, port] = [new URL(cluster.etcd.endpoints[0]!).hostname, Number(new URL(cluster.etcd.endpoints[0]!).port)];
    const proxy = await TcpProxy.start({ host, port });
    proxies.push(proxy);
    const a = candidate('hub-a', `http://127.0.0.1:${proxy.port}`, log);
    a.e.start();
    await waitFor('a leads', () => a.e.status === 'leader');
    const epochA = a.e.epoch;
    const fenceA = a.e.fence();
    const b = candidate('hub-b', cluster.etcd.endpoints[0]!, log);
    b.e.start();

    const cutAt = Date.now();
    await proxy.cut();
    await waitFor('a steps down', () => a.e.status !== 'leader', 5_000);
    const stepDown = Date.now() - cutAt;
    await waitFor('b leads', () => b.e.status === 'leader', 10_000);
    const takeover = Date.now() - cutAt;
    // a stops acting within its TTL (2 s) of the last renewal; b can only win after the lease expired.
    expect(stepDown).toBeLessThanOrEqual(2_500);
    expect(log.indexOf('hub-a lost: lease not renewed in time')).toBeLessThan(log.findIndex((l) => l.startsWith('hub-b elected')));
    expect(takeover).toBeGreaterThanOrEqual(stepDown);
    expect(b.e.epoch).toBeGreaterThan(epochA);

    await proxy.restore();
    const late = await a.client.txn([fenceA], [{ put: { key: '/state2', value: 'late a' } }]);
    expect(late.succeeded).toBe(false);
    expect(await a.client.get('/state2')).toBeUndefined();
    await a.e.stop();
    await b.e.stop();
  }, 20_000);
});

describe('etcd client on three real members', () => {
  const cluster = useEtcdCluster({ size: 3, clientTimeoutMs: 1_500, startTimeoutMs: 40_000 });

  it('keeps working with one member killed, refuses writes without quorum, and resumes when it returns', async () => {
    await cluster.client.put('/q', '1');
    cluster.etcd.kill(0); // the first endpoint: the client must move on
    await cluster.client.put('/q', '2');
    expect((await cluster.client.get('/q'))?.value.toString()).toBe('2');
    cluster.etcd.kill(1);
    await expect(cluster.client.put('/q', '3')).rejects.toBeInstanceOf(OrchardError);
    cluster.etcd.restart(1);
    await cluster.etcd.waitHealthy(1);
    await waitFor('writes again', async () => {
      try {
        await cluster.client.put('/q', '4');
        return true;
      } catch {
        return false;
      }
    });
    expect((await cluster.client.get('/q'))?.value.toString()).toBe('4');
  }, 40_000);
});
