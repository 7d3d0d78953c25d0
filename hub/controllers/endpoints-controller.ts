import { systemClock, type Clock, type TimerHandle } from '../../protocol/clock.js';
import { ERROR_CATALOGUE } from '../../protocol/errors.js';
import { servicePortFor, type ServiceProtocol } from '../../protocol/manifest.js';
import { encodeMessage, type ServiceIndexMessage, type ServiceMessage } from '../../protocol/messages.js';
import type { NodeObject, Pod, ServiceObject } from '../../protocol/objects.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { recordEvent } from '../events.js';
import { deepEqual, shortHash } from '../hash.js';
import type { Logger } from '../log.js';
import { setCondition } from '../objects/conditions.js';
import { computeEndpoints, publishNodes, selectorMatches } from '../objects/endpoints.js';
import { isNodeReady, readsEpoch } from '../objects/node.js';
import { isPodReady, isTerminal } from '../objects/pod.js';
import { DEFAULT_ENDPOINT_PORTS, EndpointPortAllocator, OrdinalAllocator, type PortRange } from '../objects/service-allocation.js';
import { podHostPorts } from '../scheduler/host-ports.js';
import type { Store, WatchEvent } from '../store/store.js';
import { WorkQueue } from './workqueue.js';

/**
 * Services (issue 15): keeps each Service's status (ordinal, endpoints, conditions) and ships it
 * to every agent as a retained, QoS 1, deflated ServiceMessage on `orchard/v1/services/{name}`,
 * plus the ServiceIndexMessage (which services exist, every node's advertise address) on
 * `orchard/v1/service-index`. Keys are service names (and INDEX_KEY for the index).
 *
 * Events only mark keys dirty; dirty keys reach the queue after a short merge window
 * (`mergeMs`, default 20 ms) so a rollout's burst of pod writes costs one pass and one publish per
 * service. reconcile(name) re-reads everything, writes the status apart from the spec only when it
 * changed, and publishes only when the message's content (all but generation and `at`) changed.
 * Generation = store revision at publish, so it grows across hub restarts. On start every
 * service and the index are published once: aedes keeps retained messages in memory only.
 *
 * A deleted service: the index without it goes out first, then its retained topic is cleared
 * with an empty payload (an agent that sees the topic cleared before the index would otherwise
 * hold a listed service without a message, which it ignores anyway).
 */
const INDEX_KEY = '#index';
const DEFAULT_MERGE_MS = 20;
/** ServiceMessageSchema allows at most this many endpoints. */
const MAX_MESSAGE_ENDPOINTS = 1000;

export interface EndpointsControllerDeps {
  store: Store;
  publisher: Publisher;
  log: Logger;
  now: () => Date;
  clock?: Clock;
  /** `orchard hub --endpoint-ports` (default 30000-30999). */
  endpointPorts?: PortRange;
  /** Ordinal range (tests shrink it; default SERVICE_ORDINAL_MIN..MAX). */
  ordinals?: PortRange;
  /** Merge window for event bursts (default 20 ms; 0 = enqueue at once). */
  mergeMs?: number;
  /**
   * The leader epoch of a hub on etcd (docs/design/ha.md "Epochs"). These topics are broadcast, so
   * it is stamped only while every node's agent reads it (an older agent would refuse the message).
   */
  epoch?: number;
}

