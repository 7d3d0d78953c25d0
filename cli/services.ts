import { servicePortFor } from '../protocol/manifest.js';
import type { ServiceProxyMetrics } from '../protocol/metrics.js';
import type { EventObject, ServiceObject } from '../protocol/objects.js';
import { ageSince, fields, table } from './format.js';
import { describeEventsTable } from './tables.js';

/** `orchard get services` and the pieces `describe service` shares with it (issue 15). */

/**
 * A service's address in the agents' default service range (10.250.0.0/22): base + ordinal. An
 * agent started with another `--service-cidr` uses its own base with the same ordinal.
 */
export function defaultServiceAddress(ordinal: number | undefined): string {
  if (ordinal === undefined) return '<pending>';
  return `10.250.${ordinal >> 8}.${ordinal & 255}`;
}

export function servicePortsText(s: ServiceObject): string {
  return s.spec.ports.map((p) => `${p.port}/${p.protocol}${p.targetPort !== undefined && p.targetPort !== p.port ? `→${p.targetPort}` : ''}`).join(',');
}

export function servicePublishText(s: ServiceObject): string {
  const pubs = s.spec.publish ?? [];
  if (pubs.length === 0) return '<none>';
  return pubs
    .map((p) => {
      const sp = servicePortFor(s.spec.ports, p.servicePort);
      const sel =
        p.nodeSelector === undefined
          ? ''
          : ` (${Object.entries(p.nodeSelector)
              .map(([k, v]) => `${k}=${v}`)
              .join(',')})`;
      return `${p.port}/${sp?.protocol ?? 'TCP'}${sel}`;
    })
    .join(',');
}

export function serviceEndpointsText(s: ServiceObject): string {
  const eps = s.status.endpoints;
  return `${eps.filter((e) => e.ready).length}/${eps.length}`;
}

export function servicesTable(items: readonly ServiceObject[], now: number, wide: boolean): string {
  const headers = ['NAME', 'ORDINAL', 'ADDRESS', 'PORTS', 'ENDPOINTS', 'PUBLISH', 'AGE'];
  if (wide) headers.push('POLICY', 'SELECTOR');
  const rows = items.map((s) => {
    const row = [
      s.metadata.name,
      s.status.ordinal === undefined ? '<none>' : String(s.status.ordinal),
      defaultServiceAddress(s.status.ordinal),
      servicePortsText(s),
      serviceEndpointsText(s),
      servicePublishText(s),
      ageSince(s.metadata.creationTimestamp, now),
    ];
    if (wide)
      row.push(
        s.spec.trafficPolicy,
        Object.entries(s.spec.selector)
          .map(([k, v]) => `${k}=${v}`)
          .join(','),
      );
    return row;
  });
  return table(headers, rows);
}

/** The node proxies' counters for `describe service` (GET /api/v1/metrics/services), or why they could not be read. */
export type ServiceProxyCounters = readonly ServiceProxyMetrics[] | { error: string };

/**
 * `Proxy Replays`: connections the node proxies replayed on another endpoint after a reset before
 * any reply byte, in total and per node that counted any (most first).
 */
export function proxyReplaysText(p: ServiceProxyCounters): string {
  if ('error' in p) return `<unknown> (${p.error})`;
  const nodes = p.filter((c) => c.replays > 0).sort((a, b) => b.replays - a.replays || (a.node < b.node ? -1 : 1));
  const total = nodes.reduce((n, c) => n + c.replays, 0);
  return nodes.length === 0 ? '0' : `${total} (${nodes.map((c) => `${c.node}: ${c.replays}`).join(', ')})`;
}

/** `orchard describe service NAME`: ports, policy, publish, proxy replays, every endpoint with why it is not ready, conditions, events. */
export function describeService(s: ServiceObject, events: readonly EventObject[], now: number, proxy?: ServiceProxyCounters): string {
  const affinity = s.spec.sessionAffinity;
  let out = fields([
    ['Name', s.metadata.name],
    ['Labels', Object.entries(s.metadata.labels).map(([k, v]) => `${k}=${v}`)],
    [
      'Selector',
      Object.entries(s.spec.selector)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    ],
    ['Ordinal', s.status.ordinal === undefined ? '<none> (no address yet)' : String(s.status.ordinal)],
    [
      'Address',
      s.status.ordinal === undefined
        ? '<none>'
        : `${defaultServiceAddress(s.status.ordinal)} (agents' default --service-cidr; base + ${s.status.ordinal} in another)`,
    ],
    ['Names', [`${s.metadata.name}`, `${s.metadata.name}.svc.orchard`]],
    [
      'Ports',
      s.spec.ports.map(
        (p) => `${p.name !== undefined ? `${p.name} ` : ''}${p.port}/${p.protocol} → ${p.targetPort === undefined ? p.port : String(p.targetPort)}`,
      ),
    ],
    ['Traffic Policy', s.spec.trafficPolicy],
    ['Session Affinity', affinity === undefined ? 'None' : `ClientIP (${affinity.clientIP.timeoutSeconds}s)`],
    [
      'Publish',
      (s.spec.publish ?? []).length === 0
        ? '<none>'
        : (s.spec.publish ?? []).map((p) => {
            const sp = servicePortFor(s.spec.ports, p.servicePort);
            const where =
              p.nodeSelector === undefined
                ? 'every node'
                : `nodes with ${Object.entries(p.nodeSelector)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(',')}`;
            return `${p.port}/${sp?.protocol ?? 'TCP'} → service port ${sp?.port ?? '?'} on ${where}`;
          }),
    ],
    ...(proxy === undefined ? [] : [['Proxy Replays', proxyReplaysText(proxy)] as const]),
    ['Created', `${s.metadata.creationTimestamp} (${ageSince(s.metadata.creationTimestamp, now)} ago)`],
  ]);
  const eps = s.status.endpoints;
  if (eps.length === 0) out += 'Endpoints:  <none>\n';
  else {
    out += `Endpoints: (${eps.filter((e) => e.ready).length}/${eps.length} ready)\n`;
    out += table(
      ['POD', 'NODE', 'ADDRESS', 'READY', 'TARGETS', 'REASON'],
      eps.map((e) => [
        e.pod,
        e.node,
        e.address ?? '<none>',
        e.terminating ? 'terminating' : String(e.ready),
        e.targets.map((t) => `${t.port}/${t.protocol}→${t.targetPort}${t.endpointPort !== undefined ? ` (:${t.endpointPort})` : ''}`).join(', ') || '<none>',
        e.reason ?? '',
      ]),
      '  ',
    );
  }
  if (s.status.conditions.length > 0) {
    out += `Conditions:\n${table(
      ['TYPE', 'STATUS', 'REASON', 'MESSAGE'],
      s.status.conditions.map((c) => [c.type, c.status, c.reason ?? '', c.message ?? '']),
      '  ',
    )}`;
  } else out += 'Conditions:  <none>\n';
  return out + describeEventsTable(events, now);
}
