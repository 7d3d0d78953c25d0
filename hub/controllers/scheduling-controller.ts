import type { Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import type { Logger } from '../log.js';
import { scheduleBatch } from '../scheduler/scheduler.js';
import { buildSchedNodes, podToSchedPod } from '../scheduler/snapshot.js';
import type { Store, WatchEvent } from '../store/store.js';
import { isTerminal } from './deployment-controller.js';
import { WorkQueue } from './workqueue.js';

const KEY = 'pending';

/**
 * Binds pending pods to nodes. Keeps the set of unbound pods from watch events (no full scan
 * per pass), schedules them in one batch against a fresh snapshot, and writes every binding
 * in one transaction, so the node sync publishes each node's set once per batch.
 * Unschedulable pods keep their per-node reasons in status and get a FailedScheduling event
 * whenever the explanation changes.
 */
export class SchedulingController {
  readonly queue: WorkQueue;
  private readonly pending = new Set<string>();
  private unwatch: (() => void) | undefined;

  constructor(private readonly deps: { store: Store; log: Logger; now: () => Date; retryMs?: number }) {
    this.queue = new WorkQueue('scheduler', () => this.reconcile(), deps.log);
  }

  start(): void {
    const { store } = this.deps;
    this.unwatch = store.watch((ev: WatchEvent) => this.onEvent(ev), ['Pod', 'Node']);
    for (const p of store.list('Pod')) if (!p.spec.nodeName && !isTerminal(p)) this.pending.add(p.metadata.name);
    this.queue.add(KEY);
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
  }

  private onEvent(ev: WatchEvent): void {
    const o = ev.object;
    if (o.kind === 'Pod') {
      if (ev.type === 'DELETED' || o.spec.nodeName || isTerminal(o)) {
        this.pending.delete(o.metadata.name);
        // Freed capacity may let a waiting pod in.
        if (ev.type === 'DELETED' && o.spec.nodeName && this.pending.size > 0) this.queue.add(KEY);
      } else if (ev.type === 'ADDED') {
        this.pending.add(o.metadata.name);
        this.queue.add(KEY);
      }
    } else if (o.kind === 'Node' && this.pending.size > 0) {
      this.queue.add(KEY);
    }
  }

  reconcile(): { requeueAfterMs?: number } | void {
    if (this.pending.size === 0) return;
    const { store, now, log } = this.deps;
    const pods: Pod[] = [];
    for (const name of this.pending) {
      const p = store.get('Pod', name);
      if (!p || p.spec.nodeName || isTerminal(p)) this.pending.delete(name);
      else pods.push(p);
    }
    if (pods.length === 0) return;
    pods.sort((a, b) => (a.metadata.creationTimestamp < b.metadata.creationTimestamp ? -1 : a.metadata.creationTimestamp > b.metadata.creationTimestamp ? 1 : a.metadata.name < b.metadata.name ? -1 : 1));
    const nodes = buildSchedNodes(store.list('Node'), store.list('Pod').filter((p) => p.spec.nodeName));
    const decisions = scheduleBatch(pods.map(podToSchedPod), nodes);
    let bound = 0;
    let waiting = 0;
    const ts = now();
    store.transaction(() => {
      decisions.forEach((d, i) => {
        const pod = pods[i];
        if (!pod) return;
        const next = structuredClone(pod) as Pod;
        if (d.kind === 'bound') {
          next.spec.nodeName = d.nodeName;
          delete next.status.unschedulable;
          if (next.status.reason === 'Unschedulable') {
            delete next.status.reason;
            delete next.status.message;
          }
          next.status.conditions = [
            ...next.status.conditions.filter((c) => c.type !== 'PodScheduled'),
            { type: 'PodScheduled', status: 'True', lastTransitionTime: ts.toISOString() },
          ];
          store.update(next);
          this.pending.delete(pod.metadata.name);
          bound++;
        } else {
          waiting++;
          if (pod.status.unschedulable?.summary === d.summary) return;
          next.status.unschedulable = { summary: d.summary, nodes: d.explanation.filtered };
          next.status.reason = 'Unschedulable';
          next.status.message = d.summary;
          next.status.conditions = [
            ...next.status.conditions.filter((c) => c.type !== 'PodScheduled'),
            { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: d.summary, lastTransitionTime: ts.toISOString() },
          ];
          store.update(next);
          recordEvent(store, ts, { kind: 'Pod', name: pod.metadata.name, type: 'Warning', reason: 'FailedScheduling', message: d.summary });
        }
      });
    });
    if (bound > 0) log.debug('scheduled pods', { bound, waiting });
    // Unschedulable pods are retried when a node changes; also on a slow timer as a backstop.
    return waiting > 0 ? { requeueAfterMs: this.deps.retryMs ?? 30_000 } : undefined;
  }
}
