import { describe, expect, it } from 'vitest';
import type { EtcdClient, KeyValue, RangeResult, TxnOp } from '../../hub/store/etcd/etcd-client.js';
import { prefixEnd } from '../../hub/store/etcd/etcd-client.js';
import { rangeAll } from '../../hub/store/etcd/etcd-store.js';
import { useEtcdCluster } from '../helpers/etcd-suite.js';
import { FakeEtcd } from '../helpers/fake-etcd.js';

/**
 * test/helpers/fake-etcd.ts answers ranges itself (limit, more, count, a past revision, rangeEnd,
 * keys only): the unit tests of EtcdStore and StoreMirror trust it to page as etcd does. Here the
 * same writes go to a fresh real member (Debian's etcd 3.4) and to the fake, then the same ranges,
 * and the store's own paging (rangeAll) with small pages, must answer alike. Revisions are compared
 * from each side's start revision (both 1 on a fresh keyspace).
 */

type Client = Pick<EtcdClient, 'range' | 'txn' | 'put' | 'delete'>;

interface Side {
  name: string;
  client: Client;
  /** The revision before the first write. */
  base: number;
}

const rel = (s: Side, rev: number): number => rev - s.base;
const kvView = (s: Side, kv: KeyValue) => ({
  key: kv.key,
  value: kv.value.toString('hex'),
  createRevision: rel(s, kv.createRevision),
  modRevision: rel(s, kv.modRevision),
  version: kv.version,
  lease: kv.lease,
});
const rangeView = (s: Side, r: RangeResult) => ({ revision: rel(s, r.revision), count: r.count, more: r.more, kvs: r.kvs.map((kv) => kvView(s, kv)) });

describe('the fake etcd ranges and pages as a real etcd member does', () => {
  const cluster = useEtcdCluster();
  const fake = new FakeEtcd();
  let sides: Side[] = [];
  /** Revisions (relative) after the first batch and after the last write. */
  let firstBatch = 0;

  const both = async <T>(f: (s: Side) => Promise<T>): Promise<T[]> => {
    const out: T[] = [];
    for (const s of sides) out.push(await f(s));
    return out;
  };

  it('takes the same writes at the same revisions', async () => {
    const start = (await cluster.client.range('/')).revision;
    sides = [
      { name: 'etcd', client: cluster.client, base: start },
      { name: 'fake', client: fake as unknown as Client, base: fake.revision },
    ];
    const keys = [...Array.from({ length: 23 }, (_, i) => `/p/k${String(i).padStart(2, '0')}`), '/p/\u00e9t\u00e9', '/p/z\u00ff', '/p', '/p0', '/o/x', '/q/y'];
    const revs = await both(async (s) => {
      // One transaction of several puts: one revision for all of them.
      await s.client.txn(
        [],
        keys.slice(0, 10).map((key): TxnOp => ({ put: { key, value: `v1 ${key}` } })),
      );
      for (const key of keys.slice(10)) await s.client.put(key, Buffer.from([0, 1, 2, 255]));
      return rel(s, (await s.client.range('/p/')).revision);
    });
    expect(revs[0]).toBe(revs[1]);
    firstBatch = revs[0]!;
    await both(async (s) => {
      await s.client.put('/p/k03', 'v2');
      await s.client.put('/p/k03', 'v3');
      await s.client.delete('/p/k05');
      await s.client.delete('/p/k1', { prefix: true });
      await s.client.put('/p/k12', 'back');
      await s.client.txn([], [{ put: { key: '/p/k20', value: 'v2' } }, { delete: { key: '/p/k21' } }]);
    });
  });

  it('answers the same ranges: one key, a prefix, limits (more, count), rangeEnd, from a key on, a past revision, keys only, inside a txn', async () => {
    const queries: Array<[string, Parameters<EtcdClient['range']>[1]?]> = [
      ['/p/k03'],
      ['/p/k05'],
      ['/missing'],
      ['/p'],
      ['/p/', { prefix: true }],
      ['/p/', { prefix: true, limit: 1 }],
      ['/p/', { prefix: true, limit: 5 }],
      ['/p/', { prefix: true, limit: 13 }],
      ['/p/', { prefix: true, limit: 100 }],
      ['/p/k04', { rangeEnd: Buffer.from('/p/k15'), limit: 3 }],
      ['/p/k04\u0000', { rangeEnd: prefixEnd('/p/'), limit: 4 }],
      ['/p/k2', { rangeEnd: Buffer.from([0]) }],
      ['/p/k2', { rangeEnd: Buffer.from([0]), limit: 2 }],
      ['/', { prefix: true }],
      ['/p/', { prefix: true, keysOnly: true, limit: 6 }],
    ];
    for (const [key, opts] of queries) {
      const [real, faked] = await both(async (s) => rangeView(s, await s.client.range(key, opts)));
      expect(faked, `range ${JSON.stringify(key)} ${JSON.stringify(opts)}`).toEqual(real);
    }
    // At the revision of the first batch: /p/k03's first value, /p/k05 and /p/k1* still there.
    for (const opts of [{ prefix: true }, { prefix: true, limit: 7 }, { prefix: true, limit: 7, keysOnly: true }]) {
      const [real, faked] = await both(async (s) => rangeView(s, await s.client.range('/p/', { ...opts, revision: s.base + firstBatch })));
      expect(real!.count).toBe(25);
      expect(faked, `range /p/ ${JSON.stringify(opts)} at the first batch`).toEqual(real);
    }
    const [real, faked] = await both(async (s) => {
      // A range after a put of the same transaction sees that put, at the transaction's revision.
      const r = await s.client.txn(
        [],
        [
          { range: { key: '/p/', prefix: true } },
          { put: { key: '/p/k03', value: 'in txn' } },
          { range: { key: '/p/k03' } },
          { range: { key: '/p/', prefix: true } },
        ],
      );
      return { succeeded: r.succeeded, revision: rel(s, r.revision), ranges: r.ranges.map((x) => (x === undefined ? undefined : rangeView(s, x))) };
    });
    expect(faked).toEqual(real);
  });

  it("the store's paging (rangeAll) reads the same keys page by page, now and at a past revision", async () => {
    for (const pageSize of [1, 2, 3, 7, 2000]) {
      for (const at of ['now', 'first batch'] as const) {
        const [real, faked] = await both(async (s) => {
          const revision = at === 'now' ? (await s.client.range('/p/')).revision : s.base + firstBatch;
          return (await rangeAll(s.client, '/p/', revision, undefined, pageSize)).map((kv) => kvView(s, kv));
        });
        expect(faked, `pages of ${pageSize}, ${at}`).toEqual(real);
        expect(real!.length).toBe(at === 'now' ? 14 : 25);
      }
    }
  });
});