export class EndpointsController {
  readonly queue: WorkQueue;
  readonly ordinals: OrdinalAllocator;
  readonly ports: EndpointPortAllocator;
  /** Service messages and index messages published (tests, metrics). */
  published = { services: 0, index: 0, cleared: 0 };
  private readonly lastHash = new Map<string, string>();
  private lastIndexHash: string | undefined;
  /** Cached advertiseOwners(); reset when a node's advertise address changes. */
  private owners: Map<string, string> | undefined;
  /**
   * Nodes whose agent does not read epochs, kept from Node events: the stamp is on while this is
   * empty. Counted incrementally, never by listing the fleet: a list of every node per added node
   * made registration O(nodes²) — 9 % of a 10,000-node hub's CPU while the fleet registered on
   * etcd, where epochs exist (docs/benchmarks.md, 2026-12-05).
   */
  private readonly epochBlind = new Set<string>();
  /** Services whose message has been published since start (the index lists these). */
  private readonly active = new Set<string>();
  /** Selector and publish of every stored service (for matching pod and node events without a store read). */
  private readonly services = new Map<string, ServiceObject>();
  /** Nodes each service had endpoints on at its last pass. */
  private readonly endpointNodes = new Map<string, Set<string>>();
  /** Services left without an ordinal: retried when one is freed. */
  private readonly waitingOrdinal = new Set<string>();
  private readonly dirty = new Set<string>();
  private timer: TimerHandle | undefined;
  private readonly clock: Clock;
  private unwatch: (() => void) | undefined;

  constructor(private readonly deps: EndpointsControllerDeps) {
    this.clock = deps.clock ?? systemClock;
    this.ordinals = deps.ordinals ? new OrdinalAllocator(deps.ordinals.min, deps.ordinals.max) : new OrdinalAllocator();
    this.ports = new EndpointPortAllocator(deps.endpointPorts ?? DEFAULT_ENDPOINT_PORTS);
    this.queue = new WorkQueue('endpoints', (key) => (key === INDEX_KEY ? this.publishIndex() : this.reconcile(key)), deps.log, { clock: this.clock });
  }

  start(): void {
    const { store } = this.deps;
    this.unwatch = store.watch((ev) => this.onEvent(ev), ['Service', 'Pod', 'Node']);
    for (const n of store.list('Node')) if (!readsEpoch(n)) this.epochBlind.add(n.metadata.name);
    // Allocation state from the stored statuses first, so a restart keeps every number.
    const all = store.list('Service');
    for (const s of all) {
      this.services.set(s.metadata.name, s);
      if (s.status.ordinal !== undefined && !this.ordinals.load(s.metadata.name, s.status.ordinal))
        this.deps.log.warn('service ordinal taken by another service; a new one is allocated', { service: s.metadata.name, ordinal: s.status.ordinal });
      this.ports.load(s);
    }
    for (const s of all) this.queue.add(s.metadata.name);
    this.queue.add(INDEX_KEY);
  }

  stop(): void {
    this.unwatch?.();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.stop();
  }

  /** Waits until nothing is dirty, queued or running (tests). */
  async idle(): Promise<void> {
    for (let i = 0; i < 50 && (this.dirty.size > 0 || this.timer !== undefined || this.queue.length > 0); i++) {
      this.flush();
      await this.queue.idle();
    }
    await this.queue.idle();
  }

