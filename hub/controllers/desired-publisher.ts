import { encodeMessage, type DesiredPod, type DesiredSetMessage } from '../../protocol/messages.js';
import type { Pod } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { shortHash } from '../hash.js';
import type { Logger } from '../log.js';
import type { Store, WatchEvent } from '../store/store.js';
import { isTerminal } from './deployment-controller.js';
import { WorkQueue } from './workqueue.js';

/**
 * Publishes each node's whole desired set, retained at QoS 1, whenever a pod bound to it
 * changes in a way the agent cares about (spec, uid, membership — not status). The
 * generation is the store revision at publish time: monotonic across hub restarts.
 * On start every known node is published once, because aedes keeps retained messages in
 * memory only and a restarted hub must hand agents their sets again.
 */
export class DesiredPublisher {
  readonly queue: WorkQueue;
  private readonly lastHash = new Map<string, string>();
  private unwatch: (() => void) | undefined;
  /** Number of desired-set publishes (for tests and metrics). */
  published = 0;

  constructor(private readonly deps: { store: Store; publisher: Publisher; log: Logger; now: () => Date }) {
    this.queue = new WorkQueue('desired', (node) => this.reconcile(node), deps.log);
  }

  start(): void {
    const { store } = this.deps;
    this.unwatch = store.watch((ev: WatchEvent) => {
      if (ev.object.kind === 'Pod' && ev.object.spec.nodeName) this.queue.add(ev.object.spec.nodeName);
      else if (ev.object.kind === 'Node' && ev.type === 'ADDED') this.queue.add(ev.object.metadata.name);
    }, ['Pod', 'Node']);
    for (const n of store.list('Node')) this.queue.add(n.metadata.name);
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
  }

  /** Forget what was sent to `node` (e.g. it reconnected with an empty cache): the next pass republishes. */
  invalidate(node: string): void {
    this.lastHash.delete(node);
    this.queue.add(node);
  }

  desiredSet(node: string): DesiredSetMessage {
    const pods = this.deps.store.list('Pod', { nodeName: node }).filter((p) => !isTerminal(p) && !p.metadata.deletionTimestamp);
    return {
      node,
      generation: this.deps.store.revision(),
      pods: pods.map(toDesired),
      at: this.deps.now().toISOString(),
    };
  }

  async reconcile(node: string): Promise<void> {
    const { store, publisher } = this.deps;
    const set = this.desiredSet(node);
    const hash = shortHash(set.pods, 16);
    if (this.lastHash.get(node) === hash) return;
    // A node that was deleted (revoked) gets its retained set cleared instead.
    if (!store.get('Node', node) && set.pods.length === 0) {
      await publisher.publish(topics.nodeDesired(node), Buffer.alloc(0), { retain: true, qos: 1 });
      this.lastHash.delete(node);
      return;
    }
    await publisher.publish(topics.nodeDesired(node), encodeMessage(set), { retain: true, qos: 1 });
    this.lastHash.set(node, hash);
    this.published++;
  }
}

function toDesired(p: Pod): DesiredPod {
  const { nodeName: _bound, ...spec } = p.spec;
  const out: DesiredPod = { name: p.metadata.name, uid: p.metadata.uid, spec };
  if (p.metadata.ownerName) out.deployment = p.metadata.ownerName;
  return out;
}
