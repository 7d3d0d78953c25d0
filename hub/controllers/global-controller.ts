import type { Deployment, DeploymentStatus, NodeObject, Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import { deepEqual } from '../hash.js';
import type { Logger } from '../log.js';
import type { ImagePlatformSource } from '../registry/image-platform-resolver.js';
import { cpuFit, hostPortsFree, memoryFit, nodeArch, nodeSelector, podCount, taintToleration } from '../scheduler/filters.js';
import { imagePlatform } from '../scheduler/image-platforms.js';
import { nodeAffinity } from '../scheduler/node-affinity.js';
import { podContext } from '../scheduler/pod-context.js';
import { buildSchedNodes, type SnapshotOptions } from '../scheduler/snapshot.js';
import type { FilterPlugin, ImagePlatforms, PodContext, SchedNode, SchedPod } from '../scheduler/types.js';
import type { Store, WatchEvent } from '../store/store.js';
import { isPodReady, isTerminal, newPod, templateHash } from './deployment-controller.js';
import { TEMPLATE_HASH_ANNOTATION } from '../operations.js';
import { WorkQueue } from './workqueue.js';
import { configHash } from '../secrets/config-refs.js';

/**
 * `mode: global` deployments (Kubernetes' DaemonSet): one pod on every matching node. A node
 * that starts matching (joins, gains a label, loses a taint) gets a pod; one that stops
 * matching loses it. "Matching" reuses the scheduler's own filter plugins on one node:
 * arch, image platform, nodeSelector, required node affinity, taints. As with DaemonSets,
 * cordon does not count (a cordoned node keeps and gets its global pods) and neither does
 * readiness (partition is not death: a NotReady node keeps its pod).
 *
 * Pods are created already bound to their node — there is exactly one place each can go —
 * but only when the node has room (pod slots, CPU, memory, host ports, same checks as the
 * scheduler). A matching node without room gets no pod yet: it counts in
 * `status.unscheduledReplicas`, gets a FailedPlacement event, and is retried on a timer.
 * A changed template replaces each node's pod (delete + create in one transaction).
 */

/** Node facts a global deployment's match depends on; other node writes (heartbeats) are ignored. */
const MATCH_FILTERS: readonly FilterPlugin[] = [nodeArch, imagePlatform, nodeSelector, nodeAffinity, taintToleration];
const ROOM_FILTERS: readonly FilterPlugin[] = [podCount, cpuFit, memoryFit, hostPortsFree];

export interface GlobalControllerDeps {
  store: Store;
  log: Logger;
  now: () => Date;
  platforms?: ImagePlatformSource;
  snapshot?: SnapshotOptions;
  /** Retry period while a matching node has no room (default 30 s). */
  retryMs?: number;
}

export class GlobalController {
  readonly queue: WorkQueue;
  private unwatch: (() => void) | undefined;
  /** Node name → the facts matching depends on, to skip heartbeat-only node writes. */
  private readonly nodeFacts = new Map<string, string>();

  constructor(private readonly deps: GlobalControllerDeps) {
    this.queue = new WorkQueue('global', (key) => this.reconcile(key), deps.log);
  }

  start(): void {
    const { store } = this.deps;
    this.unwatch = store.watch((ev) => this.onEvent(ev), ['Deployment', 'Node', 'Pod']);
    for (const n of store.list('Node')) this.nodeFacts.set(n.metadata.name, nodeFacts(n));
    this.enqueueAll();
  }

  stop(): void {
    this.unwatch?.();
    this.queue.stop();
  }

  private enqueueAll(): void {
    for (const d of this.deps.store.list('Deployment')) if (d.spec.mode === 'global') this.queue.add(d.metadata.name);
  }

  private onEvent(ev: WatchEvent): void {
    const o = ev.object;
    if (o.kind === 'Deployment') {
      if (o.spec.mode === 'global') this.queue.add(o.metadata.name);
    } else if (o.kind === 'Node') {
      const facts = ev.type === 'DELETED' ? undefined : nodeFacts(o);
      if (facts === this.nodeFacts.get(o.metadata.name)) return;
      if (facts === undefined) this.nodeFacts.delete(o.metadata.name);
      else this.nodeFacts.set(o.metadata.name, facts);
      this.enqueueAll();
    } else if (o.kind === 'Pod' && o.metadata.ownerName !== undefined) {
      const d = this.deps.store.get('Deployment', o.metadata.ownerName);
      if (d?.spec.mode === 'global') this.queue.add(d.metadata.name);
    }
  }

  /** Idempotent; never runs concurrently for one key (WorkQueue contract). */
  reconcile(name: string): Promise<{ requeueAfterMs?: number } | void> | { requeueAfterMs?: number } | void {
    const d = this.deps.store.get('Deployment', name);
    // A deleted deployment's pods are removed by Operations.delete / the DeploymentController.
    if (!d || d.spec.mode !== 'global') return;
    const platforms = this.deps.platforms;
    const images = d.spec.template.spec.containers.map((c) => c.image);
    if (platforms !== undefined && platforms.needsResolve(images)) return platforms.resolve(images).then(() => this.sync(name));
    return this.sync(name);
  }

  private sync(name: string): { requeueAfterMs?: number } | void {
    const { store, now } = this.deps;
    const d = store.get('Deployment', name);
    if (!d || d.spec.mode !== 'global') return;
    // Referenced ConfigMaps/Secrets are part of the revision (issue 7), as in DeploymentController.
    const hash = templateHash(d, configHash(store, d.spec.template.spec));
    const template = this.templatePod(d);
    const ctx = podContext(template);
    const ts = now();
    let unscheduled = 0;
    const noRoom: string[] = [];
    store.transaction(() => {
      const nodes = store.list('Node').filter((n) => n.metadata.deletionTimestamp === undefined);
      const nodeNames = new Set(nodes.map((n) => n.metadata.name));
      const mine = store.list('Pod', { ownerName: name });
      const doomed = new Set<string>();
      const keep = new Map<string, Pod>();
      // Identity first (no capacity): which nodes should have a pod at all.
      const identity = buildSchedNodes(nodes, []);
      const matching = new Set(identity.filter((sn) => passes(MATCH_FILTERS, template, sn, ctx)).map((sn) => sn.name));
      for (const p of mine) {
        const node = p.spec.nodeName;
        const current = p.metadata.annotations[TEMPLATE_HASH_ANNOTATION] === hash && !isTerminal(p);
        if (node === undefined || !nodeNames.has(node) || !matching.has(node) || !current || keep.has(node)) doomed.add(p.metadata.name);
        else keep.set(node, p);
      }
      for (const pod of doomed) store.delete('Pod', pod);
      const lost = mine.filter((p) => doomed.has(p.metadata.name) && p.spec.nodeName !== undefined && !matching.has(p.spec.nodeName)).length;

      const missing = [...matching].filter((n) => !keep.has(n)).sort();
      let created = 0;
      if (missing.length > 0) {
        // Room is judged against every pod still bound, after the deletions above.
        const bound = store.list('Pod').filter((p) => p.spec.nodeName !== undefined && missing.includes(p.spec.nodeName));
        const withPods = new Map(buildSchedNodes(nodes.filter((n) => missing.includes(n.metadata.name)), bound, this.deps.snapshot).map((sn) => [sn.name, sn]));
        for (const nodeName of missing) {
          const sn = withPods.get(nodeName);
          const why = sn === undefined ? 'node not found' : firstReason(ROOM_FILTERS, template, sn, ctx);
          if (why !== undefined) {
            unscheduled++;
            noRoom.push(`${nodeName}: ${why}`);
            continue;
          }
          const pod = newPod(d, hash, nodeName);
          pod.status.conditions = [{ type: 'PodScheduled', status: 'True', lastTransitionTime: ts.toISOString() }];
          store.create(pod);
          created++;
        }
      }
      if (created > 0) recordEvent(store, ts, { kind: 'Deployment', name, type: 'Normal', reason: 'SuccessfulCreate', message: `created ${created} pod(s) on matching nodes` });
      if (lost > 0) recordEvent(store, ts, { kind: 'Deployment', name, type: 'Normal', reason: 'SuccessfulDelete', message: `removed ${lost} pod(s) from nodes that no longer match` });
      if (noRoom.length > 0) recordEvent(store, ts, { kind: 'Deployment', name, type: 'Warning', reason: 'FailedPlacement', message: `no room on ${noRoom.length} matching node(s): ${noRoom.slice(0, 5).join('; ')}${noRoom.length > 5 ? '; …' : ''}` });
      this.writeStatus(d, unscheduled);
    });
    return unscheduled > 0 ? { requeueAfterMs: this.deps.retryMs ?? 30_000 } : undefined;
  }

  /** The deployment's pod as the scheduler sees it, with known image platforms. */
  private templatePod(d: Deployment): SchedPod {
    const imagePlatforms: ImagePlatforms[] = [];
    for (const c of d.spec.template.spec.containers) {
      const known = this.deps.platforms?.known(c.image);
      if (known !== undefined && !imagePlatforms.some((x) => x.image === c.image)) imagePlatforms.push({ image: c.image, platforms: known });
    }
    const pod: SchedPod = { name: d.metadata.name, owner: d.metadata.name, spec: d.spec.template.spec };
    if (imagePlatforms.length > 0) pod.imagePlatforms = imagePlatforms;
    return pod;
  }

  private writeStatus(d: Deployment, unscheduled: number): void {
    const { store } = this.deps;
    const pods = store.list('Pod', { ownerName: d.metadata.name }).filter((p) => !isTerminal(p));
    const ready = pods.filter(isPodReady).length;
    const status: DeploymentStatus = {
      observedGeneration: d.metadata.generation,
      replicas: pods.length,
      readyReplicas: ready,
      availableReplicas: ready,
      unscheduledReplicas: unscheduled,
    };
    const fresh = store.get('Deployment', d.metadata.name);
    if (!fresh || deepEqual(fresh.status, status)) return;
    const next = structuredClone(fresh) as Deployment;
    next.status = status;
    store.update(next);
  }
}

function passes(filters: readonly FilterPlugin[], pod: SchedPod, node: SchedNode, ctx: PodContext): boolean {
  return firstReason(filters, pod, node, ctx) === undefined;
}

function firstReason(filters: readonly FilterPlugin[], pod: SchedPod, node: SchedNode, ctx: PodContext): string | undefined {
  for (const f of filters) {
    const r = f.filter(pod, node, ctx);
    if (r !== undefined) return r;
  }
  return undefined;
}

/** Does global placement on `node` depend on anything that changed? (labels, taints, arch, deletion, capacity) */
function nodeFacts(n: NodeObject): string {
  return JSON.stringify([n.metadata.labels, n.spec.taints, n.status.info?.arch, n.metadata.deletionTimestamp, n.status.capacity]);
}

/** Whether the pod belongs to a global deployment (drain leaves these, as kubectl drain leaves DaemonSet pods). */
export function isGlobalPod(store: Store, pod: Pod): boolean {
  const owner = pod.metadata.ownerName;
  return owner !== undefined && store.get('Deployment', owner)?.spec.mode === 'global';
}