  /** Moves dirty keys to the queue now (end of the merge window). */
  flush(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const k of this.dirty) this.queue.add(k);
    this.dirty.clear();
  }

  private mark(key: string): void {
    const ms = this.deps.mergeMs ?? DEFAULT_MERGE_MS;
    if (ms <= 0) return this.queue.add(key);
    this.dirty.add(key);
    if (this.timer === undefined) this.timer = this.clock.setTimeout(() => this.flush(), ms);
  }

  private onEvent(ev: WatchEvent): void {
    const o = ev.object;
    if (o.kind === 'Service') {
      const name = o.metadata.name;
      const old = this.services.get(name);
      if (ev.type === 'DELETED') this.services.delete(name);
      else this.services.set(name, o);
      // Our own status writes change nothing we compute from.
      if (ev.type === 'MODIFIED' && old !== undefined && old.metadata.generation === o.metadata.generation) return;
      this.mark(name);
      // Publish conflicts and avoided ports of the other publishing services may change with it.
      if ((old?.spec.publish?.length ?? 0) > 0 || (o.spec.publish?.length ?? 0) > 0) for (const s of this.publishing()) if (s !== name) this.mark(s);
    } else if (o.kind === 'Pod') {
      const old = ev.type === 'MODIFIED' && ev.old?.kind === 'Pod' ? ev.old : undefined;
      if (old !== undefined && !podChanged(old, o)) return;
      const prev = ev.type === 'MODIFIED' ? old : undefined;
      for (const [name, s] of this.services) {
        if (selectorMatches(s.spec.selector, o.metadata.labels) || (prev !== undefined && selectorMatches(s.spec.selector, prev.metadata.labels)))
          this.mark(name);
      }
      // A pod binding host ports changes which endpoint ports and published ports are free there.
      const node = o.spec.nodeName;
      if (node !== undefined && podHostPorts(o.spec).length > 0) this.markNode(node);
    } else if (o.kind === 'Node') {
      const old = ev.type === 'MODIFIED' && ev.old?.kind === 'Node' ? ev.old : undefined;
      if (ev.type !== 'MODIFIED' || readsEpoch(old) !== readsEpoch(o)) {
        const was = this.epochStamp();
        if (ev.type === 'DELETED' || readsEpoch(o)) this.epochBlind.delete(o.metadata.name);
        else this.epochBlind.add(o.metadata.name);
        if (this.epochStamp() !== was) {
          // Every message gains (or loses) its epoch.
          for (const name of this.services.keys()) this.mark(name);
          this.mark(INDEX_KEY);
        }
      }
      if (ev.type === 'MODIFIED' && (old === undefined || !nodeChanged(old, o))) return;
      this.markNode(o.metadata.name);
      if (ev.type !== 'MODIFIED' || old?.status.info?.advertiseAddress !== o.status.info?.advertiseAddress) {
        this.owners = undefined;
        this.mark(INDEX_KEY);
        // Another node that claimed the same address may now own it (or lose it).
        for (const svc of this.endpointNodes.keys()) this.queue.add(svc);
      }
    }
  }

  /** The epoch to stamp on service and index messages: only while every node reads it. */
  private epochStamp(): number | undefined {
    if (this.deps.epoch === undefined) return undefined;
    return this.epochBlind.size === 0 ? this.deps.epoch : undefined;
  }

  /**
   * Advertise address → the node that owns it: the earliest registered of the nodes claiming it.
   * A node naming another node's address (a hostile or misconfigured agent) would otherwise send
   * the fleet's traffic for its endpoints to that node's endpoint ports; it is left without an
   * advertise address instead (its pods reach only its own clients, and describe says so).
   */
  private advertiseOwners(): ReadonlyMap<string, string> {
    if (this.owners !== undefined) return this.owners;
    const owners = new Map<string, { node: string; created: string }>();
    for (const n of this.deps.store.list('Node')) {
      const a = n.status.info?.advertiseAddress;
      if (a === undefined) continue;
      const held = owners.get(a);
      const mine = { node: n.metadata.name, created: n.metadata.creationTimestamp };
      if (held === undefined || mine.created < held.created || (mine.created === held.created && mine.node < held.node)) owners.set(a, mine);
    }
    this.owners = new Map([...owners].map(([a, o]) => [a, o.node]));
    return this.owners;
  }

  /** The node as computeEndpoints sees it: without an advertise address it does not own. */
  private withOwnedAddress(node: NodeObject): NodeObject {
    const a = node.status.info?.advertiseAddress;
    if (a === undefined || this.advertiseOwners().get(a) === node.metadata.name) return node;
    const info = { ...node.status.info } as NonNullable<NodeObject['status']['info']>;
    delete info.advertiseAddress;
    return { ...node, status: { ...node.status, info } };
  }

  /** Services with endpoints on `node`, and every publishing service (its nodes or conflicts may change). */
  private markNode(node: string): void {
    for (const [name, nodes] of this.endpointNodes) if (nodes.has(node)) this.mark(name);
    for (const s of this.publishing()) this.mark(s);
  }

  private publishing(): string[] {
    const out: string[] = [];
    for (const [name, s] of this.services) if ((s.spec.publish?.length ?? 0) > 0) out.push(name);
    return out;
  }

  async reconcile(name: string): Promise<void> {
    const { store, now } = this.deps;
    const svc = store.get('Service', name);
    if (svc === undefined) return this.forget(name);
    const ts = now().toISOString();
    const ordinal = this.ordinals.claim(name, svc.status.ordinal);
    let conditions = svc.status.conditions;
    if (ordinal === undefined) {
      this.waitingOrdinal.add(name);
      const already = conditions.some((c) => c.type === 'OrdinalsExhausted' && c.status === 'True');
      const message = ERROR_CATALOGUE.ERR_SERVICE_ORDINALS_EXHAUSTED.summary;
      conditions = setCondition(conditions, { type: 'OrdinalsExhausted', status: 'True', reason: 'ERR_SERVICE_ORDINALS_EXHAUSTED', message }, ts);
      store.transaction(() => {
        this.writeStatus(svc, { ...svc.status, conditions });
        if (!already)
          recordEvent(store, now(), {
            kind: 'Service',
            name,
            type: 'Warning',
            reason: 'OrdinalsExhausted',
            message: `ERR_SERVICE_ORDINALS_EXHAUSTED: ${message}`,
          });
      });
      return;
    }
    this.waitingOrdinal.delete(name);
    if (conditions.some((c) => c.type === 'OrdinalsExhausted')) conditions = conditions.filter((c) => c.type !== 'OrdinalsExhausted');

    const pods = store.list('Pod', { labelSelector: svc.spec.selector });
    const nodes = new Map<string, NodeObject>();
    for (const p of pods) {
      const n = p.spec.nodeName;
      if (n !== undefined && !nodes.has(n)) {
        const node = store.get('Node', n);
        if (node !== undefined) nodes.set(n, this.withOwnedAddress(node));
      }
    }
    const taken = this.takenPorts();
    const pass = this.ports.begin(name, (node, protocol) => taken(node, protocol));
    const endpoints = computeEndpoints(svc, pods, nodes, pass.lookup);
    pass.end();
    this.endpointNodes.set(name, new Set(endpoints.map((e) => e.node)));

    const ready = endpoints.filter((e) => e.ready).length;
    conditions = setCondition(
      conditions,
      ready === 0
        ? {
            type: 'NoEndpoints',
            status: 'True',
            reason: endpoints.length === 0 ? 'NoMatchingPods' : 'NoReadyEndpoints',
            message: `${ready} of ${endpoints.length} endpoints ready`,
          }
        : { type: 'NoEndpoints', status: 'False', reason: 'EndpointsReady', message: `${ready} of ${endpoints.length} endpoints ready` },
      ts,
    );
    const allNodes = (svc.spec.publish?.length ?? 0) > 0 ? store.list('Node') : [];
    const conflicts = this.publishConflicts(svc, allNodes);
    if ((svc.spec.publish?.length ?? 0) > 0 || conditions.some((c) => c.type === 'PublishPortConflict')) {
      conditions = setCondition(
        conditions,
        conflicts.length > 0
          ? {
              type: 'PublishPortConflict',
              status: 'True',
              reason: 'PortTaken',
              message: conflicts.slice(0, 5).join('; ') + (conflicts.length > 5 ? `; and ${conflicts.length - 5} more` : ''),
            }
          : { type: 'PublishPortConflict', status: 'False', reason: 'PortsFree' },
        ts,
      );
    }
    this.writeStatus(svc, { ordinal, endpoints, conditions, observedGeneration: svc.metadata.generation });

    const message: ServiceMessage = {
      service: name,
      generation: 0,
      at: '',
      ordinal,
      ports: svc.spec.ports.map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), port: p.port, protocol: p.protocol })),
      trafficPolicy: svc.spec.trafficPolicy,
      ...(svc.spec.sessionAffinity !== undefined ? { affinityTimeoutSeconds: svc.spec.sessionAffinity.clientIP.timeoutSeconds } : {}),
      publish: (svc.spec.publish ?? []).flatMap((pub) => {
        const sp = servicePortFor(svc.spec.ports, pub.servicePort);
        if (sp === undefined) return [];
        const on = publishNodes(pub.nodeSelector, allNodes);
        return [{ port: pub.port, servicePort: sp.port, protocol: sp.protocol, ...(on !== undefined ? { nodes: on } : {}) }];
      }),
      endpoints:
        endpoints.length > MAX_MESSAGE_ENDPOINTS ? [...endpoints].sort((a, b) => Number(b.ready) - Number(a.ready)).slice(0, MAX_MESSAGE_ENDPOINTS) : endpoints,
    };
    const epoch = this.epochStamp();
    if (epoch !== undefined) message.epoch = epoch;
    const hash = shortHash({ ...message, generation: undefined, at: undefined }, 16);
    if (this.lastHash.get(name) === hash) return;
    message.generation = store.revision();
    message.at = now().toISOString();
    this.lastHash.set(name, hash);
    try {
      await this.deps.publisher.publish(topics.service(name), encodeMessage(message, 'deflate'), { retain: true, qos: 1 });
    } catch (err) {
      this.lastHash.delete(name);
      throw err;
    }
    this.published.services++;
    if (!this.active.has(name)) {
      this.active.add(name);
      this.mark(INDEX_KEY);
    }
  }

  /** The service is gone: index without it, then its retained topic cleared; its numbers freed. */
  private async forget(name: string): Promise<void> {
    this.ordinals.release(name);
    this.ports.releaseService(name);
    this.endpointNodes.delete(name);
    this.waitingOrdinal.delete(name);
    if (this.active.delete(name)) await this.publishIndex();
    this.lastHash.delete(name);
    await this.deps.publisher.publish(topics.service(name), Buffer.alloc(0), { retain: true, qos: 1 });
    this.published.cleared++;
    // An ordinal was freed: services waiting for one get it.
    for (const w of this.waitingOrdinal) this.queue.add(w);
  }

  async publishIndex(): Promise<void> {
    const { store, now } = this.deps;
    const peers: Record<string, string> = {};
    for (const [a, node] of this.advertiseOwners()) peers[node] = a;
    const services = [...this.active].sort();
    const epoch = this.epochStamp();
    const hash = shortHash({ services, peers, epoch }, 16);
    if (hash === this.lastIndexHash) return;
    const msg: ServiceIndexMessage = { generation: store.revision(), at: now().toISOString(), services, peers, ...(epoch !== undefined ? { epoch } : {}) };
    this.lastIndexHash = hash;
    try {
      await this.deps.publisher.publish(topics.serviceIndex(), encodeMessage(msg, 'deflate'), { retain: true, qos: 1 });
    } catch (err) {
      this.lastIndexHash = undefined;
      throw err;
    }
    this.published.index++;
  }

  private writeStatus(svc: ServiceObject, status: ServiceObject['status']): void {
    if (deepEqual(svc.status, status)) return;
    const next = structuredClone(svc) as ServiceObject;
    next.status = status;
    this.deps.store.update(next);
  }

  /**
   * Per node and protocol, the ports endpoint ports must not use: the node's pods' host ports and
   * the ports services publish there. Computed lazily, once per pass.
   */
  private takenPorts(): (node: string, protocol: ServiceProtocol) => ReadonlySet<number> {
    const cache = new Map<string, Set<number>>();
    const publishing = [...this.services.values()].filter((s) => (s.spec.publish?.length ?? 0) > 0);
    return (node, protocol) => {
      const key = `${node}/${protocol}`;
      let set = cache.get(key);
      if (set !== undefined) return set;
      set = new Set();
      for (const p of this.deps.store.list('Pod', { nodeName: node })) {
        if (isTerminal(p)) continue;
        for (const w of podHostPorts(p.spec)) if (w.protocol === protocol) set.add(w.port);
      }
      if (publishing.length > 0) {
        const n = this.deps.store.get('Node', node);
        for (const s of publishing) {
          for (const pub of s.spec.publish ?? []) {
            const sp = servicePortFor(s.spec.ports, pub.servicePort);
            if (sp?.protocol !== protocol) continue;
            if (pub.nodeSelector === undefined || (n !== undefined && selectorMatches(pub.nodeSelector, n.metadata.labels))) set.add(pub.port);
          }
        }
      }
      cache.set(key, set);
      return set;
    };
  }

  /** "8080/TCP on n1: hostPort of pod x" / "…: published by service y", for each publish port taken on a node it publishes on. */
  private publishConflicts(svc: ServiceObject, nodes: readonly NodeObject[]): string[] {
    const out: string[] = [];
    for (const pub of svc.spec.publish ?? []) {
      const sp = servicePortFor(svc.spec.ports, pub.servicePort);
      if (sp === undefined) continue;
      for (const n of nodes) {
        if (pub.nodeSelector !== undefined && !selectorMatches(pub.nodeSelector, n.metadata.labels)) continue;
        const owner = publishPortOwner(this.deps.store, this.services.values(), svc.metadata.name, n, pub.port, sp.protocol);
        if (owner !== undefined) out.push(`${pub.port}/${sp.protocol} on ${n.metadata.name}: ${owner}`);
      }
    }
    return out;
  }
}

