import { randomBytes } from 'node:crypto';
import { OrchardError } from '../../../protocol/errors.js';
import type { Compare, EtcdClient } from './etcd-client.js';

/**
 * Epochs that survive an etcd snapshot restore (docs/design/ha.md "Epochs", docs/backup.md).
 *
 * A leader's epoch is the election key's create revision plus a base kept in etcd
 * (`<prefix>meta/epoch-base`, 0 until a restore). Revisions only grow in one etcd cluster, but a
 * cluster restored from a snapshot starts again at the snapshot's revision: without the base, its
 * first leaders would have epochs below what agents saw after the backup was taken, and agents
 * would drop every desired set of theirs as from a deposed leader.
 *
 * How a restore is told apart from a live cluster: `orchard hub backup` puts a marker
 * (`<prefix>meta/backup-marker/<id>`) just before it takes the snapshot and deletes it right after.
 * The live cluster holds a marker only during a backup; a restored one holds it for good. A new
 * leader that finds a marker raises the base by `EPOCH_RESTORE_BUMP` and deletes the markers, in
 * one fenced transaction, before it stamps anything with its epoch.
 * - A leader elected while a backup runs sees a marker too: it raises the base needlessly (epochs
 *   only grow, so that is harmless) and deletes the marker. The backup then finds its marker gone,
 *   cannot tell whether its snapshot holds it, and fails, asking to be run again (`unmarkBackup`).
 * - A backup that dies between the two steps leaves its marker: the next leader raises the base
 *   once, needlessly.
 * - Etcd snapshots taken otherwise (etcdctl by hand, an older Orchard) hold no marker. Put one by
 *   hand before starting the hubs (docs/backup.md), or restore with a revision bump (`etcdutl
 *   snapshot restore --bump-revision`, etcd ≥ 3.5.x).
 *
 * The fence (the election's compare) still uses the create revision alone: only what agents and
 * clients see is raised.
 */

/**
 * How far a restore raises epochs: more than the revisions the old cluster can have made after the
 * backup (each etcd transaction is one; a busy hub makes tens per second, so 10^12 lasts for
 * centuries), and small enough for thousands of restores within JavaScript's exact integers (2^53).
 */
export const EPOCH_RESTORE_BUMP = 1_000_000_000_000;

export const epochBaseKey = (prefix: string): string => `${prefix}meta/epoch-base`;
export const backupMarkerPrefix = (prefix: string): string => `${prefix}meta/backup-marker/`;

/** The base as stored: a decimal safe integer, 0 when absent; anything else is treated as 0 (never thrown). */
export function parseEpochBase(value: Buffer | undefined): number {
  if (value === undefined) return 0;
  const n = Number(value.toString('utf8'));
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/**
 * Called by a new leader before it uses its epoch: raises the base when a backup marker says this
 * keyspace was restored from a snapshot. Returns the base to add to the election's create revision.
 * Throws ERR_NOT_LEADER when the fence no longer holds (the caller stops leading).
 */
export async function settleEpochBase(client: EtcdClient, prefix: string, fence: () => Compare): Promise<{ base: number; raisedFrom?: number }> {
  const key = epochBaseKey(prefix);
  const [markers, stored] = await Promise.all([client.range(backupMarkerPrefix(prefix), { prefix: true, keysOnly: true }), client.get(key)]);
  const base = parseEpochBase(stored?.value);
  if (markers.kvs.length === 0) return { base };
  const raised = base + EPOCH_RESTORE_BUMP;
  if (!Number.isSafeInteger(raised)) throw new OrchardError('ERR_STORE', `the epoch base ${base} cannot be raised any further`);
  const unchanged: Compare = stored === undefined ? { key, target: 'CREATE', createRevision: 0 } : { key, target: 'MOD', modRevision: stored.modRevision };
  const r = await client.txn([fence(), unchanged], [{ put: { key, value: String(raised) } }, { delete: { key: backupMarkerPrefix(prefix), prefix: true } }]);
  if (!r.succeeded)
    throw new OrchardError('ERR_NOT_LEADER', 'this hub lost leadership (or another hub moved the epoch base) while raising the epoch after a restore');
  return { base: raised, raisedFrom: base };
}

/** `orchard hub backup`, step 1: puts a marker the snapshot will hold. Returns its key for unmarkBackup. */
export async function markBackup(client: EtcdClient, prefix: string, now: Date): Promise<string> {
  const key = `${backupMarkerPrefix(prefix)}${randomBytes(8).toString('hex')}`;
  await client.put(key, now.toISOString());
  return key;
}

/**
 * `orchard hub backup`, after the snapshot: deletes the marker. A marker already gone was deleted by
 * a leader elected meanwhile, perhaps before the snapshot was taken: then the snapshot may lack it,
 * and a restore of it would not raise epochs. That backup is refused (ERR_CONFLICT): run it again.
 */
export async function unmarkBackup(client: EtcdClient, markerKey: string): Promise<void> {
  const r = await client.txn([{ key: markerKey, target: 'CREATE', result: 'GREATER', createRevision: 0 }], [{ delete: { key: markerKey } }]);
  if (!r.succeeded) {
    throw new OrchardError(
      'ERR_CONFLICT',
      'a hub became leader while the backup ran, so the snapshot may not mark itself as one (a restore of it would not raise leader epochs): run the backup again',
    );
  }
}
