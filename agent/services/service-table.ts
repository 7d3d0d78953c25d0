import type { ServiceProtocol } from '../../protocol/manifest.js';
import type { ServiceMessage } from '../../protocol/messages.js';
import { endpointId, type Endpoint } from './balancer.js';
import type { ServiceRecord } from './dns-answer.js';
import { DNS_ORDINAL, parseServiceCidr, serviceAddress, type ServiceCidr } from './service-cidr.js';
import type { ActiveServices } from './service-state.js';
import type { ServiceTable, TableEndpointPort, TableListener } from './service-table-types.js';

/**
 * Pure: the active services (service-state.ts) and this node's own pods → the ServiceTable the
 * data plane applies. No I/O, no clock; table-tested in service-table.test.ts. Built per service
 * (serviceFragment) and assembled (assembleTable), so ServiceTableCache (service-table-cache.ts)
 * can rebuild only the services that changed and get the same table.
 *
 * Endpoints are ready, not terminating pods:
 * - Local ones (endpoint.node === this node) follow the LOCAL view, not the hub's `ready`: this
 *   agent's own probes and observation win at once, both ways (the hub hears of a change a round
 *   trip later, or never while it is unreachable). A pod the hub lists but which is not running
 *   here (gone, being stopped) is out. They are dialled at the container's bridge address and
 *   its targetPort.
 * - Remote ones are dialled at the node's advertise address and the endpoint port that node
 *   opens; without either they are skipped. A `local` service uses local endpoints only.
 */

/** This agent's view of one of its own pods. */
export interface LocalPod {
  /** The pod's bridge address (its network owner's; 127.0.0.1 for `network: host`); '' when not running. */
  host: string;
  /** The agent's own readiness (probes; running without a readiness probe = ready). */
  ready: boolean;
  /** Leaving: out of the desired set, or about to be stopped (replaced, killed, restarted). */
  terminating: boolean;
}

export interface ServiceTableInput {
  state: ActiveServices;
  node: string;
  serviceCidr: string | ServiceCidr;
  /** Where this node's endpoint ports listen; absent = none are opened. */
  advertiseAddress?: string;
  /** Where published ports listen (default 0.0.0.0 in `orchard agent`). */
  publishAddress: string;
  /** Pod uid → local view, for the pods this agent runs. */
  local: ReadonlyMap<string, LocalPod>;
}

type ServiceEndpointOf = ServiceMessage['endpoints'][number];

const byId = (a: { id: string }, b: { id: string }): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** Where connections to `port`/`protocol` of `svc` may go, on this node's view. */
function endpointsFor(svc: ServiceMessage, port: number, protocol: ServiceProtocol, node: string, local: ReadonlyMap<string, LocalPod>): Endpoint[] {
  const out = new Map<string, Endpoint>();
  for (const e of svc.endpoints) {
    const t = e.targets.find((x) => x.port === port && x.protocol === protocol);
    if (t === undefined) continue;
    if (e.node === node) {
      const lp = usableLocal(e, local);
      if (lp === undefined) continue;
      const id = endpointId(lp.host, t.targetPort);
      out.set(id, { id, host: lp.host, port: t.targetPort, local: true });
      continue;
    }
    if (svc.trafficPolicy === 'local') continue;
    if (!e.ready || e.terminating || e.address === undefined || e.address === '' || t.endpointPort === undefined) continue;
    const id = endpointId(e.address, t.endpointPort);
    out.set(id, { id, host: e.address, port: t.endpointPort, local: false });
  }
  return [...out.values()].sort(byId);
}

/** The local pod behind a hub endpoint when it may take new connections; undefined otherwise. */
function usableLocal(e: ServiceEndpointOf, local: ReadonlyMap<string, LocalPod>): LocalPod | undefined {
  const lp = local.get(e.uid);
  // The hub's `terminating` still counts (the pod is being deleted), its `ready` does not.
  if (lp === undefined || !lp.ready || lp.terminating || e.terminating || lp.host === '') return undefined;
  return lp;
}

function listener(svc: ServiceMessage, key: string, address: string, port: number, protocol: ServiceProtocol, endpoints: Endpoint[]): TableListener {
  const l: TableListener = { key, service: svc.service, address, port, protocol, policy: svc.trafficPolicy, endpoints };
  if (svc.affinityTimeoutSeconds !== undefined) l.affinity = { timeoutSeconds: svc.affinityTimeoutSeconds };
  return l;
}

/** What every service's fragment is built against: constant for one agent. */
export interface TableContext {
  node: string;
  cidr: ServiceCidr;
  advertiseAddress?: string;
  publishAddress: string;
}

/**
 * One service's part of the table, a pure function of its message, the node and the local pods it
 * reads (its endpoints on this node). Publish listeners and endpoint ports are candidates: the
 * table keeps the first of each key across services (assembleTable).
 */
export interface ServiceFragment {
  address: string;
  record: ServiceRecord;
  listeners: TableListener[];
  publish: TableListener[];
  endpointPorts: TableEndpointPort[];
}

export function tableContext(input: Pick<ServiceTableInput, 'node' | 'serviceCidr' | 'advertiseAddress' | 'publishAddress'>): TableContext {
  const cidr = typeof input.serviceCidr === 'string' ? parseServiceCidr(input.serviceCidr) : input.serviceCidr;
  const ctx: TableContext = { node: input.node, cidr, publishAddress: input.publishAddress };
  if (input.advertiseAddress !== undefined) ctx.advertiseAddress = input.advertiseAddress;
  return ctx;
}

