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
 * Binds pending pods to nodes. Keeps the set of unbound pods and the scheduler's node view
 * (LiveSnapshot: per-node totals of bound pods) from watch events, so a pass costs
 * O(pending × sampled nodes), not O(all pods); schedules the pending pods in one batch and
 * writes every binding in one transaction, so the node sync publishes each node's set once.
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
  private readonly pending = new Set<string>();
  private readonly live: LiveSnapshot;
  private unwatch: (() => void) | undefined;
  /** Duration and end (performance clock, ms) of the last pass, to space expensive passes. */
  private lastPass = { ms: 0, end: 0 };

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
    for (const p of pods) if (!p.spec.nodeName && !isTerminal(p)) this.pending.add(p.metadata.name);
    this.queue.add(KEY);
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
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
        // Freed capacity may let a waiting pod in.
        if (ev.type === 'DELETED' && o.spec.nodeName && this.pending.size > 0) this.request();
      } else if (ev.type === 'ADDED') {
        this.pending.add(o.metadata.name);
        this.request();
      }
    } else if (o.kind === 'Node' && this.pending.size > 0) {
      this.request();
    } else if (o.kind === 'Service' && this.pending.size > 0 && (ev.type !== 'MODIFIED' || ev.old?.metadata.generation !== o.metadata.generation)) {
      // A published port freed (or taken) changes where host-port pods fit.
      this.request();
    }
  }

  /**
   * Asks for a pass. After a slow pass (≥ 50 ms: a big batch, or explaining unschedulable pods
   * across a large fleet) the next one waits as long as the last took: pods created meanwhile
   * join one bigger batch, and node heartbeats cannot keep the scheduler busy while
   * unschedulable pods wait.
   */
  private request(): void {
    const wait = this.lastPass.end + this.lastPass.ms - performance.now();
    if (this.lastPass.ms >= 50 && wait > 0) this.queue.addAfter(KEY, wait);
    else this.queue.add(KEY);
  }

  reconcile(): Promise<{ requeueAfterMs?: number } | void> | { requeueAfterMs?: number } | void {
    if (this.pending.size === 0) return;
    const platforms = this.deps.platforms;
    if (platforms !== undefined) {
      const images = this.pendingImages();
      // Resolve first, then schedule against a fresh read: the await may let the world move.
      if (platforms.needsResolve(images)) return platforms.resolve(images).then(() => this.scheduleNow());
    }
    return this.scheduleNow();
  }

  private pendingImages(): Set<string> {
    const images = new Set<string>();
    for (const name of this.pending) {
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

  private scheduleNow(): { requeueAfterMs?: number } | void {
    if (this.pending.size === 0) return;
    const { store, now, log } = this.deps;
    const pods: Pod[] = [];
    for (const name of this.pending) {
      const p = store.get('Pod', name);
      if (!p || p.spec.nodeName || isTerminal(p)) this.pending.delete(name);
      else pods.push(p);
    }
    if (pods.length === 0) return;
    const t0 = performance.now();
    pods.sort((a, b) =>
      a.metadata.creationTimestamp < b.metadata.creationTimestamp
        ? -1
        : a.metadata.creationTimestamp > b.metadata.creationTimestamp
          ? 1
          : a.metadata.name < b.metadata.name
            ? -1
            : 1,
    );
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
    } finally {
      this.live.release();
    }
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
          this.pending.delete(pod.metadata.name);
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
    this.lastPass = { ms: performance.now() - t0, end: performance.now() };
    // Unschedulable pods are retried when a node changes; also on a slow timer as a backstop.
    return waiting > 0 ? { requeueAfterMs: this.deps.retryMs ?? 30_000 } : undefined;
  }
}
