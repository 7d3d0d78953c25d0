import type { DeploymentSpec } from '../../protocol/manifest.js';
import type { Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import type { Logger } from '../log.js';
import { setCondition } from '../objects/conditions.js';
import { isTerminal } from '../objects/pod.js';
import type { ImagePlatformSource } from '../registry/image-platform-resolver.js';
import { scheduleWithVolumes } from '../scheduler/volume-pins.js';
import { bindPodVolumes, volumeBindings } from './volume-records.js';
import { LiveSnapshot } from '../scheduler/live-snapshot.js';
import { allPublishedPorts, publishedPortKeys } from './service-publish.js';
import { podToSchedPod, type SnapshotOptions } from '../scheduler/snapshot.js';
import type { ImagePlatforms, SchedPod } from '../scheduler/types.js';
import type { Store, WatchEvent } from '../store/store.js';
import { WorkQueue } from './workqueue.js';

const KEY = 'pending';

/**
 * A pass schedules at most about this much work, then gives the event loop back (the work queue
 * yields between passes) and the next pass takes the next pods. At 10,000 nodes / 100,000 pods
 * one pass over every pending pod held the loop for 28 s on a slow box: node heartbeats went
 * unread, and a hub on etcd lost its leader lease (15 s) in the middle of the deploy.
 */
const PASS_BUDGET_MS = 100;
/** Bounds of the pods taken per pass (the count follows the measured cost per pod). */
const PASS_MIN_PODS = 32;
const PASS_MAX_PODS = 5_000;

function byCreation(a: Pod, b: Pod): number {
  const ta = a.metadata.creationTimestamp;
  const tb = b.metadata.creationTimestamp;
  return ta < tb ? -1 : ta > tb ? 1 : a.metadata.name < b.metadata.name ? -1 : 1;
}

/**
 * Binds pending pods to nodes. Keeps the set of unbound pods and the scheduler's node view
 * (LiveSnapshot: per-node totals of bound pods) from watch events, so a pass costs
 * O(pending × sampled nodes), not O(all pods); schedules the pending pods in batches sized to
 * about PASS_BUDGET_MS of work (oldest first) and writes each batch's bindings in one
 * transaction, so the node sync publishes each node's set once per batch. Pods a pass could not
 * place wait in `tried` (kube-scheduler's unschedulable queue) until the cluster changes (a node,
 * a published port, a bound pod deleted) or a slow timer fires, so a large unschedulable backlog
 * neither delays pods created after it nor is re-explained on every heartbeat.
 * Unschedulable pods keep their per-node reasons in status and get a FailedScheduling event
 * whenever the explanation changes.
 *
 * Placement (strategy, spreadBy) is read from the owning Deployment at scheduling time rather
 * than copied onto pods: the Pod object has no place for it, a lookup costs one cached store
 * read per owner per batch, and an edited placement applies to pods still pending without
 * re-stamping them. Image platforms come from `platforms` (registry lookups, cached); a batch
 * with unresolved images first awaits their resolution, then schedules synchronously.
 */
export class SchedulingController {
  readonly queue: WorkQueue;
  /** Unbound pods to try (new ones, and unschedulable ones a cluster change sent back). */
  private pending = new Set<string>();
  /** Unbound pods a pass could not place: tried again after a change in the cluster (retry()). */
  private tried = new Set<string>();
  /** Pods per pass, from the last pass's cost per pod. */
  private passPods = 500;
  /** The last pass's cost per pod (ms), to estimate what retrying `tried` costs. */
  private perPodMs = 0;
  /** When (performance clock, ms) `tried` goes back to `pending`; Infinity: nothing asked for. */
  private retryAt = Infinity;
  /** No retry of `tried` before this (performance clock, ms): spaces expensive retries. */
  private retryNotBefore = 0;
  /** The next pass is already queued (mid-backlog): events need not ask for one. */
  private continuing = false;
  private readonly live: LiveSnapshot;
  private unwatch: (() => void) | undefined;

  constructor(
    private readonly deps: { store: Store; log: Logger; now: () => Date; retryMs?: number; platforms?: ImagePlatformSource; snapshot?: SnapshotOptions },
  ) {
    this.queue = new WorkQueue('scheduler', () => this.reconcile(), deps.log);
    this.live = new LiveSnapshot(deps.snapshot);
  }

  start(): void {
    const { store } = this.deps;
    this.unwatch = store.watch((ev: WatchEvent) => this.onEvent(ev), ['Pod', 'Node', 'Service']);
    const pods = store.list('Pod');
    this.live.reset(store.list('Node'), pods);
    // Oldest first, as pods created later join the set's end.
    const unbound = pods.filter((p) => !p.spec.nodeName && !isTerminal(p)).sort(byCreation);
    for (const p of unbound) this.pending.add(p.metadata.name);
    this.queue.add(KEY);
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
  }

  /**
   * A node's free disk from a usage report, fresher than its stored usage (LiveSnapshot.setDiskFree).
   * When it grew (≥ 16 MiB), pods waiting for room are tried again, as after a Node write.
   */
  diskFree(node: string, bytes: number): void {
    if (this.live.setDiskFree(node, bytes)) this.retry();
  }

  private onEvent(ev: WatchEvent): void {
    try {
      this.live.apply(ev);
    } catch (err) {
      // The live view marked itself stale and is rebuilt from full lists before the next pass.
      this.deps.log.warn('scheduler snapshot: event not applied, rebuilding', { err });
    }
    const o = ev.object;
    if (o.kind === 'Pod') {
      if (ev.type === 'DELETED' || o.spec.nodeName || isTerminal(o)) {
        this.pending.delete(o.metadata.name);
        this.tried.delete(o.metadata.name);
        // Freed capacity may let a waiting pod in.
        if (ev.type === 'DELETED' && o.spec.nodeName) this.retry();
      } else if (ev.type === 'ADDED') {
        this.pending.add(o.metadata.name);
        this.pass();
      }
    } else if (o.kind === 'Node') {
      this.retry();
    } else if (o.kind === 'Service' && (ev.type !== 'MODIFIED' || ev.old?.metadata.generation !== o.metadata.generation)) {
      // A published port freed (or taken) changes where host-port pods fit.
      this.retry();
    }
  }

  /** Asks for a pass over `pending` (a new pod is tried at once, in the next pass). */
  private pass(): void {
    if (!this.continuing) this.queue.add(KEY);
  }

  /**
   * The cluster changed: unschedulable pods may fit now. Expensive retries are spaced: one that
   * costs ≥ 50 ms (explaining many unschedulable pods across a large fleet) is not repeated
   * until as long again has passed, so node heartbeats cannot keep the scheduler busy
   * re-explaining pods that still do not fit.
   */
  private retry(): void {
    if (this.tried.size === 0) return;
    const now = performance.now();
    const at = Math.max(now, this.retryNotBefore);
    if (at >= this.retryAt) return;
    this.retryAt = at;
    if (at <= now) this.pass();
    else if (!this.continuing) this.queue.addAfter(KEY, at - now);
  }

  reconcile(): Promise<{ requeueAfterMs?: number } | void> | { requeueAfterMs?: number } | void {
    this.continuing = false;
    const now = performance.now();
    if (this.tried.size > 0 && now >= this.retryAt) {
      const cost = this.perPodMs * this.tried.size;
      this.retryNotBefore = cost >= 50 ? now + 2 * cost : now;
      this.retryAt = Infinity;
      for (const name of this.tried) this.pending.add(name);
      this.tried = new Set();
    }
    const names = this.takePass();
    if (names.length === 0) return this.idle();
    const platforms = this.deps.platforms;
    if (platforms !== undefined) {
      const images = this.imagesOf(names);
      // Resolve first, then schedule against a fresh read: the await may let the world move.
      if (platforms.needsResolve(images)) return platforms.resolve(images).then(() => this.scheduleNow(names));
    }
    return this.scheduleNow(names);
  }

  /**
   * This pass's pods: the next ones in the order they became pending (creation order: ADDED
   * events, and start() sorts what it finds). They move from `pending` to `tried` and leave it
   * when bound (a pass that throws leaves them waiting for a retry, not lost).
   */
  private takePass(): string[] {
    const { store } = this.deps;
    const names: string[] = [];
    for (const name of this.pending) {
      if (names.length >= this.passPods) break;
      this.pending.delete(name);
      const p = store.get('Pod', name);
      if (p && !p.spec.nodeName && !isTerminal(p)) {
        names.push(name);
        this.tried.add(name);
      }
    }
    return names;
  }

  /**
   * Nothing left to try: unschedulable pods wait for a change in the cluster (retry()), and for
   * the slow timer as a backstop.
   */
  private idle(): { requeueAfterMs?: number } | void {
    if (this.tried.size === 0) {
      this.retryAt = Infinity;
      return;
    }
    const now = performance.now();
    this.retryAt = Math.min(this.retryAt, now + (this.deps.retryMs ?? 30_000));
    return { requeueAfterMs: Math.max(0, this.retryAt - now) };
  }

  /** The images of this pass's pods only: at 100,000 pending pods, reading them all per pass was most of its cost. */
  private imagesOf(names: readonly string[]): Set<string> {
    const images = new Set<string>();
    for (const name of names) {
      const p = this.deps.store.get('Pod', name);
      if (p) for (const c of p.spec.containers) images.add(c.image);
    }
    return images;
  }

  /** Pending pods in the scheduler's view, with their owner's placement and known image platforms. */
  private schedPods(pods: readonly Pod[]): SchedPod[] {
    const { store, platforms } = this.deps;
    const placements = new Map<string, DeploymentSpec['placement']>();
    const byImages = new Map<string, readonly ImagePlatforms[]>();
    return pods.map((p) => {
      const owner = p.metadata.ownerName;
      let placement: DeploymentSpec['placement'];
      if (owner !== undefined) {
        if (!placements.has(owner)) placements.set(owner, store.get('Deployment', owner)?.spec.placement);
        placement = placements.get(owner);
      }
      let imagePlatforms: readonly ImagePlatforms[] | undefined;
      if (platforms !== undefined) {
        const key = p.spec.containers.map((c) => c.image).join('\n');
        imagePlatforms = byImages.get(key);
        if (imagePlatforms === undefined) {
          const list: ImagePlatforms[] = [];
          for (const c of p.spec.containers) {
            const known = platforms.known(c.image);
            if (known !== undefined && !list.some((x) => x.image === c.image)) list.push({ image: c.image, platforms: known });
          }
          imagePlatforms = list;
          byImages.set(key, list);
        }
      }
      return podToSchedPod(p, { ...(placement !== undefined ? { placement } : {}), ...(imagePlatforms !== undefined ? { imagePlatforms } : {}) });
    });
  }

  private scheduleNow(names: readonly string[]): { requeueAfterMs?: number } | void {
    const { store, now, log } = this.deps;
    const t0 = performance.now();
    // Read again: a platform lookup may have awaited. Still `tried` = not bound or deleted since.
    const pods: Pod[] = [];
    for (const name of names) {
      const p = this.tried.has(name) ? store.get('Pod', name) : undefined;
      if (p && !p.spec.nodeName && !isTerminal(p)) pods.push(p);
      else this.tried.delete(name);
    }
    if (pods.length === 0) return this.pending.size === 0 ? this.idle() : this.continue();
    pods.sort(byCreation);
    if (this.live.stale) this.live.reset(store.list('Node'), store.list('Pod'));
    // scheduleBatch plus persistent-volume pins (volume-pins.ts): pods go where their data lives.
    // It books the pods it binds onto the live nodes; release() takes them back out before the
    // bindings are written, and their watch events book them for good.
    const nodes = this.live.acquire();
    // Ports Services publish are taken for hostPort pods (issue 15); set per pass, few services publish.
    const published = allPublishedPorts(store);
    for (const n of nodes) n.publishedPorts = published.length === 0 ? undefined : publishedPortKeys(published, n.labels);
    let decisions: ReturnType<typeof scheduleWithVolumes>;
    try {
      decisions = scheduleWithVolumes(this.schedPods(pods), nodes, volumeBindings(store));
    } catch (err) {
      this.live.release();
      throw err;
    }
    // Only the nodes this pass booked pods onto (every booking is a bound decision).
    this.live.release(decisions.flatMap((d) => (d.kind === 'bound' ? [d.nodeName] : [])));
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
          // Host devices picked with the binding (issue 18): the node shows who holds which, the agent passes exactly these.
          if (d.devices !== undefined && d.devices.length > 0) next.spec.deviceGrants = d.devices;
          else delete next.spec.deviceGrants;
          bindPodVolumes(store, next, d.nodeName, ts);
          delete next.status.unschedulable;
          if (next.status.reason === 'Unschedulable') {
            delete next.status.reason;
            delete next.status.message;
          }
          next.status.conditions = setCondition(next.status.conditions, { type: 'PodScheduled', status: 'True' }, ts.toISOString());
          store.update(next);
          this.tried.delete(pod.metadata.name);
          bound++;
        } else {
          waiting++;
          if (pod.status.unschedulable?.summary === d.summary) return;
          next.status.unschedulable = { summary: d.summary, nodes: d.explanation.filtered };
          next.status.reason = 'Unschedulable';
          next.status.message = d.summary;
          // Still unschedulable with a new explanation: lastTransitionTime stays (pending since then).
          next.status.conditions = setCondition(
            next.status.conditions,
            { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: d.summary },
            ts.toISOString(),
          );
          store.update(next);
          recordEvent(store, ts, { kind: 'Pod', name: pod.metadata.name, type: 'Warning', reason: 'FailedScheduling', message: d.summary });
        }
      });
    });
    if (bound > 0) log.debug('scheduled pods', { bound, waiting });
    const ms = performance.now() - t0;
    this.perPodMs = ms / pods.length;
    // The next pass's size: what fits the budget at this pass's cost per pod.
    this.passPods = Math.max(PASS_MIN_PODS, Math.min(PASS_MAX_PODS, Math.floor(PASS_BUDGET_MS / Math.max(this.perPodMs, 0.001))));
    if (this.pending.size === 0) return this.idle();
    this.continue();
  }

  /** More to do: queued again at once; the work queue gives I/O a turn first. */
  private continue(): void {
    this.continuing = true;
    this.queue.add(KEY);
  }
}
