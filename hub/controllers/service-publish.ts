import { OrchardError } from '../../protocol/errors.js';
import { servicePortFor, type Labels, type ServiceProtocol, type ServiceSpec } from '../../protocol/manifest.js';
import type { NodeObject, ServiceObject } from '../../protocol/objects.js';
import { podHostPorts } from '../scheduler/host-ports.js';
import type { Store } from '../store/store.js';
import { selectorMatches } from '../objects/endpoints.js';
import { isTerminal } from '../objects/pod.js';

/**
 * Published service ports (issue 15): a `publish` entry opens its port on every node its
 * nodeSelector picks (absent: every node), so it must not collide there with another service's
 * publish or a pod's hostPort. Checked at apply (ERR_SERVICE_PORT_CONFLICT) and kept by the
 * scheduler (a pod whose hostPort a service publishes on a node is not placed there).
 */

export interface PublishedPort {
  service: string;
  port: number;
  protocol: ServiceProtocol;
  nodeSelector?: Labels | undefined;
}

/** Every port a service spec publishes, with its protocol (that of the service port it forwards to). */
export function publishedPorts(name: string, spec: ServiceSpec): PublishedPort[] {
  const out: PublishedPort[] = [];
  for (const pub of spec.publish ?? []) {
    const sp = servicePortFor(spec.ports, pub.servicePort);
    if (sp !== undefined) out.push({ service: name, port: pub.port, protocol: sp.protocol, nodeSelector: pub.nodeSelector });
  }
  return out;
}

/**
 * Whether two node selectors may pick a common node, judged conservatively (without looking at
 * today's nodes, which change): only a key both require with different values rules it out.
 */
export function selectorsMayOverlap(a: Labels | undefined, b: Labels | undefined): boolean {
  if (a === undefined || b === undefined) return true;
  for (const [k, v] of Object.entries(a)) if (k in b && b[k] !== v) return false;
  return true;
}

/** Whether `node` publishes the entry. */
export function publishesOn(p: Pick<PublishedPort, 'nodeSelector'>, node: Pick<NodeObject, 'metadata'>): boolean {
  return p.nodeSelector === undefined || selectorMatches(p.nodeSelector, node.metadata.labels);
}

/**
 * Refuses a service spec whose published ports collide with another service's publish (same
 * port and protocol, node selectors that may overlap) or with a hostPort of a pod bound to a node
 * it would publish on. ERR_SERVICE_PORT_CONFLICT naming the field and the other owner.
 */
export function checkPublishConflicts(store: Store, name: string, spec: ServiceSpec, fieldPrefix = ''): void {
  const mine = publishedPorts(name, spec);
  if (mine.length === 0) return;
  const issues: Array<{ path: string; message: string }> = [];
  const others = store
    .list('Service')
    .filter((s: ServiceObject) => s.metadata.name !== name)
    .flatMap((s) => publishedPorts(s.metadata.name, s.spec));
  let nodes: NodeObject[] | undefined;
  (spec.publish ?? []).forEach((pub, i) => {
    const p = mine.find((m) => m.port === pub.port && m.nodeSelector === pub.nodeSelector);
    if (p === undefined) return;
    const path = `${fieldPrefix}spec.publish[${i}].port`;
    const svc = others.find((o) => o.port === p.port && o.protocol === p.protocol && selectorsMayOverlap(o.nodeSelector, p.nodeSelector));
    if (svc !== undefined) {
      issues.push({ path, message: `port ${p.port}/${p.protocol} is already published by service "${svc.service}" on nodes this one may publish on` });
      return;
    }
    nodes ??= store.list('Node');
    for (const n of nodes) {
      if (!publishesOn(p, n)) continue;
      const pod = store
        .list('Pod', { nodeName: n.metadata.name })
        .find((x) => !isTerminal(x) && podHostPorts(x.spec).some((w) => w.port === p.port && w.protocol === p.protocol));
      if (pod !== undefined) {
        issues.push({ path, message: `port ${p.port}/${p.protocol} is a hostPort of pod "${pod.metadata.name}" on node ${n.metadata.name}` });
        return;
      }
    }
  });
  if (issues.length > 0) {
    throw new OrchardError('ERR_SERVICE_PORT_CONFLICT', `service "${name}": ${issues.map((x) => `${x.path}: ${x.message}`).join('; ')}`, {
      details: { issues },
    });
  }
}

/**
 * The host-port keys (`TCP/0.0.0.0/PORT`, as hostPortKey) services publish on a node with these
 * labels: the scheduler's host-port filter treats them as taken. Undefined when none.
 */
export function publishedPortKeys(ports: readonly PublishedPort[], labels: Labels): Set<string> | undefined {
  let out: Set<string> | undefined;
  for (const p of ports)
    if (p.nodeSelector === undefined || selectorMatches(p.nodeSelector, labels)) (out ??= new Set()).add(`${p.protocol}/0.0.0.0/${p.port}`);
  return out;
}

/** Every published port of every stored service. */
export function allPublishedPorts(store: Store): PublishedPort[] {
  return store.list('Service').flatMap((s) => publishedPorts(s.metadata.name, s.spec));
}
