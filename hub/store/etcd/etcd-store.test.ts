import { describe, expect, it } from 'vitest';
import { OrchardError } from '../../../protocol/errors.js';
import type { Compare, EtcdClient, RangeResult, TxnOp, TxnResult } from './etcd-client.js';
import { EtcdStore } from './etcd-store.js';

/**
 * EtcdStore without an etcd: what it refuses before sending (the real-etcd suite is
 * test/integration/etcd-store.test.ts).
 */

/** An empty etcd that takes every transaction and records it. */
function fakeEtcd(): { client: EtcdClient; txns: TxnOp[][] } {
  const txns: TxnOp[][] = [];
  let revision = 1;
  const fake = {
    range: async (): Promise<RangeResult> => ({ revision, kvs: [], count: 0, more: false }),
    txn: async (_compare: readonly Compare[], success: readonly TxnOp[]): Promise<TxnResult> => {
      txns.push([...success]);
      return { succeeded: true, revision: ++revision, ranges: [] };
    },
  };
  // Only range and txn are reached by open, putRaw and the flush.
  return { client: fake as unknown as EtcdClient, txns };
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
    expect(txns.flat()).toEqual([{ put: { key: '/g/bootstrap/secrets.key', value: 'small' } }]);
    store.close();
  });
});
