import type { Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import type { Logger } from '../log.js';
import { formatTaint, isTolerated } from '../scheduler/filters.js';
import type { Store, WatchEvent } from '../store/store.js';
import { WorkQueue } from './workqueue.js';

/**
 * NoExecute taints evict: a pod on a node with a NoExecute taint it does not tolerate is
 * deleted, so its deployment replaces it and the scheduler places the replacement elsewhere
 * (the taint repels it there too). Global pods that do not tolerate the taint go as well, and
 * the GlobalController creates none there while the taint stays. Keyed by node; every run
 * re-reads the node and its pods (level-triggered, idempotent).
 */
export class TaintEvictionController {
  readonly queue: WorkQueue;
  private unwatch: (() => void) | undefined;

  constructor(private readonly deps: { store: Store; log: Logger; now: () => Date }) {
    this.queue = new WorkQueue('taint-eviction', (node) => this.reconcile(node), deps.log);
  }

  start(): void {
    const { store } = this.deps;
    this.unwatch = store.watch(
      (ev: WatchEvent) => {
        const o = ev.object;
        if (ev.type === 'DELETED') return;
        if (o.kind === 'Node' && o.spec.taints.some((t) => t.effect === 'NoExecute')) this.queue.add(o.metadata.name);
        // A pod bound to a NoExecute node by hand (or by a race) is caught too.
        else if (o.kind === 'Pod' && o.spec.nodeName !== undefined && ev.type === 'ADDED') this.queue.add(o.spec.nodeName);
      },
      ['Node', 'Pod'],
    );
    for (const n of store.list('Node')) if (n.spec.taints.some((t) => t.effect === 'NoExecute')) this.queue.add(n.metadata.name);
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
  }

  reconcile(nodeName: string): void {
    const { store, now } = this.deps;
    const node = store.get('Node', nodeName);
    if (!node) return;
    const taints = node.spec.taints.filter((t) => t.effect === 'NoExecute');
    if (taints.length === 0) return;
    const victims: Array<{ pod: Pod; taint: string }> = [];
    for (const p of store.list('Pod', { nodeName })) {
      const tolerations = p.spec.tolerations ?? [];
      const bad = taints.find((t) => !isTolerated(tolerations, t));
      if (bad !== undefined) victims.push({ pod: p, taint: formatTaint(bad) });
    }
    if (victims.length === 0) return;
    store.transaction(() => {
      for (const v of victims) {
        store.delete('Pod', v.pod.metadata.name);
        recordEvent(store, now(), {
          kind: 'Pod',
          name: v.pod.metadata.name,
          type: 'Normal',
          reason: 'TaintEviction',
          message: `evicted from ${nodeName}: untolerated taint ${v.taint}`,
        });
      }
    });
    this.deps.log.info('evicted pods for NoExecute taint', { node: nodeName, pods: victims.length });
  }
}
