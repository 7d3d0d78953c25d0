import { systemClock, type Clock, type TimerHandle } from '../../protocol/clock.js';
import type { Pod } from '../../protocol/objects.js';
import type { Logger } from '../log.js';
import { isTerminal, TEMPLATE_HASH_ANNOTATION, templateHash } from '../objects/pod.js';
import { deleteRevisions } from '../rollout/revisions.js';
import { reconcileRollout } from '../rollout/rollout-reconciler.js';
import type { Store, WatchEvent } from '../store/store.js';
import { configHash, referencesConfig } from '../secrets/config-refs.js';
import { WorkQueue } from './workqueue.js';

/**
 * Whether a pod write changed only what the planner reads as progress (conditions, container
 * states, restart counts …): same spec (generation), owner, template hash and deletion mark,
 * and not into or out of a terminal phase (a failed pod is replaced at once).
 */
export function statusOnly(old: Pod, next: Pod): boolean {
  return (
    old.metadata.generation === next.metadata.generation &&
    old.metadata.ownerName === next.metadata.ownerName &&
    old.metadata.deletionTimestamp === next.metadata.deletionTimestamp &&
    old.metadata.annotations[TEMPLATE_HASH_ANNOTATION] === next.metadata.annotations[TEMPLATE_HASH_ANNOTATION] &&
    isTerminal(old) === isTerminal(next)
  );
}

/**
 * Keeps each replicated Deployment's pod count at `spec.replicas` (level-triggered: every run
 * re-reads the deployment and its pods). Pods whose template hash is stale are replaced per the
 * deployment's strategy (hub/rollout/: RollingUpdate, Recreate, canary; deadline and rollback).
 * Global-mode deployments are kept by the GlobalController.
 */
export class DeploymentController {
  readonly queue: WorkQueue;
  private unwatch: (() => void) | undefined;
  /** Last status write per deployment, for RolloutContext.statusThrottle. */
  private readonly statusWrites = new Map<string, number>();
  /** clock.now() at the start of each deployment's last reconcile, for status coalescing. */
  private readonly lastRun = new Map<string, number>();
  /** Deployments whose status-only pod changes wait for a coalesced reconcile. */
  private readonly deferred = new Map<string, TimerHandle>();
  private readonly clock: Clock;

  /**
   * `statusMinIntervalMs`: space counts-only status writes per deployment (see RolloutContext.statusThrottle); unset = write every change.
   * `statusReconcileIntervalMs`: reconciles caused only by pod *status* changes run at most once per this interval per deployment
   * (spec, owner, template-hash, deletion and phase-class changes, pod adds and deletes still reconcile at once); unset = every change.
   */
  constructor(
    private readonly deps: { store: Store; log: Logger; now: () => Date; clock?: Clock; statusMinIntervalMs?: number; statusReconcileIntervalMs?: number },
  ) {
    this.clock = deps.clock ?? systemClock;
    this.queue = new WorkQueue('deployments', (key) => this.reconcile(key), deps.log, { clock: this.clock });
  }

  start(): void {
    this.unwatch = this.deps.store.watch(
      (ev: WatchEvent) => {
        if (ev.object.kind === 'Deployment') this.queue.add(ev.object.metadata.name);
        else if (ev.object.kind === 'Pod') this.onPod(ev.object, ev.type === 'MODIFIED' && ev.old?.kind === 'Pod' ? ev.old : undefined);
        else if (ev.object.kind === 'ConfigMap' || ev.object.kind === 'Secret') {
          // A changed config rolls every deployment that references it (its template hash changes).
          const { kind, metadata } = ev.object;
          for (const d of this.deps.store.list('Deployment')) if (referencesConfig(d.spec.template.spec, kind, metadata.name)) this.queue.add(d.metadata.name);
        }
      },
      ['Deployment', 'Pod', 'ConfigMap', 'Secret'],
    );
    for (const d of this.deps.store.list('Deployment')) this.queue.add(d.metadata.name);
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
    for (const t of this.deferred.values()) this.clock.clearTimeout(t);
    this.deferred.clear();
  }

  /**
   * A pod changed (`old` for MODIFIED). During a big deploy most pod writes are agents reporting
   * status (pulling, running, ready) and each re-ran the owner's whole rollout pass for its ~100
   * pods: 35 s of a 132 s profile at 10,000 nodes. Those are coalesced per deployment (leading
   * edge at once, then at most one per interval, the last change always followed by a pass);
   * anything that can change what the planner creates or deletes goes through at once.
   */
  private onPod(pod: Pod, old: Pod | undefined): void {
    const owner = pod.metadata.ownerName;
    const oldOwner = old?.metadata.ownerName;
    if (oldOwner !== undefined && oldOwner !== owner) this.queue.add(oldOwner);
    if (owner === undefined || owner === '') return;
    if (old === undefined || !statusOnly(old, pod)) this.queue.add(owner);
    else this.coalesce(owner);
  }

  private coalesce(name: string): void {
    const interval = this.deps.statusReconcileIntervalMs;
    if (interval === undefined || interval <= 0) {
      this.queue.add(name);
      return;
    }
    // Already waiting: that pass starts after this change, so it sees it.
    if (this.deferred.has(name)) return;
    // Capped at the interval: a wall clock stepped back (NTP on a Pi without an RTC) must not park a pass.
    const wait = Math.min(interval, (this.lastRun.get(name) ?? -Infinity) + interval - this.clock.now());
    if (wait <= 0) {
      this.queue.add(name);
      return;
    }
    // Our own timer, not queue.addAfter: the queue keeps one timer per key, and a requeue the
    // pass asks for (e.g. 30 s for a progress deadline) would otherwise replace this one.
    const t = this.clock.setTimeout(() => {
      this.deferred.delete(name);
      this.queue.add(name);
    }, wait);
    this.deferred.set(name, t);
  }

  /** Idempotent; never runs concurrently for one key (WorkQueue contract). */
  reconcile(name: string): { requeueAfterMs?: number } | void {
    const { store } = this.deps;
    // This pass reads the current state, so it covers every change a deferred pass was waiting for.
    this.lastRun.set(name, this.clock.now());
    const waiting = this.deferred.get(name);
    if (waiting !== undefined) {
      this.clock.clearTimeout(waiting);
      this.deferred.delete(name);
    }
    const d = store.get('Deployment', name);
    const pods = store.list('Pod', { ownerName: name });
    if (!d) {
      this.statusWrites.delete(name);
      this.lastRun.delete(name);
      // Deleted: its pods go too (Operations.delete removes them at once; this catches leftovers).
      if (pods.length > 0) store.transaction(() => pods.forEach((p) => store.delete('Pod', p.metadata.name)));
      store.transaction(() => deleteRevisions(store, name));
      return;
    }
    if (d.spec.mode === 'global') return;
    const hash = templateHash(d, configHash(store, d.spec.template.spec));
    // Revisions, RollingUpdate / Recreate / canary, progress deadline and rollback: hub/rollout/.
    const { statusMinIntervalMs } = this.deps;
    const ctx =
      statusMinIntervalMs === undefined ? this.deps : { ...this.deps, statusThrottle: { minIntervalMs: statusMinIntervalMs, lastWrite: this.statusWrites } };
    return reconcileRollout(ctx, d, pods, hash);
  }
}
