import { API_VERSION } from '../../protocol/manifest.js';
import type { ObservedSetMessage } from '../../protocol/messages.js';
import { persistentVolumeName, type PersistentVolumeObject, type Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import { deepEqual } from '../hash.js';
import type { VolumeBinding } from '../scheduler/volume-pins.js';
import type { Store } from '../store/store.js';

/**
 * Volume records (kind Volume): which node holds each persistent engine volume. Written when
 * the scheduler first binds a pod using the volume (in the same transaction as the binding), so
 * every later pod of the volume is pinned there; status comes from what the node reports in its
 * observed set. Deleting a record (`orchard delete volume NAME`) forgets the binding, not the data.
 */

/** What scheduleWithVolumes needs: volume → node, and whether its owner may start fresh elsewhere. */
export function volumeBindings(store: Pick<Store, 'list' | 'get'>): Map<string, VolumeBinding> {
  const out = new Map<string, VolumeBinding>();
  const fresh = new Map<string, boolean>();
  for (const v of store.list('Volume')) {
    const owner = v.metadata.ownerName;
    let startFresh = false;
    if (owner !== undefined) {
      if (!fresh.has(owner)) fresh.set(owner, store.get('Deployment', owner)?.spec.onNodeLost?.startFresh ?? false);
      startFresh = fresh.get(owner) ?? false;
    }
    out.set(v.metadata.name, { node: v.spec.nodeName, startFresh });
  }
  return out;
}

/** Records (or moves, after a startFresh reschedule) the bindings of `pod`'s persistent volumes to `node`. Call inside the binding transaction. */
export function bindPodVolumes(store: Store, pod: Pod, node: string, now: Date): void {
  const owner = pod.metadata.ownerName ?? pod.metadata.name;
  for (const v of pod.spec.volumes ?? []) {
    if (v.persistent === undefined) continue;
    const name = persistentVolumeName(owner, v);
    const existing = store.get('Volume', name);
    if (!existing) {
      const spec: PersistentVolumeObject['spec'] = { nodeName: node, volume: v.name };
      if (v.persistent.size !== undefined) spec.size = v.persistent.size;
      store.create({
        apiVersion: API_VERSION,
        kind: 'Volume',
        metadata: { name, labels: {}, annotations: {}, ownerName: owner },
        spec,
        status: { pods: [] },
      });
      recordEvent(store, now, {
        kind: 'Volume',
        name,
        type: 'Normal',
        reason: 'Bound',
        message: `persistent volume bound to node ${node} (pods using it are kept there)`,
      });
    } else if (existing.spec.nodeName !== node) {
      const next = structuredClone(existing) as PersistentVolumeObject;
      const from = existing.spec.nodeName;
      next.spec.nodeName = node;
      next.status = { pods: [] };
      store.update(next);
      recordEvent(store, now, {
        kind: 'Volume',
        name,
        type: 'Warning',
        reason: 'StartedFresh',
        message: `node ${from} is lost; ${owner} starts fresh on ${node} (onNodeLost.startFresh); the data on ${from} is not used`,
      });
    }
  }
}

/** Updates Volume status from one node's observed set (usage, pods, presence). Writes only on change. The NodeController hands it every valid set (its onObservedSet). */
export function ingestObservedVolumes(store: Store, m: ObservedSetMessage, now: Date): void {
  if (m.volumes === undefined) return;
  const reported = new Map(m.volumes.map((v) => [v.name, v]));
  store.transaction(() => {
    for (const rec of store.list('Volume')) {
      if (rec.spec.nodeName !== m.node) continue;
      const seen = reported.get(rec.metadata.name);
      const status: PersistentVolumeObject['status'] = { pods: seen ? [...seen.pods].sort() : [], present: seen !== undefined };
      // Round usage to 1 MiB so a growing log file does not rewrite the record every report (SD wear).
      if (seen?.usedBytes !== undefined) status.usedBytes = Math.round(seen.usedBytes / 1048576) * 1048576;
      const { observedAt: _at, ...prev } = rec.status;
      if (deepEqual(prev, status)) continue;
      const next = structuredClone(rec) as PersistentVolumeObject;
      next.status = { ...status, observedAt: now.toISOString() };
      store.update(next);
    }
  });
}
