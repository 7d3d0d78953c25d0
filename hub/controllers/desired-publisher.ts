import { encodeMessage, SERVICE_COUNTERS, USAGE_DELTA, type DesiredPod, type DesiredSetMessage, type PayloadEncoding } from '../../protocol/messages.js';
import type { NodeObject, Pod } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { shortHash } from '../hash.js';
import type { Logger } from '../log.js';
import { readsEpoch } from '../objects/node.js';
import { isTerminal } from '../objects/pod.js';
import { WRITE_BARRIER_MS, type Store, type WatchEvent } from '../store/store.js';
import { referencesConfig } from '../secrets/config-refs.js';
import { nodeConfigs } from '../secrets/node-configs.js';
import type { SecretCodec } from '../secrets/secret-codec.js';
import { nodeKeepImages } from '../rollout/revisions.js';
import { addPullSecrets, referencesPullSecret } from '../rollout/pull-secrets.js';
import { WorkQueue } from './workqueue.js';

/**
 * Publishes each node's whole desired set, retained at QoS 1, whenever a pod bound to it
 * changes in a way the agent cares about (spec, uid, membership — not status). The
 * generation is the store revision at publish time: monotonic across hub restarts.
 * On start every known node is published once, because aedes keeps retained messages in
 * memory only and a restarted hub must hand agents their sets again.
 */
/** Desired-set publishes allowed in flight at once (see reconcile). */
const MAX_IN_FLIGHT = 256;

export class DesiredPublisher {
  readonly queue: WorkQueue;
  private readonly lastHash = new Map<string, string>();
  private unwatch: (() => void) | undefined;
  /** Number of desired-set publishes (for tests and metrics). */
  published = 0;
  private readonly inFlight = new Set<Promise<void>>();

  /** Per node: what decides whether its configs changed (see nodeConfigs). */
  private readonly configVersion = new Map<string, Record<string, string>>();

  constructor(
    private readonly deps: {
      store: Store;
      publisher: Publisher;
      log: Logger;
      now: () => Date;
      secrets?: SecretCodec;
      /** The leader epoch of a hub on etcd (docs/design/ha.md "Epochs"): stamped on the sets of agents that read it. */
      epoch?: number;
    },
  ) {
    this.queue = new WorkQueue('desired', (node) => this.reconcile(node), deps.log);
  }

  start(): void {
    const { store } = this.deps;
    this.unwatch = store.watch(
      (ev: WatchEvent) => {
        if (ev.object.kind === 'Pod' && ev.object.spec.nodeName) {
          // Most pod writes are status reports, which do not change what the node should run: at
          // fleet scale they kept this queue at ≈ one pass per node per report.
          if (ev.type === 'MODIFIED' && ev.old?.kind === 'Pod' && !desiredChanged(ev.old, ev.object)) return;
          this.queue.add(ev.object.spec.nodeName);
        } else if (ev.object.kind === 'Node' && ev.type === 'ADDED') this.queue.add(ev.object.metadata.name);
        // An agent that starts or stops reading deflate (upgraded, downgraded) gets its set again in its encoding.
        // Likewise one that starts reading epochs, or writing the short usage heartbeat or service counters.
        else if (
          ev.object.kind === 'Node' &&
          ev.type === 'MODIFIED' &&
          ev.old?.kind === 'Node' &&
          (encodingOf(ev.old) !== encodingOf(ev.object) ||
            readsEpoch(ev.old) !== readsEpoch(ev.object) ||
            readsFor(ev.old).join() !== readsFor(ev.object).join())
        )
          this.queue.add(ev.object.metadata.name);
        else if (ev.object.kind === 'ConfigMap' || ev.object.kind === 'Secret') {
          // Republish the sets of nodes running a pod that references the changed config (or names
          // the Secret in imagePullSecrets: a new registry login must reach the device too).
          const { kind, metadata } = ev.object;
          const uses = (spec: Pod['spec']): boolean =>
            referencesConfig(spec, kind, metadata.name) || (kind === 'Secret' && referencesPullSecret(spec, metadata.name));
          for (const p of store.list('Pod')) if (p.spec.nodeName && uses(p.spec)) this.queue.add(p.spec.nodeName);
        }
      },
      ['Pod', 'Node', 'ConfigMap', 'Secret'],
    );
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
    const set: DesiredSetMessage = {
      node,
      generation: this.deps.store.revision(),
      pods: pods.map(toDesired),
      at: this.deps.now().toISOString(),
    };
    // An agent before epochs parses strictly and would refuse the whole set with the field.
    if (this.deps.epoch !== undefined && readsEpoch(this.deps.store.get('Node', node))) set.epoch = this.deps.epoch;
    // Only the configs this node's own pods reference (need to know); fields absent when none.
    const configs = nodeConfigs(
      this.deps.store,
      pods.map((p) => p.spec),
      this.deps.secrets,
    );
    if (Object.keys(configs.configMaps).length > 0) set.configMaps = configs.configMaps;
    addPullSecrets(
      this.deps.store,
      pods.map((p) => p.spec),
      this.deps.secrets,
      configs,
    );
    if (Object.keys(configs.secrets).length > 0) set.secrets = configs.secrets;
    this.configVersion.set(node, configs.version);
    // Images the node's image GC keeps so an undo or automatic rollback needs no network.
    const keep = nodeKeepImages(this.deps.store, pods);
    if (keep.length > 0) set.keepImages = keep;
    // Report forms this hub reads, only to an agent that said it writes them (an older agent refuses
    // unknown fields): the short usage heartbeat, the service proxy's counters.
    const reads = readsFor(this.deps.store.get('Node', node));
    if (reads.length > 0) set.reads = reads;
    return set;
  }