/** Who else holds `port`/`protocol` on `node`: a pod's hostPort or another service's publish; undefined when free. */
export function publishPortOwner(
  store: Store,
  services: Iterable<ServiceObject>,
  self: string,
  node: NodeObject,
  port: number,
  protocol: ServiceProtocol,
): string | undefined {
  for (const p of store.list('Pod', { nodeName: node.metadata.name })) {
    if (isTerminal(p)) continue;
    if (podHostPorts(p.spec).some((w) => w.port === port && w.protocol === protocol)) return `hostPort of pod ${p.metadata.name}`;
  }
  for (const s of services) {
    if (s.metadata.name === self) continue;
    for (const pub of s.spec.publish ?? []) {
      if (pub.port !== port || servicePortFor(s.spec.ports, pub.servicePort)?.protocol !== protocol) continue;
      if (pub.nodeSelector === undefined || selectorMatches(pub.nodeSelector, node.metadata.labels)) return `published by service ${s.metadata.name}`;
    }
  }
  return undefined;
}

/** Whether a pod write can change any service's endpoints (membership, readiness, reasons, ports). */
function podChanged(a: Pod, b: Pod): boolean {
  return (
    a.metadata.uid !== b.metadata.uid ||
    a.metadata.generation !== b.metadata.generation ||
    a.spec.nodeName !== b.spec.nodeName ||
    a.metadata.deletionTimestamp !== b.metadata.deletionTimestamp ||
    a.status.phase !== b.status.phase ||
    a.status.reason !== b.status.reason ||
    isPodReady(a) !== isPodReady(b) ||
    !deepEqual(a.metadata.labels, b.metadata.labels) ||
    !deepEqual(readiness(a), readiness(b))
  );
}

function readiness(p: Pod): unknown {
  return [p.status.conditions.find((c) => c.type === 'Ready'), p.status.containerStatuses.map((c) => [c.name, c.ready, c.state, c.reason])];
}

/** Whether a node write matters to services: advertise address, Ready, labels (publish nodeSelector). */
function nodeChanged(a: NodeObject, b: NodeObject): boolean {
  return (
    a.status.info?.advertiseAddress !== b.status.info?.advertiseAddress || isNodeReady(a) !== isNodeReady(b) || !deepEqual(a.metadata.labels, b.metadata.labels)
  );
}
