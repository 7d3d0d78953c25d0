import { describe, expect, it } from 'vitest';
import { OrchardError } from '../../../protocol/errors.js';
import type { Compare, EtcdClient, RangeResult, TxnOp, TxnResult } from './etcd-client.js';
import { EtcdStore } from './etcd-store.js';

/**
 * EtcdStore without an etcd: what it refuses before sending (the real-etcd suite is
 * test/integration/etcd-store.test.ts).
 */

/** An empty etcd that takes every transaction and records it; `down` makes each one fail. */
function fakeEtcd(): { client: EtcdClient; txns: TxnOp[][]; down: { value: boolean } } {
  const txns: TxnOp[][] = [];
  const down = { value: false };
  let revision = 1;
  const fake = {
    range: async (): Promise<RangeResult> => ({ revision, kvs: [], count: 0, more: false }),
    txn: async (_compare: readonly Compare[], success: readonly TxnOp[]): Promise<TxnResult> => {
      if (down.value) throw new OrchardError('ERR_STORE', 'etcd: no endpoint answered');
      txns.push([...success]);
      return { succeeded: true, revision: ++revision, ranges: [] };
    },
  };
  // Only range and txn are reached by open, putRaw and the flush.
  return { client: fake as unknown as EtcdClient, txns, down };
}

/** What the store wrote after open (which pads a missing meta/revision: see EtcdStore.open). */
function written(txns: TxnOp[][]): TxnOp[] {
  return txns.flat().filter((o) => !('put' in o && o.put.key.endsWith('/meta/revision')));
}

describe('EtcdStore.putRaw', () => {
  it('refuses a value larger than one etcd request before sending it, so the writes queued behind it still flow (review of 2026-12-02)', async () => {
    const { client, txns } = fakeEtcd();
    const store = await EtcdStore.open({ client, prefix: '/g/', maxBytesPerTxn: 4_096, compactEveryMs: 0 });
    const err = (() => {
      try {
        store.putRaw('/g/bootstrap/auth.json', 'x'.repeat(5_000));
        return undefined;
      } catch (e) {
        return e;
      }
    })();
    expect(OrchardError.is(err, 'ERR_PAYLOAD_TOO_LARGE')).toBe(true);
    expect((err as OrchardError).message).toMatch(/\/g\/bootstrap\/auth\.json would be 5022 bytes in etcd; one etcd request takes at most 4096/);
    store.putRaw('/g/bootstrap/secrets.key', 'small');
    await store.sync(1_000);
    expect(written(txns)).toEqual([{ put: { key: '/g/bootstrap/secrets.key', value: 'small' } }]);
    store.close();
  });
});

describe('EtcdStore.writesFailing (/healthz degraded)', () => {
  it('is undefined while etcd takes writes, says since when and why while every flush fails, and clears after the next success', async () => {
    const { client, txns, down } = fakeEtcd();
    const errors: unknown[] = [];
    const store = await EtcdStore.open({ client, prefix: '/g/', compactEveryMs: 0, onFlushError: (e) => errors.push(e) });
    expect(store.writesFailing).toBeUndefined();
    down.value = true;
    const before = Date.now();
    store.putRaw('/g/bootstrap/secrets.key', 'a');
    await expect.poll(() => errors.length).toBeGreaterThanOrEqual(2); // retried with back-off
    const f = store.writesFailing;
    expect(f).toMatchObject({ error: 'etcd: no endpoint answered', unflushed: 1 });
    expect(f!.since).toBeGreaterThanOrEqual(before);
    // The first failure's time is kept across retries.
    await expect.poll(() => errors.length).toBeGreaterThanOrEqual(3);
    expect(store.writesFailing!.since).toBe(f!.since);
    down.value = false;
    await store.sync(5_000);
    expect(store.writesFailing).toBeUndefined();
    expect(written(txns)).toEqual([{ put: { key: '/g/bootstrap/secrets.key', value: 'a' } }]);
    store.close();
  });
});
