// The fleet overview and one node's page.

import { countBars, donut, lineChart, sparkline, usageBar } from './charts.js';
import { age, badge, bytes, cores, h, link, table } from './dom.js';

export const isReady = (n) => (n.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/** Ready | NotReady | Unknown, plus SchedulingDisabled when cordoned. */
export function nodeStatus(n) {
  const ready = (n.status.conditions ?? []).find((c) => c.type === 'Ready');
  const out = [ready?.status === 'True' ? badge('Ready', 'ok') : badge(ready ? 'NotReady' : 'Unknown', 'bad', ready?.message)];
  if (n.spec.unschedulable) out.push(' ', badge('SchedulingDisabled', 'warn'));
  for (const c of n.status.conditions ?? []) if (c.type !== 'Ready' && c.status === 'True') out.push(' ', badge(c.type, 'warn', c.message));
  return out;
}

function history(m, pick) {
  return (m?.history ?? []).map((p) => ({ t: Date.parse(p.at), v: pick(p) }));
}

/** Sums per-minute points of several nodes (same minute = same slot). */
function sumHistories(metrics, pick) {
  const byMinute = new Map();
  for (const m of metrics)
    for (const p of m.history ?? []) {
      const t = Math.floor(Date.parse(p.at) / 60000) * 60000;
      byMinute.set(t, (byMinute.get(t) ?? 0) + pick(p));
    }
  return [...byMinute].sort((a, b) => a[0] - b[0]).map(([t, v]) => ({ t, v }));
}

function nodeActions(ctx, n) {
  const name = n.metadata.name;
  const out = [];
  if (n.spec.unschedulable) {
    if (ctx.can('node.uncordon'))
      out.push(
        h(
          'button',
          { class: 'small', 'data-action': 'uncordon', on: { click: () => ctx.act(`uncordon ${name}`, 'POST', `nodes/${encodeURIComponent(name)}/uncordon`) } },
          'Uncordon',
        ),
      );
  } else if (ctx.can('node.cordon')) {
    out.push(
      h(
        'button',
        { class: 'small', 'data-action': 'cordon', on: { click: () => ctx.act(`cordon ${name}`, 'POST', `nodes/${encodeURIComponent(name)}/cordon`) } },
        'Cordon',
      ),
    );
  }
  if (ctx.can('node.drain')) {
    out.push(
      h(
        'button',
        {
          class: 'small danger',
          'data-action': 'drain',
          on: {
            click: async () => {
              const ok = await ctx.confirm(`Drain ${name}?`, `Cordons ${name} and evicts its pods so they are rescheduled on other nodes.`, 'Drain');
              if (ok) await ctx.act(`drain ${name}`, 'POST', `nodes/${encodeURIComponent(name)}/drain`);
            },
          },
        },
        'Drain',
      ),
    );
  }
  return out;
}

export function fleetView(ctx) {
  const { state } = ctx;
  const nodes = [...state.nodes.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const metrics = [...state.nodeMetrics.values()];
  const ready = nodes.filter((n) => isReady(n) && !n.spec.unschedulable).length;
  const cordoned = nodes.filter((n) => isReady(n) && n.spec.unschedulable).length;
  const notReady = nodes.length - ready - cordoned;
  const arch = new Map();
  for (const n of nodes) {
    const a = n.status.info?.arch ?? 'unknown';
    arch.set(a, (arch.get(a) ?? 0) + 1);
  }
  let cpuCap = 0;
  let cpuUsed = 0;
  let memCap = 0;
  let memUsed = 0;
  let podCount = 0;
  let podCap = 0;
  // Usage is unknown (—) until some node has reported it, not 0.
  let cpuKnown = false;
  let memKnown = false;
  for (const m of metrics) {
    cpuCap += m.cpu.capacityCores;
    cpuUsed += m.cpu.usedCores ?? 0;
    cpuKnown ||= m.cpu.usedCores !== null;
    memCap += m.memory.capacityBytes;
    memUsed += m.memory.usedBytes ?? 0;
    memKnown ||= m.memory.usedBytes !== null;
    podCount += m.pods.count;
    podCap += m.pods.capacity;
  }
  const summary = h(
    'section',
    { class: 'cards' },
    h(
      'div',
      { class: 'card' },
      h('h3', null, 'Nodes by status'),
      donut(
        [
          { value: ready, kind: 'ok', label: 'Ready' },
          { value: cordoned, kind: 'warn', label: 'Cordoned' },
          { value: notReady, kind: 'bad', label: 'NotReady' },
        ],
        'nodes',
      ),
    ),
    h('div', { class: 'card' }, h('h3', null, 'Nodes by architecture'), countBars([...arch].sort(), 'architecture')),
    h(
      'div',
      { class: 'card' },
      h('h3', null, 'Fleet capacity and usage'),
      h(
        'div',
        { class: 'kv' },
        h('span', null, 'CPU'),
        usageBar(cpuKnown ? cpuUsed : null, cpuCap, `${cpuKnown ? cores(cpuUsed) : '—'} of ${cores(cpuCap)} cores`),
      ),
      h(
        'div',
        { class: 'kv' },
        h('span', null, 'Memory'),
        usageBar(memKnown ? memUsed : null, memCap, `${memKnown ? bytes(memUsed) : '—'} of ${bytes(memCap)}`),
      ),
      h('div', { class: 'kv' }, h('span', null, 'Pods'), usageBar(podCount, podCap, `${podCount} of ${podCap}`)),
    ),
  );
  const charts = h(
    'section',
    { class: 'cards' },
    h(
      'div',
      { class: 'card wide' },
      lineChart([{ label: 'CPU cores used', kind: 'cpu', points: sumHistories(metrics, (p) => p.cpuCores) }], {
        title: 'Fleet CPU, last hour',
        format: cores,
        yMax: cpuCap || undefined,
      }),
    ),
    h(
      'div',
      { class: 'card wide' },
      lineChart([{ label: 'memory used', kind: 'mem', points: sumHistories(metrics, (p) => p.memoryBytes) }], {
        title: 'Fleet memory, last hour',
        format: bytes,
        yMax: memCap || undefined,
      }),
    ),
  );
  const rows = nodes.map((n) => {
    const m = state.nodeMetrics.get(n.metadata.name);
    return {
      attrs: { 'data-node': n.metadata.name },
      cells: [
        link(n.metadata.name, 'nodes', n.metadata.name),
        nodeStatus(n),
        n.status.info?.arch ?? '—',
        m ? usageBar(m.cpu.usedCores, m.cpu.capacityCores, `${cores(m.cpu.usedCores)} / ${cores(m.cpu.capacityCores)}`) : '—',
        m ? usageBar(m.memory.usedBytes, m.memory.capacityBytes, `${bytes(m.memory.usedBytes)} / ${bytes(m.memory.capacityBytes)}`) : '—',
        m ? `${m.pods.count} / ${m.pods.capacity}` : '—',
        sparkline(
          history(m, (p) => p.cpuCores).map((p) => p.v),
          m?.cpu.capacityCores,
        ),
        n.status.info?.agentVersion ?? '—',
        age(n.status.lastHeartbeatTime, ctx.now),
        h('span', { class: 'actions' }, nodeActions(ctx, n)),
      ],
    };
  });
  return h(
    'div',
    null,
    summary,
    charts,
    h('h2', null, 'Nodes'),
    table(['Name', 'Status', 'Arch', 'CPU', 'Memory', 'Pods', 'CPU (1 h)', 'Agent', 'Heartbeat', ''], rows, 'no nodes have joined yet'),
  );
}

export function nodeView(ctx, name) {
  const n = ctx.state.nodes.get(name);
  if (!n) return h('p', { class: 'muted' }, `node ${name} is not (or no longer) in the fleet`);
  const m = ctx.state.nodeMetrics.get(name);
  const info = n.status.info;
  const pods = [...ctx.state.pods.values()].filter((p) => p.spec.nodeName === name);
  return h(
    'div',
    null,
    h('h2', null, `Node ${name} `, nodeStatus(n), ' ', h('span', { class: 'actions' }, nodeActions(ctx, n))),
    h(
      'section',
      { class: 'cards' },
      h(
        'div',
        { class: 'card wide' },
        lineChart([{ label: 'CPU cores', kind: 'cpu', points: history(m, (p) => p.cpuCores) }], {
          title: 'CPU, last hour',
          format: cores,
          yMax: m?.cpu.capacityCores,
        }),
      ),
      h(
        'div',
        { class: 'card wide' },
        lineChart([{ label: 'memory', kind: 'mem', points: history(m, (p) => p.memoryBytes) }], {
          title: 'Memory, last hour',
          format: bytes,
          yMax: m?.memory.capacityBytes,
        }),
      ),
    ),
    table(
      ['Field', 'Value'],
      [
        ['Architecture', `${info?.arch ?? '—'} (${info?.rawArch ?? '—'})`],
        ['OS / kernel', `${info?.os ?? '—'} / ${info?.kernel ?? '—'}`],
        ['CPU', `${info?.cpu.cores ?? '—'} cores ${info?.cpu.model ?? ''}`],
        ['Memory', bytes(info?.memoryBytes)],
        ['Engine', info ? `${info.engine.name} ${info.engine.version}` : '—'],
        ['Agent', info?.agentVersion ?? '—'],
        ['Labels', Object.entries(n.metadata.labels ?? {}).map(([k, v]) => h('code', { class: 'chip' }, `${k}=${v}`))],
        ['Taints', (n.spec.taints ?? []).map((t) => h('code', { class: 'chip' }, `${t.key}${t.value ? `=${t.value}` : ''}:${t.effect}`))],
        ['Last heartbeat', `${age(n.status.lastHeartbeatTime, ctx.now)} ago`],
      ],
    ),
    h('h3', null, 'Conditions'),
    table(
      ['Type', 'Status', 'Reason', 'Message', 'Since'],
      (n.status.conditions ?? []).map((c) => [c.type, c.status, c.reason ?? '', c.message ?? '', age(c.lastTransitionTime, ctx.now)]),
    ),
    h('h3', null, 'Pods on this node'),
    table(
      ['Pod', 'Phase'],
      pods.map((p) => [link(p.metadata.name, 'pods', p.metadata.name), p.status.phase]),
    ),
  );
}