  async reconcile(node: string): Promise<void> {
    const { store, publisher } = this.deps;
    const set = this.desiredSet(node);
    const version = this.configVersion.get(node) ?? {};
    const encoding = encodingOf(store.get('Node', node));
    const base = Object.keys(version).length === 0 ? set.pods : { pods: set.pods, configs: version };
    const kept = set.keepImages === undefined ? base : { base, keep: set.keepImages };
    const content = set.reads === undefined ? kept : { kept, reads: set.reads };
    const stamped = set.epoch === undefined ? content : { content, epoch: set.epoch };
    const hash = shortHash(encoding === undefined ? stamped : { content: stamped, encoding }, 16);
    if (this.lastHash.get(node) === hash) return;
    // A node that was deleted (revoked) gets its retained set cleared instead.
    if (!store.get('Node', node) && set.pods.length === 0) {
      // Behind the same barrier as the sets (which resolves in order), so a set still waiting on
      // it cannot land after the clear and stay retained.
      if (store.sync) await store.sync(WRITE_BARRIER_MS);
      await publisher.publish(topics.nodeDesired(node), Buffer.alloc(0), { retain: true, qos: 1 });
      this.lastHash.delete(node);
      return;
    }
    // Pipelined: awaiting each in-process publish costs a whole event-loop turn, which under
    // fleet load capped this queue at a few dozen nodes/s (5,000 sets took > 80 s in
    // scripts/bench/fleet.ts). Up to MAX_IN_FLIGHT publishes overlap (aedes keeps their order);
    // the last key of a burst waits for all of them, so queue.idle() still means "published".
    this.lastHash.set(node, hash);
    this.published++;
    // On a remote store (etcd) a set goes out only once the writes it reflects are durable: a
    // leader killed before its write-behind queue drained must not have told an agent to run pods
    // whose bindings the next leader never sees (it would place them again, and the agent would
    // start and then stop them). The barrier resolves in commit order, so two sets of one node
    // still go out in order; on SQLite there is no barrier (every commit is already durable).
    const payload = encodeMessage(set, encoding);
    // Up to the writes this set was computed from (writeMark), not the ones committed since.
    const durable = store.sync ? store.sync(WRITE_BARRIER_MS, store.writeMark?.()) : Promise.resolve();
    const sent = durable
      .then(() => publisher.publish(topics.nodeDesired(node), payload, { retain: true, qos: 1 }))
      .then(
        () => undefined,
        (err: unknown) => {
          if (this.lastHash.get(node) === hash) this.lastHash.delete(node);
          this.deps.log.warn('desired set not published (store barrier or broker failed); retrying', { node, err });
          this.queue.addAfter(node, 1000);
        },
      );
    this.inFlight.add(sent);
    void sent.finally(() => this.inFlight.delete(sent));
    if (this.inFlight.size >= MAX_IN_FLIGHT || this.queue.length === 0) await Promise.all([...this.inFlight]);
  }
}

/** The encoding this node's agent reads its desired set in: deflate when it says it reads it (NodeInfo.encodings). */
function encodingOf(node: NodeObject | undefined): PayloadEncoding | undefined {
  return node?.status.info?.encodings?.includes('deflate') === true ? 'deflate' : undefined;
}

/** The report forms this hub reads that this node's agent says it writes (NodeInfo.encodings): USAGE_DELTA, SERVICE_COUNTERS. */
function readsFor(node: NodeObject | undefined): string[] {
  const listed = node?.status.info?.encodings ?? [];
  return [USAGE_DELTA, SERVICE_COUNTERS].filter((r) => listed.includes(r));
}

/** Whether a pod write changes its node's desired set (see desiredSet: membership, uid, spec, owner). */
function desiredChanged(a: Pod, b: Pod): boolean {
  return (
    a.metadata.uid !== b.metadata.uid ||
    a.metadata.generation !== b.metadata.generation || // every spec change (binding included) bumps it
    a.spec.nodeName !== b.spec.nodeName ||
    a.metadata.deletionTimestamp !== b.metadata.deletionTimestamp ||
    a.metadata.ownerName !== b.metadata.ownerName ||
    isTerminal(a) !== isTerminal(b)
  );
}

function toDesired(p: Pod): DesiredPod {
  const { nodeName: _bound, deviceGrants, ...spec } = p.spec;
  const out: DesiredPod = { name: p.metadata.name, uid: p.metadata.uid, spec };
  if (deviceGrants !== undefined && deviceGrants.length > 0) out.devices = deviceGrants;
  if (p.metadata.ownerName) out.deployment = p.metadata.ownerName;
  return out;
}
