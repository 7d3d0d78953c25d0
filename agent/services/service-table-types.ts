import type { ServiceProtocol, TrafficPolicy } from '../../protocol/manifest.js';
import type { ServiceCountersReport } from '../../protocol/messages.js';
import type { Endpoint } from './balancer.js';
import type { ServiceRecord } from './dns-answer.js';

/**
 * The agent's whole service state at one moment, as the data plane applies it (issue 15,
 * docs/design/services.md). Built by a pure function from the hub's service messages, the
 * index and the local pods (uid → bridge address, local readiness); applied by the data plane
 * (addresses on `lo`, TCP/UDP listeners, endpoint ports, the name server). Level-triggered:
 * every apply gets the whole table and diffs it against what is running.
 */

/** A listener on a service address (`base + ordinal`) or on the publish address. */
export interface TableListener {
  /** `service/port/protocol` (a service port) or `publish/port/protocol`: stable identity for diffing. */
  key: string;
  service: string;
  address: string;
  port: number;
  protocol: ServiceProtocol;
  policy: TrafficPolicy;
  affinity?: { timeoutSeconds: number };
  /**
   * Ready, not terminating endpoints. Local ones: the container's bridge address and its
   * targetPort (`local: true`); remote ones: the node's advertise address and the endpoint port
   * (`local: false`: TCP waits for the one-byte preamble).
   */
  endpoints: Endpoint[];
}

/** A port this node opens on its advertise address for one local endpoint (pod × targetPort × protocol). */
export interface TableEndpointPort {
  /** `endpointPort/protocol`. */
  key: string;
  port: number;
  protocol: ServiceProtocol;
  /** The local container: bridge address and targetPort. */
  target: { host: string; port: number };
  /** Pod uid (counters, logs). */
  uid: string;
  /** Listening only while the local pod is ready and not terminating; closed otherwise (a source then fails over at once). */
  ready: boolean;
}

export interface ServiceTable {
  /** The name server's address (`base + 1`); pods get it as their nameserver. */
  dnsAddress: string;
  /** Names the name server answers: every active service, `NAME` and `NAME.svc.orchard`. */
  records: ServiceRecord[];
  /** Addresses that must be on `lo` (dns address + every active service's address). */
  addresses: string[];
  /** Listeners on service addresses. */
  listeners: TableListener[];
  /** Listeners on the publish address (services whose `publish` names this node). */
  publish: TableListener[];
  /** Where endpoint ports listen (the advertise address); absent = none are opened. */
  advertiseAddress?: string;
  endpointPorts: TableEndpointPort[];
  /** Source addresses endpoint ports accept (the fleet's advertise addresses). */
  peers: string[];
}

export const EMPTY_SERVICE_TABLE: ServiceTable = {
  dnsAddress: '',
  records: [],
  addresses: [],
  listeners: [],
  publish: [],
  endpointPorts: [],
  peers: [],
};

/**
 * What applies a ServiceTable: `agent/services/proxy.ts` (ServiceProxy) in production, a
 * recording fake in unit tests. `apply` is called with the whole table after every change and
 * is single flight (a call while one runs waits, then applies the newest table); it never
 * rejects for one bad listener: failures are logged and reported by `status()`.
 */
export interface ServiceDataPlane {
  apply(table: ServiceTable): Promise<void>;
  /** Per listener key: bound or the bind error; per endpoint counters (describe, tests). */
  status(): DataPlaneStatus;
  /**
   * Per service, what its TCP listeners on this node counted since they opened (only services
   * with a non-zero counter); the agent reports it to the hub with its usage heartbeat. Cheap: a
   * walk over the listeners.
   */
  serviceCounters(): ServiceCountersReport;
  /** Closes every listener and the name server; leaves `lo` addresses (workloads keep running). */
  close(): Promise<void>;
}

export interface DataPlaneStatus {
  listeners: { key: string; address: string; port: number; protocol: ServiceProtocol; bound: boolean; error?: string; endpoints: number }[];
  endpointPorts: { key: string; listening: boolean; error?: string }[];
  /** Connections and failures per endpoint id (`host:port`). */
  counters: Record<string, { connections: number; failures: number; ejections: number }>;
  /** The name server: absent while the table has no DNS address. */
  dns?: { address: string; port: number; listening: boolean; error?: string };
}
