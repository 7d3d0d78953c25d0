import { formatBytes, formatCpu } from '../protocol/quantity.js';
import type { ConfigMapObject, Deployment, EventObject, NodeObject, PersistentVolumeObject, Pod, RevisionObject, SecretObject } from '../protocol/objects.js';
import { ageSince, formatLabels, objectRef, table } from './format.js';
import { nodeWarningsShort } from './node-warnings.js';

/** The `orchard get` tables, one per kind, as kubectl lays them out. */

export function nodeStatus(node: NodeObject): string {
  const ready = node.status.conditions.find((c) => c.type === 'Ready');
  const base = ready?.status === 'True' ? 'Ready' : 'NotReady';
  return node.spec.unschedulable ? `${base},SchedulingDisabled` : base;
}

/** Pods that occupy a node: placed there and not finished. */
export function podsOnNode(pods: readonly Pod[], node: string): Pod[] {
  return pods.filter((p) => p.spec.nodeName === node && p.status.phase !== 'Succeeded' && p.status.phase !== 'Failed');
}

/** The agent process's platform and Node version (`linux/arm node 20.11.0`): an arm agent may drive an x86 engine. */
function agentRuntime(info: NodeObject['status']['info']): string {
  if (info?.agentPlatform === undefined && info?.nodeVersion === undefined) return '<unknown>';
  return [info.agentPlatform, info.nodeVersion === undefined ? undefined : `node ${info.nodeVersion}`].filter((p) => p !== undefined).join(' ');
}

export function nodesTable(nodes: readonly NodeObject[], pods: readonly Pod[], now: number, wide: boolean): string {
  const headers = ['NAME', 'STATUS', 'ARCH', 'CPU', 'MEMORY', 'PODS', 'AGE'];
  if (wide) headers.push('OS', 'ENGINE', 'AGENT', 'AGENT-RUNTIME', 'LABELS');
  const rows = nodes.map((n) => {
    const info = n.status.info;
    const cap = n.status.capacity;
    const cpu = cap !== undefined ? formatCpu(cap.cpuMillis) : info !== undefined ? String(info.cpu.cores) : '<unknown>';
    const mem = cap !== undefined ? formatBytes(cap.memoryBytes) : info !== undefined ? formatBytes(info.memoryBytes) : '<unknown>';
    const row = [
      n.metadata.name,
      nodeStatus(n),
      info?.arch ?? '<unknown>',
      cpu,
      mem,
      String(podsOnNode(pods, n.metadata.name).length),
      ageSince(n.metadata.creationTimestamp, now),
    ];
    if (wide) {
      row.push(
        info?.os ?? '<unknown>',
        (info !== undefined ? `${info.engine.name}://${info.engine.version}` : '<unknown>') +
          (nodeWarningsShort(n) !== undefined ? ` (${nodeWarningsShort(n)})` : ''),
        // A device that rolled an upgrade back says so next to the version it runs.
        (info?.agentVersion ?? '<unknown>') + (info?.upgrade?.rolledBack !== undefined ? ` (rolled back ${info.upgrade.rolledBack.version})` : ''),
        agentRuntime(info),
        formatLabels(n.metadata.labels),
      );
    }
    return row;
  });
  return table(headers, rows);
}

export function desiredReplicas(d: Deployment): number {
  // A global deployment wants one pod per matching node; only the hub knows how many that is.
  return d.spec.mode === 'global' ? d.status.replicas : d.spec.replicas;
}

export function deploymentsTable(deps: readonly Deployment[], now: number, wide: boolean): string {
  const headers = ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE'];
  if (wide) headers.push('MODE', 'CONTAINERS', 'IMAGES');
  const rows = deps.map((d) => {
    const row = [
      d.metadata.name,
      `${d.status.readyReplicas}/${desiredReplicas(d)}`,
      // Pods of the current template (hubs before rollouts did not report it: all pods then).
      String(d.status.updatedReplicas ?? d.status.replicas),
      String(d.status.availableReplicas),
      ageSince(d.metadata.creationTimestamp, now),
    ];
    if (wide) {
      const cs = d.spec.template.spec.containers;
      row.push(d.spec.mode, cs.map((c) => c.name).join(','), cs.map((c) => c.image).join(','));
    }
    return row;
  });
  return table(headers, rows);
}

/**
 * The one word kubectl users look at: a container's waiting/terminated reason
 * (CrashLoopBackOff, ErrImagePull, Error …) beats the pod phase, since the phase alone
 * would say Running or Pending and hide the problem.
 */
export function podStatusText(pod: Pod): string {
  if (pod.metadata.deletionTimestamp !== undefined) return 'Terminating';
  let text: string = pod.status.reason ?? pod.status.phase;
  for (const c of pod.status.containerStatuses) {
    if (c.state === 'waiting' && c.reason !== undefined && c.reason !== '') return c.reason;
    if (c.state === 'terminated' && c.reason !== undefined && c.reason !== '' && pod.status.phase !== 'Succeeded') text = c.reason;
  }
  return text;
}

export function podReady(pod: Pod): string {
  const ready = pod.status.containerStatuses.filter((c) => c.ready).length;
  return `${ready}/${pod.spec.containers.length}`;
}

export function podRestarts(pod: Pod): number {
  return pod.status.containerStatuses.reduce((sum, c) => sum + c.restartCount, 0);
}

