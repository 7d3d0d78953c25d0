import type { Deployment, NodeObject, Pod } from '../../protocol/objects.js';
import { recordEvent } from '../events.js';
import type { Logger } from '../log.js';
import { isNodeReady } from '../objects/node.js';
import { isTerminal, templateHash } from '../objects/pod.js';
import type { ImagePlatformSource } from '../registry/image-platform-resolver.js';
import { cpuFit, hostPortsFree, memoryFit, nodeArch, nodeSelector, podCount, taintToleration } from '../scheduler/filters.js';
import { allocateDevices, deviceFit, deviceWants } from '../scheduler/devices.js';
import { imagePlatform } from '../scheduler/image-platforms.js';
import { nodeAffinity } from '../scheduler/node-affinity.js';
import { podContext } from '../scheduler/pod-context.js';
import { buildSchedNodes, type SnapshotOptions } from '../scheduler/snapshot.js';
import { allPublishedPorts, publishedPortKeys } from './service-publish.js';
import type { FilterPlugin, ImagePlatforms, PodContext, SchedNode, SchedPod } from '../scheduler/types.js';
import type { Store, WatchEvent } from '../store/store.js';
import { reconcileRollout } from '../rollout/rollout-reconciler.js';
import { WorkQueue } from './workqueue.js';
import { configHash, referencesConfig } from '../secrets/config-refs.js';

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
 *
 * A changed template (or referenced ConfigMap/Secret) is rolled out node by node as in
 * replicated mode: hub/rollout's reconcileRollout() with planRollout({mode: 'global'}) —
 * revisions, maxSurge/maxUnavailable over the online nodes, canary, pause, progress deadline
 * and rollback, the same status fields. Offline (NotReady) nodes are skipped: their pod keeps
 * its revision until the node is back, then it is updated under the same budget.
 */

/** Node facts a global deployment's match depends on; other node writes (heartbeats) are ignored. */
const MATCH_FILTERS: readonly FilterPlugin[] = [nodeArch, imagePlatform, nodeSelector, nodeAffinity, taintToleration];
const ROOM_FILTERS: readonly FilterPlugin[] = [podCount, cpuFit, memoryFit, hostPortsFree, deviceFit];

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
    this.unwatch = store.watch((ev) => this.onEvent(ev), ['Deployment', 'Node', 'Pod', 'ConfigMap', 'Secret']);
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
    } else if (o.kind === 'ConfigMap' || o.kind === 'Secret') {
      // A changed config is a new revision of every global deployment referencing it.
      for (const d of this.deps.store.list('Deployment'))
        if (d.spec.mode === 'global' && referencesConfig(d.spec.template.spec, o.kind, o.metadata.name)) this.queue.add(d.metadata.name);
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
    return store.transaction(() => {
      const nodes = store.list('Node').filter((n) => n.metadata.deletionTimestamp === undefined);
      const byName = new Map(nodes.map((n) => [n.metadata.name, n]));
      const mine = store.list('Pod', { ownerName: name });
      const live = mine.filter((p) => !isTerminal(p));
      // Identity first (no capacity): which nodes should have a pod at all.
      const identity = buildSchedNodes(nodes, []);
      const matching = new Set(identity.filter((sn) => passes(MATCH_FILTERS, template, sn, ctx)).map((sn) => sn.name));
      const lost = live.filter((p) => p.spec.nodeName !== undefined && !matching.has(p.spec.nodeName)).length;

      // Room is judged against every pod bound there now (the rollout calls this again after its deletions).
      const noRoom = (targets: readonly string[]): Map<string, string> => {
        const want = new Set(targets);
        const bound = store.list('Pod').filter((p) => p.spec.nodeName !== undefined && want.has(p.spec.nodeName));
        const withPods = new Map(
          buildSchedNodes(
            nodes.filter((n) => want.has(n.metadata.name)),
            bound,
            this.deps.snapshot,
          ).map((sn) => [sn.name, sn]),
        );
        // Ports Services publish are taken for hostPort pods (issue 15).
        const published = allPublishedPorts(store);
        if (published.length > 0) for (const sn of withPods.values()) sn.publishedPorts = publishedPortKeys(published, sn.labels);
        const out = new Map<string, string>();
        for (const nodeName of targets) {
          const sn = withPods.get(nodeName);
          const why = sn === undefined ? 'node not found' : firstReason(ROOM_FILTERS, template, sn, ctx);
          if (why !== undefined) out.set(nodeName, why);
        }
        return out;
      };
      // A matching node with no pod yet and no room for one waits (retried on a timer); it is not
      // counted as a node that should run the pod, so it neither blocks nor fails a rollout elsewhere.
      const hasPod = new Set(live.flatMap((p) => (p.spec.nodeName !== undefined ? [p.spec.nodeName] : [])));
      const full = noRoom([...matching].filter((n) => !hasPod.has(n)).sort());
      const eligible = [...matching].filter((n) => !full.has(n)).sort();
      const result = reconcileRollout(this.deps, d, mine, hash, {
        nodes: eligible.map((n) => {
          const node = byName.get(n);
          return { name: n, online: node !== undefined && isNodeReady(node) };
        }),
        waiting: [...full].map(([n, why]) => `${n}: ${why}`),
        noRoom,
        // Host devices (issue 18): picked against the node's holders now, as the scheduler would.
        deviceGrants: (nodeName, spec) => {
          const wants = deviceWants(spec);
          if (wants.length === 0) return undefined;
          const node = byName.get(nodeName);
          if (node === undefined) return undefined;
          const held = store.list('Pod', { nodeName }).filter((p) => !isTerminal(p));
          const sn = buildSchedNodes([node], held, this.deps.snapshot)[0];
          const a = allocateDevices(wants, sn?.devices, sn?.deviceUse);
          return a.ok ? a.grants : undefined;
        },
      });

      const noRoomNow = result.unplaced ?? [];
      if (lost > 0)
        recordEvent(store, ts, {
          kind: 'Deployment',
          name,
          type: 'Normal',
          reason: 'SuccessfulDelete',
          message: `removed ${lost} pod(s) from nodes that no longer match`,
        });
      if (noRoomNow.length > 0)
        recordEvent(store, ts, {
          kind: 'Deployment',
          name,
          type: 'Warning',
          reason: 'FailedPlacement',
          message: `no room on ${noRoomNow.length} matching node(s): ${noRoomNow.slice(0, 5).join('; ')}${noRoomNow.length > 5 ? '; …' : ''}`,
        });
      const retry = noRoomNow.length > 0 ? (this.deps.retryMs ?? 30_000) : undefined;
      const after = Math.min(retry ?? Infinity, result.requeueAfterMs ?? Infinity);
      return Number.isFinite(after) ? { requeueAfterMs: after } : undefined;
    });
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

/** Does global placement on `node` depend on anything that changed? (labels, taints, arch, deletion, capacity, readiness: a node back online is updated; host devices) */
function nodeFacts(n: NodeObject): string {
  return JSON.stringify([
    n.metadata.labels,
    n.spec.taints,
    n.status.info?.arch,
    n.metadata.deletionTimestamp,
    n.status.capacity,
    isNodeReady(n),
    n.status.info?.devices,
  ]);
}

/** Whether the pod belongs to a global deployment (drain leaves these, as kubectl drain leaves DaemonSet pods). */
export function isGlobalPod(store: Store, pod: Pod): boolean {
  const owner = pod.metadata.ownerName;
  return owner !== undefined && store.get('Deployment', owner)?.spec.mode === 'global';
}
