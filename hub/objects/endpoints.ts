import type { Labels, ServiceProtocol } from '../../protocol/manifest.js';
import type { EndpointTarget, NodeObject, Pod, ServiceEndpoint, ServiceObject } from '../../protocol/objects.js';
import { isNodeReady } from './node.js';
import { isTerminal } from './pod.js';

/**
 * A Service's endpoints (issue 15, docs/services.md "How endpoints are computed"). Pure: the
 * inputs are read, never modified; endpoint ports come from an injected lookup (the controller's
 * EndpointPortAllocator), so this stays a function of its arguments.
 *
 * - Members: pods whose labels include every `spec.selector` pair, bound to a node and not
 *   terminal (Succeeded/Failed). Sorted by pod name.
 * - `ready`: the pod is Running with condition Ready True, is not terminating, and its node
 *   exists and is Ready. As in Kubernetes, a pod on a NotReady (lost) node stays listed but is not
 *   ready: the node lifecycle controller there marks such pods Ready=False, which takes them out
 *   of EndpointSlices the same way. Clients then use other copies; the endpoint's own agent
 *   overrides readiness of its local endpoints with its probes, so a partitioned node keeps
 *   serving its own clients.
 * - `terminating`: the pod has a deletionTimestamp (then also not ready, as Kubernetes'
 *   EndpointSlice `ready` for terminating endpoints).
 * - `reason` (when not ready, or when a named targetPort could not be resolved): one line for
 *   `orchard describe service`.
 * - targets: one per service port whose `targetPort` resolves on this pod. A number is used as
 *   is; a name is looked up in the pod's containers' `ports` with the same protocol; absent =
 *   the service port. An unresolvable name omits that target; an endpoint with no target at all
 *   is not ready.
 * - `endpointPort`: only when the node has an advertise address and the lookup gives one.
 */

/** Gives the endpoint port of (node, pod uid, targetPort, protocol), or undefined when none could be allocated. */
export type EndpointPortLookup = (node: string, uid: string, targetPort: number, protocol: ServiceProtocol) => number | undefined;

export function selectorMatches(selector: Labels, labels: Labels): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** The pods a service selects that can be endpoints: bound to a node, not terminal. */
export function servicePods(service: Pick<ServiceObject, 'spec'>, pods: readonly Pod[]): Pod[] {
  return pods.filter(
    (p) => p.spec.nodeName !== undefined && p.spec.nodeName !== '' && !isTerminal(p) && selectorMatches(service.spec.selector, p.metadata.labels),
  );
}

/** A service port's targetPort on one pod: the container port number, or undefined when a name is not found. */
export function resolveTargetPort(pod: Pod, port: { port: number; targetPort?: number | string | undefined; protocol: ServiceProtocol }): number | undefined {
  const ref = port.targetPort;
  if (ref === undefined) return port.port;
  if (typeof ref === 'number') return ref;
  for (const c of pod.spec.containers) {
    for (const p of c.ports ?? []) if (p.name === ref && (p.protocol ?? 'TCP') === port.protocol) return p.containerPort;
  }
  return undefined;
}

/** Why a pod is not ready, from its own status (phase, containers, Ready condition); undefined when it is. */
export function podNotReadyReason(p: Pod): string | undefined {
  if (p.status.phase !== 'Running') return `pod is ${p.status.phase}${p.status.reason ? ` (${p.status.reason})` : ''}`;
  const ready = p.status.conditions.find((c) => c.type === 'Ready');
  if (ready?.status === 'True') return undefined;
  const notReady = p.status.containerStatuses.find((c) => !c.ready);
  if (notReady !== undefined) {
    const why = notReady.reason ?? (notReady.state === 'running' ? 'readiness probe failing' : notReady.state);
    return `container ${notReady.name} not ready (${why})`;
  }
  if (ready === undefined) return 'pod has no Ready condition yet';
  return `pod Ready is ${ready.status}${ready.reason ? ` (${ready.reason})` : ''}`;
}

export function computeEndpoints(
  service: Pick<ServiceObject, 'spec'>,
  pods: readonly Pod[],
  nodes: ReadonlyMap<string, NodeObject>,
  /** Absent: no endpoint ports are allocated and none is said to be missing (pure tests of membership and readiness). */
  endpointPort?: EndpointPortLookup,
): ServiceEndpoint[] {
  const out: ServiceEndpoint[] = [];
  const members = servicePods(service, pods).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  for (const p of members) {
    const nodeName = p.spec.nodeName as string;
    const node = nodes.get(nodeName);
    const address = node?.status.info?.advertiseAddress;
    const terminating = p.metadata.deletionTimestamp !== undefined;
    const targets: EndpointTarget[] = [];
    const missing: string[] = [];
    let noPort = false;
    for (const sp of service.spec.ports) {
      const targetPort = resolveTargetPort(p, sp);
      if (targetPort === undefined) {
        missing.push(`${String(sp.targetPort)}/${sp.protocol}`);
        continue;
      }
      const t: EndpointTarget = { port: sp.port, protocol: sp.protocol, targetPort };
      if (address !== undefined && endpointPort !== undefined) {
        const ep = endpointPort(nodeName, p.metadata.uid, targetPort, sp.protocol);
        if (ep !== undefined) t.endpointPort = ep;
        else noPort = true;
      }
      targets.push(t);
    }
    let reason: string | undefined;
    if (terminating) reason = 'pod is terminating';
    else if (node === undefined) reason = `node ${nodeName} is not registered`;
    else if (!isNodeReady(node)) reason = `node ${nodeName} is NotReady`;
    else reason = podNotReadyReason(p);
    if (reason === undefined && targets.length === 0) reason = 'no service port resolves on this pod';
    const ready = reason === undefined;
    // Ready for clients on its own node, but not reachable from other nodes: say so (describe).
    const notes: string[] = [];
    if (missing.length > 0) notes.push(`no container port named ${missing.join(', ')}`);
    if (noPort) notes.push(`no endpoint port free on node ${nodeName} (hub --endpoint-ports range full): other nodes cannot reach it`);
    else if (address === undefined && node !== undefined && endpointPort !== undefined)
      notes.push(`node ${nodeName} reports no advertise address: only clients on that node reach it`);
    for (const note of notes) reason = reason === undefined ? note : `${reason}; ${note}`;
    const e: ServiceEndpoint = { pod: p.metadata.name, uid: p.metadata.uid, node: nodeName, ready, terminating, targets };
    if (address !== undefined) e.address = address;
    if (reason !== undefined) e.reason = reason.slice(0, 256);
    out.push(e);
  }
  return out;
}

/** Names of the nodes a publish entry's nodeSelector picks (absent selector: undefined = every node). */
export function publishNodes(nodeSelector: Labels | undefined, nodes: Iterable<NodeObject>): string[] | undefined {
  if (nodeSelector === undefined) return undefined;
  const out: string[] = [];
  for (const n of nodes) if (selectorMatches(nodeSelector, n.metadata.labels)) out.push(n.metadata.name);
  return out.sort();
}