export function serviceFragment(svc: ServiceMessage, ctx: TableContext, local: ReadonlyMap<string, LocalPod>): ServiceFragment {
  const { node } = ctx;
  const address = serviceAddress(ctx.cidr, svc.ordinal);
  const record: ServiceRecord = {
    name: svc.service,
    address,
    ports: svc.ports.map((p) => (p.name === undefined ? { port: p.port, protocol: p.protocol } : { name: p.name, port: p.port, protocol: p.protocol })),
  };
  const listeners = svc.ports.map((p) =>
    listener(svc, `${svc.service}/${p.port}/${p.protocol}`, address, p.port, p.protocol, endpointsFor(svc, p.port, p.protocol, node, local)),
  );
  const publish: TableListener[] = [];
  for (const p of svc.publish) {
    if (p.nodes !== undefined && !p.nodes.includes(node)) continue;
    publish.push(
      listener(svc, `publish/${p.port}/${p.protocol}`, ctx.publishAddress, p.port, p.protocol, endpointsFor(svc, p.servicePort, p.protocol, node, local)),
    );
  }
  const endpointPorts: TableEndpointPort[] = [];
  if (ctx.advertiseAddress !== undefined) {
    for (const e of svc.endpoints) {
      if (e.node !== node) continue;
      const lp = local.get(e.uid);
      if (lp === undefined || lp.host === '') continue;
      for (const t of e.targets) {
        if (t.endpointPort === undefined) continue;
        endpointPorts.push({
          key: `${t.endpointPort}/${t.protocol}`,
          port: t.endpointPort,
          protocol: t.protocol,
          target: { host: lp.host, port: t.targetPort },
          uid: e.uid,
          ready: lp.ready && !lp.terminating && !e.terminating,
        });
      }
    }
  }
  return { address, record, listeners, publish, endpointPorts };
}

/** The table's `peers`: the fleet's advertise addresses, deduplicated and sorted. */
export function tablePeers(peers: Readonly<Record<string, string>>): string[] {
  return [...new Set(Object.values(peers).filter((a) => a !== ''))].sort();
}

/** `prev` when `next` holds the same items (===) in the same order: unchanged parts keep their identity. */
function reuse<T>(prev: readonly T[] | undefined, next: T[]): T[] {
  if (prev === undefined || prev.length !== next.length) return next;
  for (let i = 0; i < next.length; i++) if (prev[i] !== next[i]) return next;
  return prev as T[];
}

/**
 * The whole table from the services' fragments (in the services' order). With `prev`, every array
 * whose items are the same objects as prev's is prev's array, and an unchanged table is prev
 * itself, so the data plane can skip what did not change by identity.
 */
export function assembleTable(fragments: readonly ServiceFragment[], ctx: TableContext, peers: string[], prev?: ServiceTable): ServiceTable {
  const dnsAddress = serviceAddress(ctx.cidr, DNS_ORDINAL);
  const addresses = [dnsAddress];
  const records: ServiceRecord[] = [];
  const listeners: TableListener[] = [];
  const publish: TableListener[] = [];
  const publishKeys = new Set<string>();
  const endpointPorts = new Map<string, TableEndpointPort>();
  for (const f of fragments) {
    addresses.push(f.address);
    records.push(f.record);
    for (const l of f.listeners) listeners.push(l);
    for (const l of f.publish) {
      // The hub refuses a second publish of a port (ERR_SERVICE_PORT_CONFLICT); should two arrive anyway, the first by name wins.
      if (publishKeys.has(l.key)) continue;
      publishKeys.add(l.key);
      publish.push(l);
    }
    // Services selecting the same pod and port share its endpoint port (the hub allocates per pod × targetPort × protocol).
    for (const p of f.endpointPorts) if (!endpointPorts.has(p.key)) endpointPorts.set(p.key, p);
  }
  const table: ServiceTable = {
    dnsAddress,
    records: reuse(prev?.records, records),
    addresses: reuse(prev?.addresses, [...new Set(addresses)]),
    listeners: reuse(prev?.listeners, listeners),
    publish: reuse(prev?.publish, publish),
    endpointPorts: reuse(
      prev?.endpointPorts,
      [...endpointPorts.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    ),
    peers: reuse(prev?.peers, peers),
  };
  if (ctx.advertiseAddress !== undefined) table.advertiseAddress = ctx.advertiseAddress;
  if (
    prev !== undefined &&
    prev.dnsAddress === table.dnsAddress &&
    prev.advertiseAddress === table.advertiseAddress &&
    prev.records === table.records &&
    prev.addresses === table.addresses &&
    prev.listeners === table.listeners &&
    prev.publish === table.publish &&
    prev.endpointPorts === table.endpointPorts &&
    prev.peers === table.peers
  )
    return prev;
  return table;
}

/** The whole table from scratch (ServiceTableCache builds the same table incrementally). */
export function buildServiceTable(input: ServiceTableInput): ServiceTable {
  const ctx = tableContext(input);
  return assembleTable(
    input.state.services.map((svc) => serviceFragment(svc, ctx, input.local)),
    ctx,
    tablePeers(input.state.peers),
  );
}
