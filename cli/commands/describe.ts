import { formatBytes, formatCpu, parseBytes, parseCpuMillis } from '../../protocol/quantity.js';
import type { Container, ResourceList } from '../../protocol/manifest.js';
import type { ContainerStatus, Deployment, EventObject, NodeObject, Pod } from '../../protocol/objects.js';
import { DEVICE_POLICY_FLAGS, type DevicePolicy } from '../../protocol/pod-security.js';
import { resolveResource, usageError } from '../args.js';
import { ageSince, fields, table } from '../format.js';
import { eventsFor, getObject, listObjects } from '../resources.js';
import { describeEventsTable, desiredReplicas, nodeDevicesTable, nodeStatus, podReady, podStatusText, podsOnNode, podsTable } from '../tables.js';
import { nodeWarnings } from '../node-warnings.js';
import type { CommandDef } from './command.js';
import { describeService, type ServiceProxyCounters } from '../services.js';
import { ServiceProxyMetricsListSchema } from '../../protocol/metrics.js';
import type { HubClient } from '../client.js';

/** Human-readable reports in kubectl's layout: key/value header, nested sections, events last. */

function labelLines(labels: Readonly<Record<string, string>>): string[] {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`);
}

function when(iso: string | undefined, now: number): string {
  return iso === undefined ? '<unknown>' : `${iso} (${ageSince(iso, now)} ago)`;
}

function resourceText(list: (ResourceList & { pids?: number }) | undefined): string {
  if (list === undefined) return '<none>';
  const parts: string[] = [];
  if (list.cpu !== undefined) parts.push(`cpu ${formatCpu(parseCpuMillis(list.cpu) ?? 0)}`);
  if (list.memory !== undefined) parts.push(`memory ${formatBytes(parseBytes(list.memory) ?? 0)}`);
  if (list['ephemeral-storage'] !== undefined) parts.push(`ephemeral-storage ${formatBytes(parseBytes(list['ephemeral-storage']) ?? 0)}`);
  if (list.pids !== undefined) parts.push(`pids ${list.pids === 0 ? 'unlimited' : list.pids}`);
  return parts.length === 0 ? '<none>' : parts.join(', ');
}

/**
 * The device policy (agent --deny-… / --allow-cap-add flags). Shown when the node reports a rule:
 * every agent since the baseline default does (its capability rule); an older one only when it
 * denies something.
 */
function policyLine(policy: DevicePolicy | undefined): Array<[string, string]> {
  if (policy === undefined) return [];
  const parts: string[] = (Object.keys(DEVICE_POLICY_FLAGS) as Array<keyof typeof DEVICE_POLICY_FLAGS>)
    .filter((k) => (Array.isArray(policy[k]) ? (policy[k] as unknown[]).length > 0 : policy[k] === true))
    .map((k) => (k === 'denyDeviceClasses' ? `${DEVICE_POLICY_FLAGS[k]} ${(policy.denyDeviceClasses ?? []).join(',')}` : DEVICE_POLICY_FLAGS[k]));
  const allow = policy.allowCapAdd;
  if (!policy.denyCapAdd && allow !== undefined) {
    if (allow.includes('ALL')) parts.push('--allow-cap-add ALL (any capability)');
    else if (allow.length > 0) parts.push(`--allow-cap-add ${allow.join(',')} (beyond baseline capabilities)`);
    else parts.push('(baseline capabilities only)');
  }
  return parts.length === 0 ? [] : [['Pod policy', parts.join(' ')]];
}

function containerSpecLines(c: Container): string {
  const ports = c.ports.map(
    (p) => `${p.containerPort}/${p.protocol}${p.hostPort !== undefined ? ` (host ${p.hostIP ?? ''}${p.hostIP !== undefined ? ':' : ''}${p.hostPort})` : ''}`,
  );
  const pairs: Array<[string, string | string[]]> = [['Image', c.image]];
  if (c.command !== undefined) pairs.push(['Command', c.command.join(' ')]);
  if (c.args !== undefined) pairs.push(['Args', c.args.join(' ')]);
  pairs.push(['Ports', ports.length === 0 ? '<none>' : ports.join(', ')]);
  pairs.push(['Requests', resourceText(c.resources.requests)]);
  pairs.push(['Limits', resourceText(c.resources.limits)]);
  pairs.push(['Environment', c.env.map((e) => `${e.name}=${e.value}`)]);
  return `   ${c.name}:\n${fields(pairs, '    ')}`;
}

function stateLines(s: ContainerStatus | undefined, now: number): Array<[string, string | string[]]> {
  if (s === undefined)
    return [
      ['State', 'Waiting'],
      ['Reason', 'not yet reported'],
    ];
  const pairs: Array<[string, string | string[]]> = [['State', s.state.charAt(0).toUpperCase() + s.state.slice(1)]];
  if (s.reason !== undefined) pairs.push(['Reason', s.reason]);
  if (s.message !== undefined) pairs.push(['Message', s.message]);
  if (s.exitCode !== undefined) pairs.push(['Exit Code', String(s.exitCode)]);
  if (s.state === 'running' && s.startedAt !== undefined) pairs.push(['Started', when(s.startedAt, now)]);
  if (s.state === 'terminated' && s.finishedAt !== undefined) pairs.push(['Finished', when(s.finishedAt, now)]);
  pairs.push(['Ready', String(s.ready)], ['Restart Count', String(s.restartCount)]);
  return pairs;
}

export function describePod(pod: Pod, events: readonly EventObject[], now: number): string {
  let out = fields([
    ['Name', pod.metadata.name],
    ['Deployment', pod.metadata.ownerName ?? '<none>'],
    ['Node', pod.spec.nodeName ?? '<none>'],
    ...((pod.spec.deviceGrants ?? []).length > 0
      ? ([
          [
            'Devices',
            (pod.spec.deviceGrants ?? []).map((g) => `${g.container}: ${g.class} ${g.id} at ${g.containerPath}${g.shared === true ? ' (shared)' : ''}`),
          ],
        ] as Array<[string, string[]]>)
      : []),
    ['Host IP', pod.status.hostIP ?? '<none>'],
    ['Labels', labelLines(pod.metadata.labels)],
    ['Created', when(pod.metadata.creationTimestamp, now)],
    ['Start Time', pod.status.startTime ?? '<none>'],
    ['Status', podStatusText(pod)],
    ['Phase', pod.status.phase],
    ...(pod.status.reason !== undefined ? ([['Reason', pod.status.reason]] as Array<[string, string]>) : []),
    ...(pod.status.message !== undefined ? ([['Message', pod.status.message]] as Array<[string, string]>) : []),
    ['Ready', podReady(pod)],
  ]);
  out += 'Containers:\n';
  for (const c of pod.spec.containers) {
    const s = pod.status.containerStatuses.find((x) => x.name === c.name);
    out += `  ${c.name}:\n`;
    const pairs: Array<[string, string | string[]]> = [];
    if (s?.containerId !== undefined) pairs.push(['Container ID', s.containerId]);
    pairs.push(['Image', c.image], ...stateLines(s, now));
    pairs.push(['Requests', resourceText(c.resources.requests)], ['Limits', resourceText(c.resources.limits)]);
    out += fields(pairs, '    ');
  }
  if (pod.status.conditions.length > 0) {
    out += `Conditions:\n${table(
      ['TYPE', 'STATUS', 'REASON'],
      pod.status.conditions.map((c) => [c.type, c.status, c.reason ?? '']),
      '  ',
    )}`;
  } else out += 'Conditions:  <none>\n';
  const unsched = pod.status.unschedulable;
  if (unsched !== undefined) {
    // Principle 4: a pending pod says why, per node and per reason.
    out += `Scheduling:\n  ${unsched.summary}\n`;
    for (const [node, reasons] of Object.entries(unsched.nodes).sort(([a], [b]) => a.localeCompare(b))) {
      out += `    ${node}: ${reasons.join('; ')}\n`;
    }
  }
  return out + describeEventsTable(events, now);
}

export function describeDeployment(d: Deployment, pods: readonly Pod[], events: readonly EventObject[], now: number): string {
  const st = d.status;
  let out = fields([
    ['Name', d.metadata.name],
    ['Labels', labelLines(d.metadata.labels)],
    ['Created', when(d.metadata.creationTimestamp, now)],
    ['Mode', d.spec.mode],
    [
      'Replicas',
      `${desiredReplicas(d)} desired | ${st.replicas} updated | ${st.readyReplicas} ready | ${st.availableReplicas} available | ${st.unscheduledReplicas} unscheduled`,
    ],
    ['Generation', `${d.metadata.generation} (observed ${st.observedGeneration})`],
  ]);
  const t = d.spec.template;
  out += 'Pod Template:\n';
  out += fields(
    [
      ['Labels', labelLines(t.metadata.labels)],
      ['Arch', t.spec.arch?.join(', ') ?? '<any>'],
      ['Node Selector', labelLines(t.spec.nodeSelector ?? {})],
      ['Restart Policy', t.spec.restartPolicy],
      ['Network', t.spec.network],
    ],
    '  ',
  );
  out += '  Containers:\n';
  for (const c of t.spec.containers) out += containerSpecLines(c);
  out += describeAutoscale(d, now);
  out += pods.length === 0 ? 'Pods:  <none>\n' : `Pods:\n${podsTable(pods, now, false, '  ')}`;
  return out + describeEventsTable(events, now);
}

/** `Autoscale:` — the policy, each target's current/target utilisation, and the last decision with its numbers. */
export function describeAutoscale(d: Deployment, now: number): string {
  const a = d.spec.autoscale;
  if (a === undefined) return '';
  const st = d.status.autoscale;
  const window = a.scaleDownStabilizationWindowSeconds === undefined ? "hub's default" : `${a.scaleDownStabilizationWindowSeconds}s`;
  const rows: Array<[string, string | string[]]> = [
    ['Min/Max', `${a.minReplicas}/${a.maxReplicas}`],
    ['Scale-down window', window],
  ];
  const targetOf = (r: 'cpu' | 'memory'): number | undefined => (r === 'cpu' ? a.targetCPUUtilizationPercentage : a.targetMemoryUtilizationPercentage);
  for (const r of ['cpu', 'memory'] as const) {
    const target = targetOf(r);
    if (target === undefined) continue;
    const m = st?.metrics.find((x) => x.resource === r);
    const current = m?.currentPercent === undefined ? '<unknown>' : `${m.currentPercent}%`;
    const pods = m === undefined ? '' : ` (${m.ready} ready, ${m.unready} unready, ${m.missing} missing)`;
    rows.push([r === 'cpu' ? 'CPU (current/target)' : 'Memory (current/target)', `${current} / ${target}% of requests${pods}`]);
  }
  if (st !== undefined) {
    rows.push(['Last decision', `${when(st.lastDecision.at, now)}: ${st.lastDecision.message}`]);
    if (st.lastScaleTime !== undefined) rows.push(['Last scale', when(st.lastScaleTime, now)]);
  } else rows.push(['Last decision', '<none yet>']);
  return `Autoscale:\n${fields(rows, '  ')}`;
}

export function describeNode(n: NodeObject, pods: readonly Pod[], events: readonly EventObject[], now: number): string {
  const info = n.status.info;
  const cap = n.status.capacity;
  const usage = n.status.usage;
  let out = fields([
    ['Name', n.metadata.name],
    ['Status', nodeStatus(n)],
    ['Labels', labelLines(n.metadata.labels)],
    ['Created', when(n.metadata.creationTimestamp, now)],
    ['Taints', n.spec.taints.map((t) => `${t.key}${t.value !== undefined ? `=${t.value}` : ''}:${t.effect}`)],
    ['Unschedulable', String(n.spec.unschedulable)],
    ['Last Heartbeat', n.status.lastHeartbeatTime === undefined ? '<never>' : when(n.status.lastHeartbeatTime, now)],
  ]);
  const warnings = nodeWarnings(n);
  if (warnings.length > 0) out += `Warnings:\n${warnings.map((w) => `  WARNING: ${w}\n`).join('')}`;
  if (n.status.conditions.length > 0) {
    const rows = n.status.conditions.map((c) => [c.type, c.status, c.reason ?? '', c.message ?? '']);
    out += `Conditions:\n${table(['TYPE', 'STATUS', 'REASON', 'MESSAGE'], rows, '  ')}`;
  } else out += 'Conditions:  <none>\n';
  if (info !== undefined) {
    out += 'System Info:\n';
    out += fields(
      [
        ['Architecture', info.rawArch !== undefined ? `${info.arch} (${info.rawArch})` : info.arch],
        ['OS', info.os],
        ['Kernel', info.kernel ?? '<unknown>'],
        ['Hostname', info.hostname ?? '<unknown>'],
        ['CPU', `${info.cpu.cores} cores${info.cpu.model !== undefined ? ` (${info.cpu.model})` : ''}`],
        ['Memory', formatBytes(info.memoryBytes)],
        ['Engine', `${info.engine.name} ${info.engine.version}${info.engine.memoryLimit ? '' : ' (no memory limits)'}`],
        ['Agent', info.agentVersion],
        ['Addresses', info.addresses],
        ...policyLine(info.policy),
      ],
      '  ',
    );
  }
  if (cap !== undefined) {
    out +=
      'Capacity:\n' +
      fields(
        [
          ['CPU', formatCpu(cap.cpuMillis)],
          ['Memory', formatBytes(cap.memoryBytes)],
          ['Pods', String(cap.pods)],
        ],
        '  ',
      );
  }
  if (usage !== undefined) {
    const memPct = cap !== undefined && cap.memoryBytes > 0 ? ` (${Math.round((usage.memoryUsedBytes / cap.memoryBytes) * 100)}%)` : '';
    out +=
      'Usage:\n' +
      fields(
        [
          ['CPU', `${usage.cpuPercent.toFixed(1)}%`],
          ['Memory', `${formatBytes(usage.memoryUsedBytes)}${memPct}`],
          ['Reported', when(usage.at, now)],
        ],
        '  ',
      );
  }
  const classes = info?.deviceClasses;
  if (info?.devices !== undefined && info.devices.length > 0) {
    const counts =
      classes === undefined
        ? ''
        : ` (${Object.entries(classes)
            .map(([c, k]) => `${c}: ${k}`)
            .join(', ')})`;
    out += `Devices:${counts}\n${nodeDevicesTable(n, pods, '  ')}`;
  } else if (classes !== undefined) out += `Devices:  <none> (looking for ${Object.keys(classes).join(', ') || 'no classes'})\n`;
  const here = podsOnNode(pods, n.metadata.name);
  out += here.length === 0 ? 'Pods:  <none>\n' : `Pods: (${here.length} in total)\n${podsTable(here, now, true, '  ')}`;
  return out + describeEventsTable(events, now);
}

/**
 * The node proxies' counters for a service (issue 15). A hub that cannot answer (one older than
 * the route, say) costs the describe one line, not the whole report.
 */
async function proxyCounters(client: HubClient, service: string): Promise<ServiceProxyCounters> {
  try {
    return (await client.getParsed(`/api/v1/metrics/services?service=${encodeURIComponent(service)}`, ServiceProxyMetricsListSchema)).parsed.items;
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

export const describeCommand: CommandDef = {
  name: 'describe',
  summary: 'Show details and events of a node, deployment, pod or service',
  usage: `orchard describe node|deployment|pod|service NAME

For a pending pod, shows why it cannot be placed, per node and per reason.`,
  options: {},
  async run(ctx) {
    const [typeArg, nameArg, extra] = ctx.positionals;
    if (extra !== undefined) throw usageError(`unexpected argument "${extra}"`);
    const ref = resolveResource(typeArg, ['Node', 'Deployment', 'Pod', 'Service']);
    const name = ref.name ?? nameArg;
    if (name === undefined) throw usageError(`missing ${ref.kind.toLowerCase()} name`);
    const client = await ctx.client();
    const now = ctx.io.now();
    switch (ref.kind) {
      case 'Pod': {
        const { item } = await getObject(client, 'Pod', 'pods', name);
        ctx.io.stdout.write(describePod(item, await eventsFor(client, 'Pod', name), now));
        break;
      }
      case 'Deployment': {
        const { item } = await getObject(client, 'Deployment', 'deployments', name);
        const pods = (await listObjects(client, 'Pod', 'pods')).items.filter((p) => p.metadata.ownerName === name);
        ctx.io.stdout.write(describeDeployment(item, pods, await eventsFor(client, 'Deployment', name), now));
        break;
      }
      case 'Service': {
        const { item } = await getObject(client, 'Service', 'services', name);
        ctx.io.stdout.write(describeService(item, await eventsFor(client, 'Service', name), now, await proxyCounters(client, name)));
        break;
      }
      default: {
        const { item } = await getObject(client, 'Node', 'nodes', name);
        const pods = (await listObjects(client, 'Pod', 'pods')).items;
        ctx.io.stdout.write(describeNode(item, pods, await eventsFor(client, 'Node', name), now));
      }
    }
    return 0;
  },
};
