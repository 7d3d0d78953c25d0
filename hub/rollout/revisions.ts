import { API_VERSION } from '../../protocol/manifest.js';
import type { Deployment, RevisionObject } from '../../protocol/objects.js';
import { shortHash } from '../hash.js';
import type { Store } from '../store/store.js';

/**
 * A Deployment's template history as `Revision` objects (Kubernetes keeps it in ReplicaSets
 * or ControllerRevisions): one per distinct template, named `<deployment>-<templateHash>`,
 * numbered in the order they became the update revision. Rolling back to an old template
 * re-activates its Revision with the next number, as `kubectl rollout undo` does.
 */

/** On the Deployment: why this revision was made (like kubernetes.io/change-cause). */
export const CHANGE_CAUSE_ANNOTATION = 'orchard.dev/change-cause';
/** On the pod template: set by `rollout restart`, so the template (and its hash) changes. */
export const RESTARTED_AT_ANNOTATION = 'orchard.dev/restartedAt';
/** On the Deployment: the template hash whose canary was promoted. */
export const PROMOTED_ANNOTATION = 'orchard.dev/promoted-revision';

export function templateHashOf(template: Deployment['spec']['template']): string {
  return shortHash(template);
}

export function revisionName(deployment: string, hash: string): string {
  return `${deployment}-${hash}`;
}

/** Oldest first. */
export function listRevisions(store: Store, deployment: string): RevisionObject[] {
  return store.list('Revision', { ownerName: deployment }).sort((a, b) => a.revision - b.revision);
}

export function imagesOf(template: Deployment['spec']['template']): string[] {
  return [...new Set(template.spec.containers.map((c) => c.image))];
}

/**
 * The Revision of the deployment's template: created when new, given the next number when an
 * older one becomes the update revision again. Idempotent (no write when it already is the newest).
 */
export function ensureRevision(store: Store, d: Deployment, hash: string): RevisionObject {
  const name = revisionName(d.metadata.name, hash);
  const all = listRevisions(store, d.metadata.name);
  const top = all[all.length - 1];
  const existing = store.get('Revision', name);
  if (existing) {
    if (top === undefined || top.metadata.name === name) return existing;
    const next = structuredClone(existing) as RevisionObject;
    next.revision = top.revision + 1;
    return store.update(next);
  }
  const cause = d.metadata.annotations[CHANGE_CAUSE_ANNOTATION];
  const rev: Parameters<Store['create']>[0] & { kind: 'Revision' } = {
    apiVersion: API_VERSION,
    kind: 'Revision',
    metadata: { name, labels: {}, annotations: {}, ownerName: d.metadata.name },
    revision: (top?.revision ?? 0) + 1,
    templateHash: hash,
    template: structuredClone(d.spec.template) as RevisionObject['template'],
    images: imagesOf(d.spec.template),
  };
  if (cause !== undefined && cause !== '') rev.changeCause = cause;
  return store.create(rev);
}

/** Deletes the oldest revisions beyond revisionHistoryLimit, never one in `protect` (update, stable, or with pods). */
export function pruneRevisions(store: Store, d: Deployment, protect: ReadonlySet<string>): number {
  const all = listRevisions(store, d.metadata.name);
  const prunable = all.filter((r) => !protect.has(r.templateHash));
  const excess = all.length - protect.size - d.spec.revisionHistoryLimit;
  let n = 0;
  for (const r of prunable) {
    if (n >= excess) break;
    store.delete('Revision', r.metadata.name);
    n++;
  }
  return n;
}

export function deleteRevisions(store: Store, deployment: string): void {
  for (const r of store.list('Revision', { ownerName: deployment })) store.delete('Revision', r.metadata.name);
}

/**
 * Images a node must keep for each deployment: its update revision, its stable revision and the
 * revision before the update one — so `rollout undo` (or an automatic rollback) needs no network.
 */
export function keptImages(store: Store, d: Deployment): string[] {
  const all = listRevisions(store, d.metadata.name);
  const update = d.status.updateRevision ?? templateHashOf(d.spec.template);
  const out = new Set<string>(imagesOf(d.spec.template));
  const idx = all.findIndex((r) => r.templateHash === update);
  const previous = idx > 0 ? all[idx - 1] : idx < 0 ? all[all.length - 1] : undefined;
  for (const r of all) {
    if (r.templateHash === d.status.currentRevision || r === previous) for (const i of r.images) out.add(i);
  }
  return [...out].sort();
}

/** keptImages() of every deployment with a pod among `pods` (one node's), sorted. */
export function nodeKeepImages(store: Store, pods: ReadonlyArray<{ metadata: { ownerName?: string | undefined } }>): string[] {
  const out = new Set<string>();
  for (const owner of new Set(pods.map((p) => p.metadata.ownerName))) {
    if (owner === undefined) continue;
    const d = store.get('Deployment', owner);
    if (d) for (const i of keptImages(store, d)) out.add(i);
  }
  return [...out].sort();
}