export function podsTable(pods: readonly Pod[], now: number, wide: boolean, indent = ''): string {
  const headers = ['NAME', 'READY', 'STATUS', 'RESTARTS', 'NODE', 'AGE'];
  if (wide) headers.push('DEPLOYMENT', 'DEVICES');
  const rows = pods.map((p) => {
    const row = [
      p.metadata.name,
      podReady(p),
      podStatusText(p),
      String(podRestarts(p)),
      p.spec.nodeName ?? '<none>',
      ageSince(p.metadata.creationTimestamp, now),
    ];
    if (wide) row.push(p.metadata.ownerName ?? '<none>', grantedDevicesText(p));
    return row;
  });
  return table(headers, rows, indent);
}

/** `serial:/dev/ttyUSB0` per granted host device (issue 18), or `<none>`. */
export function grantedDevicesText(p: Pod): string {
  const grants = p.spec.deviceGrants ?? [];
  return grants.length === 0 ? '<none>' : grants.map((g) => `${g.class}:${g.id}${g.shared === true ? ' (shared)' : ''}`).join(',');
}

/** The node's host devices (issue 18) and the pods holding each: CLASS, PATH, IDENTITY, HELD BY. */
export function nodeDevicesTable(n: NodeObject, pods: readonly Pod[], indent = ''): string {
  const devices = n.status.info?.devices ?? [];
  const holders = new Map<string, string[]>();
  for (const p of podsOnNode(pods, n.metadata.name)) {
    for (const g of p.spec.deviceGrants ?? []) {
      const list = holders.get(g.id) ?? [];
      list.push(`${p.metadata.name}/${g.container}${g.shared === true ? ' (shared)' : ''}`);
      holders.set(g.id, list);
    }
  }
  const rows = devices.map((d) => {
    const identity = (['vendor', 'product', 'serial', 'model', 'name'] as const)
      .filter((k) => d[k] !== undefined)
      .map((k) => `${k}=${d[k]}`)
      .join(' ');
    const held = [...(holders.get(d.byId ?? d.path) ?? []), ...(d.byId !== undefined ? (holders.get(d.path) ?? []) : [])];
    return [d.class, d.path, identity === '' ? '<none>' : identity, held.length === 0 ? '<free>' : held.join(', ')];
  });
  return table(['CLASS', 'PATH', 'IDENTITY', 'HELD BY'], rows, indent);
}

export function eventsTable(events: readonly EventObject[], now: number): string {
  const rows = events.map((e) => [ageSince(e.lastTimestamp, now), e.type, e.reason, objectRef(e.involvedObject.kind, e.involvedObject.name), e.message]);
  return table(['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE'], rows);
}

/** The Events section of `describe`, with kubectl's "(x3 over 5m)" for repeated events. */
export function describeEventsTable(events: readonly EventObject[], now: number): string {
  if (events.length === 0) return 'Events:  <none>\n';
  const rows = events.map((e) => {
    const age = ageSince(e.lastTimestamp, now);
    const when = e.count > 1 ? `${age} (x${e.count} over ${ageSince(e.firstTimestamp, now)})` : age;
    return [e.type, e.reason, when, e.message];
  });
  return `Events:\n${table(['TYPE', 'REASON', 'AGE', 'MESSAGE'], rows, '  ')}`;
}

export function configMapsTable(items: readonly ConfigMapObject[], now: number): string {
  const rows = items.map((c) => [
    c.metadata.name,
    String(Object.keys(c.data).length + Object.keys(c.binaryData).length),
    ageSince(c.metadata.creationTimestamp, now),
  ]);
  return table(['NAME', 'DATA', 'AGE'], rows);
}

export function secretsTable(items: readonly SecretObject[], now: number): string {
  const rows = items.map((s) => [s.metadata.name, s.type, String(Object.keys(s.data).length), ageSince(s.metadata.creationTimestamp, now)]);
  return table(['NAME', 'TYPE', 'DATA', 'AGE'], rows);
}

export function revisionsTable(items: readonly RevisionObject[], now: number): string {
  const sorted = [...items].sort((a, b) => (a.metadata.ownerName ?? '').localeCompare(b.metadata.ownerName ?? '') || a.revision - b.revision);
  const rows = sorted.map((r) => [
    r.metadata.name,
    r.metadata.ownerName ?? '<none>',
    String(r.revision),
    r.images.join(',') || '<none>',
    r.changeCause ?? '<none>',
    ageSince(r.metadata.creationTimestamp, now),
  ]);
  return table(['NAME', 'DEPLOYMENT', 'REVISION', 'IMAGES', 'CHANGE-CAUSE', 'AGE'], rows);
}

/** `orchard get volumes`: persistent volumes, the node holding each, size used and the pods using it. */
export function volumesTable(items: readonly PersistentVolumeObject[], now: number): string {
  const rows = items.map((v) => [
    v.metadata.name,
    v.spec.nodeName,
    v.status.usedBytes !== undefined ? formatBytes(v.status.usedBytes) : v.status.present === false ? '<missing>' : '<unknown>',
    v.metadata.ownerName ?? '<none>',
    v.status.pods.join(',') || '<none>',
    ageSince(v.metadata.creationTimestamp, now),
  ]);
  return table(['NAME', 'NODE', 'USED', 'DEPLOYMENT', 'PODS', 'AGE'], rows);
}
