import { describe, expect, it } from 'vitest';
import type { Compare } from '../../hub/store/etcd/etcd-client.js';
import { EPOCH_RESTORE_BUMP, backupMarkerPrefix, epochBaseKey, markBackup, settleEpochBase, unmarkBackup } from '../../hub/store/etcd/epoch-base.js';
import { OrchardError } from '../../protocol/errors.js';
import { useEtcdCluster } from '../helpers/etcd-suite.js';

/**
 * The epoch base against a real etcd member (hub/store/etcd/epoch-base.ts): a keyspace holding a
 * backup marker (one restored from a backup's snapshot) makes the next leader raise its epochs once;
 * a backup whose marker a leader took meanwhile is refused, since its snapshot may lack the marker.
 */

const cluster = useEtcdCluster();
let seq = 0;

/** A fresh prefix and a leader key in it; the fence is that key's create revision, as the election's. */
async function group(): Promise<{ prefix: string; fence: () => Compare }> {
  const prefix = `/epoch-${++seq}/`;
  const createRevision = await cluster.client.put(`${prefix}leader`, 'hub-a');
  return { prefix, fence: () => ({ key: `${prefix}leader`, target: 'CREATE', createRevision }) };
}

describe('epoch base', () => {
  it('is 0 and untouched in a group never restored', async () => {
    const g = await group();
    expect(await settleEpochBase(cluster.client, g.prefix, g.fence)).toEqual({ base: 0 });
    expect(await cluster.client.get(epochBaseKey(g.prefix))).toBeUndefined();
  });

  it('a marker (a restored snapshot) raises it once, in a fenced write that also deletes the markers; each later restore raises it again', async () => {
    const g = await group();
    await cluster.client.put(`${backupMarkerPrefix(g.prefix)}one`, 'x');
    await cluster.client.put(`${backupMarkerPrefix(g.prefix)}two`, 'x');
    expect(await settleEpochBase(cluster.client, g.prefix, g.fence)).toEqual({ base: EPOCH_RESTORE_BUMP, raisedFrom: 0 });
    expect((await cluster.client.range(backupMarkerPrefix(g.prefix), { prefix: true })).kvs).toEqual([]);
    // The next leader (no marker now) keeps it.
    expect(await settleEpochBase(cluster.client, g.prefix, g.fence)).toEqual({ base: EPOCH_RESTORE_BUMP });
    await cluster.client.put(`${backupMarkerPrefix(g.prefix)}three`, 'x');
    expect((await settleEpochBase(cluster.client, g.prefix, g.fence)).base).toBe(2 * EPOCH_RESTORE_BUMP);
  });

  it('a hub that no longer holds the fence raises nothing and is told it does not lead', async () => {
    const g = await group();
    await cluster.client.put(`${backupMarkerPrefix(g.prefix)}m`, 'x');
    await cluster.client.delete(`${g.prefix}leader`);
    await cluster.client.put(`${g.prefix}leader`, 'hub-b'); // another leader: a newer create revision
    const err = await settleEpochBase(cluster.client, g.prefix, g.fence).catch((e: unknown) => e);
    expect(OrchardError.is(err) && err.code).toBe('ERR_NOT_LEADER');
    expect(await cluster.client.get(epochBaseKey(g.prefix))).toBeUndefined();
  });

  it('a backup leaves no marker behind; one whose marker a new leader took meanwhile is refused', async () => {
    const g = await group();
    const marker = await markBackup(cluster.client, g.prefix, new Date());
    expect(marker.startsWith(backupMarkerPrefix(g.prefix))).toBe(true);
    await unmarkBackup(cluster.client, marker);
    expect((await cluster.client.range(backupMarkerPrefix(g.prefix), { prefix: true })).kvs).toEqual([]);

    const raced = await markBackup(cluster.client, g.prefix, new Date());
    await settleEpochBase(cluster.client, g.prefix, g.fence); // a leader elected during the backup
    const err = await unmarkBackup(cluster.client, raced).catch((e: unknown) => e);
    expect(OrchardError.is(err) && err.code).toBe('ERR_CONFLICT');
  });
});
