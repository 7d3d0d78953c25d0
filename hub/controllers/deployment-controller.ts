import { API_VERSION } from '../../protocol/manifest.js';
import type { Deployment, DeploymentStatus, Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import { deepEqual, shortHash } from '../hash.js';
import type { Logger } from '../log.js';
import { newPodName, TEMPLATE_HASH_ANNOTATION } from '../operations.js';
import type { Store, WatchEvent } from '../store/store.js';
import { WorkQueue } from './workqueue.js';

export const DEPLOYMENT_LABEL = 'orchard.dev/deployment';

export function templateHash(d: Deployment): string {
  return shortHash(d.spec.template);
}

export function isTerminal(p: Pod): boolean {
  return p.status.phase === 'Succeeded' || p.status.phase === 'Failed';
}

export function isPodReady(p: Pod): boolean {
  return p.status.phase === 'Running' && p.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True');
}

/**
 * Keeps each replicated Deployment's pod count at `spec.replicas` (level-triggered: every run
 * re-reads the deployment and its pods). Pods whose template hash is stale are replaced.
 * Global-mode deployments are kept by the GlobalController.
 */
export class DeploymentController {
  readonly queue: WorkQueue;
  private unwatch: (() => void) | undefined;

  constructor(private readonly deps: { store: Store; log: Logger; now: () => Date }) {
    this.queue = new WorkQueue('deployments', (key) => this.reconcile(key), deps.log);
  }

  start(): void {
    this.unwatch = this.deps.store.watch((ev: WatchEvent) => {
      if (ev.object.kind === 'Deployment') this.queue.add(ev.object.metadata.name);
      else if (ev.object.kind === 'Pod' && ev.object.metadata.ownerName) this.queue.add(ev.object.metadata.ownerName);
    }, ['Deployment', 'Pod']);
    for (const d of this.deps.store.list('Deployment')) this.queue.add(d.metadata.name);
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
  }

  /** Idempotent; never runs concurrently for one key (WorkQueue contract). */
  reconcile(name: string): void {
    const { store, now } = this.deps;
    const d = store.get('Deployment', name);
    const pods = store.list('Pod', { ownerName: name });
    if (!d) {
      // Deleted: its pods go too (Operations.delete removes them at once; this catches leftovers).
      if (pods.length > 0) store.transaction(() => pods.forEach((p) => store.delete('Pod', p.metadata.name)));
      return;
    }
    if (d.spec.mode === 'global') return;
    const hash = templateHash(d);
    store.transaction(() => {
      const active = pods.filter((p) => !isTerminal(p));
      const stale = active.filter((p) => p.metadata.annotations[TEMPLATE_HASH_ANNOTATION] !== hash);
      // Template changed: replace stale pods (Recreate). Rolling strategies build on this.
      for (const p of stale) store.delete('Pod', p.metadata.name);
      // Failed/Succeeded pods of a replicated deployment are replaced, as a ReplicaSet does.
      for (const p of pods.filter(isTerminal)) store.delete('Pod', p.metadata.name);
      const current = active.filter((p) => !stale.includes(p));
      const want = d.spec.replicas;
      if (current.length > want) {
        const victims = [...current].sort(deletionOrder).slice(0, current.length - want);
        for (const p of victims) store.delete('Pod', p.metadata.name);
        recordEvent(store, now(), { kind: 'Deployment', name, type: 'Normal', reason: 'ScaledDown', message: `removed ${victims.length} pod(s) to reach ${want} replicas` });
      } else if (current.length < want) {
        const n = want - current.length;
        for (let i = 0; i < n; i++) store.create(newPod(d, hash));
        recordEvent(store, now(), { kind: 'Deployment', name, type: 'Normal', reason: 'ScaledUp', message: `created ${n} pod(s) to reach ${want} replicas` });
      }
      this.writeStatus(d);
    });
  }

  private writeStatus(d: Deployment): void {
    const { store } = this.deps;
    const pods = store.list('Pod', { ownerName: d.metadata.name }).filter((p) => !isTerminal(p));
    const ready = pods.filter(isPodReady).length;
    const status: DeploymentStatus = {
      observedGeneration: d.metadata.generation,
      replicas: pods.length,
      readyReplicas: ready,
      availableReplicas: ready,
      unscheduledReplicas: pods.filter((p) => !p.spec.nodeName).length,
    };
    const fresh = store.get('Deployment', d.metadata.name);
    if (!fresh || deepEqual(fresh.status, status)) return;
    const next = structuredClone(fresh) as Deployment;
    next.status = status;
    store.update(next);
  }
}

/** Unscheduled first, then not ready, then newest — the cheapest pods to lose. */
function deletionOrder(a: Pod, b: Pod): number {
  const rank = (p: Pod): number => (!p.spec.nodeName ? 0 : !isPodReady(p) ? 1 : 2);
  const r = rank(a) - rank(b);
  if (r !== 0) return r;
  return a.metadata.creationTimestamp < b.metadata.creationTimestamp ? 1 : -1;
}

export function newPod(d: Deployment, hash: string, nodeName?: string): Parameters<Store['create']>[0] & { kind: 'Pod' } {
  const spec = structuredClone(d.spec.template.spec) as Pod['spec'];
  if (nodeName !== undefined) spec.nodeName = nodeName;
  return {
    apiVersion: API_VERSION,
    kind: 'Pod',
    metadata: {
      name: newPodName(d.metadata.name),
      labels: { ...d.spec.template.metadata.labels, [DEPLOYMENT_LABEL]: d.metadata.name },
      annotations: { ...d.spec.template.metadata.annotations, [TEMPLATE_HASH_ANNOTATION]: hash },
      ownerName: d.metadata.name,
    },
    spec,
    status: { phase: 'Pending', conditions: [], containerStatuses: [] },
  };
}
