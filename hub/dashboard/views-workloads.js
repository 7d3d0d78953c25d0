// Deployments (rollout progress, history, scale, undo), pods (conditions, usage), services and events.

import { api, enc } from './api.js';
import { lineChart, usageBar } from './charts.js';
import { age, badge, bytes, cores, h, link, replace, s, table } from './dom.js';

const PHASE_KIND = { Complete: 'ok', Progressing: 'info', Paused: 'warn', CanaryPaused: 'warn', Failed: 'bad', RolledBack: 'bad' };

function desiredOf(d) {
  return d.spec.mode === 'global' ? d.status.replicas : (d.spec.replicas ?? 1);
}

/** Rollout progress as one stacked bar: available ⊂ updated of desired. */
function progress(d) {
  const want = Math.max(1, desiredOf(d));
  const updated = d.status.updatedReplicas ?? d.status.replicas;
  const avail = d.status.availableReplicas;
  const w = (n) => ((Math.min(n, want) / want) * 100).toFixed(2);
  return h(
    'div',
    { class: 'usage' },
    s(
      'svg',
      {
        class: 'bar',
        viewBox: '0 0 100 10',
        preserveAspectRatio: 'none',
        role: 'img',
        'aria-label': `${avail} available, ${updated} updated of ${desiredOf(d)}`,
      },
      s('rect', { class: 'bar-bg', x: 0, y: 0, width: 100, height: 10 }),
      s('rect', { class: 'bar-fg updated', x: 0, y: 0, width: w(updated), height: 10 }),
      s('rect', { class: 'bar-fg ok', x: 0, y: 0, width: w(avail), height: 10 }),
    ),
    h('span', { class: 'usage-label' }, `${d.status.readyReplicas}/${desiredOf(d)} ready · ${updated} updated · ${avail} available`),
  );
}

function images(template) {
  return (template?.spec?.containers ?? []).map((c) => c.image).join(', ');
}

function scaleButton(ctx, d) {
  if (!ctx.can('scale') || d.spec.mode === 'global') return null;
  const name = d.metadata.name;
  return h(
    'button',
    {
      class: 'small',
      'data-action': 'scale',
      on: {
        click: async () => {
          const v = await ctx.prompt(`Scale ${name}`, 'Replicas', String(d.spec.replicas ?? 1));
          if (v === undefined) return;
          const replicas = Number(v);
          if (!Number.isInteger(replicas) || replicas < 0) return ctx.toast(`"${v}" is not a replica count`, 'bad');
          await ctx.act(`scale ${name} to ${replicas}`, 'POST', `deployments/${enc(name)}/scale`, { replicas });
        },
      },
    },
    'Scale',
  );
}

function undoButton(ctx, name, toRevision) {
  if (!ctx.can('rollout.undo')) return null;
  return h(
    'button',
    {
      class: 'small',
      'data-action': 'undo',
      on: {
        click: async () => {
          const what = toRevision === undefined ? 'the previous revision' : `revision ${toRevision}`;
          if (await ctx.confirm(`Roll back ${name}?`, `Rolls ${name} back to ${what}.`, 'Roll back'))
            await ctx.act(`undo ${name}`, 'POST', `deployments/${enc(name)}/rollout/undo`, toRevision === undefined ? {} : { toRevision });
        },
      },
    },
    toRevision === undefined ? 'Undo' : 'Roll back here',
  );
}

export function deploymentsView(ctx) {
  const deps = [...ctx.state.deployments.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  return h(
    'div',
    null,
    h('h2', null, 'Deployments'),
    table(
      ['Name', 'Rollout', 'Progress', 'Revision', 'Images', 'Age', ''],
      deps.map((d) => ({
        attrs: { 'data-deployment': d.metadata.name },
        cells: [
          link(d.metadata.name, 'deployments', d.metadata.name),
          badge(d.status.rollout?.phase ?? '—', PHASE_KIND[d.status.rollout?.phase] ?? 'muted', d.status.rollout?.message),
          progress(d),
          d.status.rollout?.revision !== undefined ? String(d.status.rollout.revision) : '—',
          images(d.spec.template),
          age(d.metadata.creationTimestamp, ctx.now),
          h('span', { class: 'actions' }, scaleButton(ctx, d), undoButton(ctx, d.metadata.name)),
        ],
      })),
      'no deployments: orchard apply -f app.yaml',
    ),
  );
}

export function deploymentView(ctx, name) {
  const d = ctx.state.deployments.get(name);
  if (!d) return h('p', { class: 'muted' }, `deployment ${name} not found`);
  const hist = h('div', null, h('p', { class: 'muted' }, 'loading history…'));
  // History is read on demand (one request per render of this page is cheap; revisions change rarely).
  ctx
    .once(`history:${name}:${d.metadata.resourceVersion}`, () => api('GET', `deployments/${enc(name)}/rollout/history`))
    .then((r) =>
      replace(
        hist,
        table(
          ['Revision', 'Change cause', 'Images', 'Created', ''],
          [...r.items]
            .reverse()
            .map((rev) => [
              h('span', null, String(rev.revision), rev.update ? [' ', badge('desired', 'info')] : null, rev.stable ? [' ', badge('stable', 'ok')] : null),
              rev.changeCause ?? '',
              rev.images.join(', '),
              `${age(rev.createdAt, ctx.now)} ago`,
              rev.update ? '' : undoButton(ctx, name, rev.revision),
            ]),
        ),
      ),
    )
    .catch((e) => replace(hist, h('p', { class: 'bad' }, e.message)));
  const pods = [...ctx.state.pods.values()].filter((p) => p.metadata.ownerName === name);
  return h(
    'div',
    null,
    h('h2', null, `Deployment ${name} `, h('span', { class: 'actions' }, scaleButton(ctx, d), undoButton(ctx, name))),
    progress(d),
    d.status.rollout?.message ? h('p', null, d.status.rollout.message) : null,
    h('h3', null, 'Conditions'),
    table(
      ['Type', 'Status', 'Reason', 'Message', 'Updated'],
      (d.status.conditions ?? []).map((c) => [c.type, c.status, c.reason ?? '', c.message ?? '', age(c.lastUpdateTime, ctx.now)]),
    ),
    h('h3', null, 'Rollout history'),
    hist,
    h('h3', null, 'Pods'),
    podsTable(ctx, pods),
  );
}

// ---- pods ----

const CONDITIONS = ['PodScheduled', 'ContainersReady', 'Ready'];

function podStatus(p) {
  const waiting = (p.status.containerStatuses ?? []).find((c) => c.state !== 'running' && c.reason);
  const text = p.metadata.deletionTimestamp ? 'Terminating' : (waiting?.reason ?? p.status.reason ?? p.status.phase);
  const kind = text === 'Running' ? 'ok' : /BackOff|Err|Failed|Error|OOM/.test(text) ? 'bad' : text === 'Succeeded' ? 'muted' : 'warn';
  return badge(text, kind, waiting?.message ?? p.status.message ?? p.status.unschedulable?.summary);
}

function conditionChips(p) {
  return CONDITIONS.map((type) => {
    const c = (p.status.conditions ?? []).find((x) => x.type === type);
    return badge(
      type,
      c?.status === 'True' ? 'ok' : c ? 'bad' : 'muted',
      c ? `${type}=${c.status}${c.reason ? ` (${c.reason})` : ''}${c.message ? `: ${c.message}` : ''}` : `${type}: not reported`,
    );
  });
}

/** Usage against the limit when there is one (the bar fills at the limit), else against the request. */
function against(used, limit, request, fmt) {
  if (limit) return usageBar(used, limit, `${fmt(used)} of ${fmt(limit)} limit`, request);
  if (request) return usageBar(used, request, `${fmt(used)} of ${fmt(request)} req`);
  return fmt(used);
}

function podsTable(ctx, pods) {
  return table(
    ['Name', 'Status', 'Conditions', 'Restarts', 'Node', 'CPU', 'Memory', 'Age', ''],
    pods
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
      .map((p) => {
        const m = ctx.state.podMetrics.get(p.metadata.name);
        return {
          attrs: { 'data-pod': p.metadata.name },
          cells: [
            link(p.metadata.name, 'pods', p.metadata.name),
            podStatus(p),
            h('span', { class: 'chips' }, conditionChips(p)),
            String((p.status.containerStatuses ?? []).reduce((a, c) => a + c.restartCount, 0)),
            p.spec.nodeName ? link(p.spec.nodeName, 'nodes', p.spec.nodeName) : '—',
            m ? against(m.cpu.usedCores, m.cpu.limitCores, m.cpu.requestCores, cores) : '—',
            m ? against(m.memory.usedBytes, m.memory.limitBytes, m.memory.requestBytes, bytes) : '—',
            age(p.metadata.creationTimestamp, ctx.now),
            link('Logs', 'logs', p.metadata.name),
          ],
        };
      }),
    'no pods',
  );
}

export function podsView(ctx) {
  return h('div', null, h('h2', null, 'Pods'), podsTable(ctx, [...ctx.state.pods.values()]));
}

export function podView(ctx, name) {
  const p = ctx.state.pods.get(name);
  if (!p) return h('p', { class: 'muted' }, `pod ${name} not found`);
  const chart = h('div', { class: 'cards' }, h('p', { class: 'muted' }, 'loading usage…'));
  if (p.spec.nodeName) {
    ctx
      .once(`podhist:${name}:${Math.floor(ctx.now / 30000)}`, () => api('GET', `metrics/pods?node=${enc(p.spec.nodeName)}&history=1`))
      .then((r) => {
        const m = r.items.find((x) => x.name === name);
        const pts = (pick) => (m?.history ?? []).map((x) => ({ t: Date.parse(x.at), v: pick(x) }));
        replace(
          chart,
          h(
            'div',
            { class: 'card wide' },
            lineChart([{ label: 'CPU cores', kind: 'cpu', points: pts((x) => x.cpuCores) }], {
              title: 'CPU, last hour',
              format: cores,
              yMax: m?.cpu.limitCores,
            }),
          ),
          h(
            'div',
            { class: 'card wide' },
            lineChart([{ label: 'memory', kind: 'mem', points: pts((x) => x.memoryBytes) }], {
              title: 'Memory, last hour',
              format: bytes,
              yMax: m?.memory.limitBytes,
            }),
          ),
        );
      })
      .catch((e) => replace(chart, h('p', { class: 'bad' }, e.message)));
  }
  const events = [...ctx.state.events.values()].filter((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.name === name);
  return h(
    'div',
    null,
    h('h2', null, `Pod ${name} `, podStatus(p), ' ', link('Logs', 'logs', name)),
    table(
      ['Field', 'Value'],
      [
        ['Deployment', p.metadata.ownerName ? link(p.metadata.ownerName, 'deployments', p.metadata.ownerName) : '—'],
        ['Node', p.spec.nodeName ? link(p.spec.nodeName, 'nodes', p.spec.nodeName) : (p.status.unschedulable?.summary ?? 'not scheduled')],
        ['Host IP', p.status.hostIP ?? '—'],
        ['Started', p.status.startTime ? `${age(p.status.startTime, ctx.now)} ago` : '—'],
      ],
    ),
    h('h3', null, 'Conditions'),
    table(
      ['Type', 'Status', 'Reason', 'Message', 'Since'],
      (p.status.conditions ?? []).map((c) => [
        c.type,
        badge(c.status, c.status === 'True' ? 'ok' : 'bad'),
        c.reason ?? '',
        c.message ?? '',
        age(c.lastTransitionTime, ctx.now),
      ]),
    ),
    h('h3', null, 'Containers'),
    table(
      ['Name', 'Image', 'State', 'Ready', 'Restarts', 'Reason / message'],
      (p.status.containerStatuses ?? []).map((c) => [
        c.name,
        c.image,
        c.state,
        c.ready ? 'yes' : 'no',
        String(c.restartCount),
        [c.reason, c.message, c.exitCode !== undefined ? `exit ${c.exitCode}` : ''].filter(Boolean).join(': '),
      ]),
    ),
    h('h3', null, 'Usage'),
    chart,
    h('h3', null, 'Events'),
    eventsTable(ctx, events),
  );
}

// ---- services ----

export function servicesView(ctx) {
  const svcs = [...ctx.state.services.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  return h(
    'div',
    null,
    h('h2', null, 'Services'),
    table(
      ['Name', 'Ports', 'Selector', 'Endpoints', 'Policy', 'Conditions', 'Age'],
      svcs.map((sv) => {
        const eps = sv.status.endpoints ?? [];
        const readyN = eps.filter((e) => e.ready && !e.terminating).length;
        return {
          attrs: { 'data-service': sv.metadata.name },
          cells: [
            sv.metadata.name,
            sv.spec.ports.map((p) => `${p.name ? `${p.name} ` : ''}${p.port}→${p.targetPort ?? p.port}/${p.protocol}`).join(', ') +
              ((sv.spec.publish ?? []).length ? ` · published ${(sv.spec.publish ?? []).map((x) => x.port).join(', ')}` : ''),
            Object.entries(sv.spec.selector).map(([k, v]) => h('code', { class: 'chip' }, `${k}=${v}`)),
            h(
              'span',
              null,
              badge(`${readyN}/${eps.length} ready`, readyN > 0 ? 'ok' : 'bad'),
              ' ',
              h(
                'span',
                { class: 'chips' },
                eps.map((e) => [link(e.pod, 'pods', e.pod), e.ready ? null : badge(e.reason ?? 'not ready', 'warn')]),
              ),
            ),
            sv.spec.trafficPolicy,
            (sv.status.conditions ?? []).filter((c) => c.status === 'True').map((c) => badge(c.type, 'warn', c.message)),
            age(sv.metadata.creationTimestamp, ctx.now),
          ],
        };
      }),
      'no services: orchard expose deployment NAME --port P',
    ),
  );
}

// ---- events ----

const MAX_EVENTS = 200;

function eventsTable(ctx, events) {
  const rows = [...events].sort((a, b) => (b.lastTimestamp ?? '').localeCompare(a.lastTimestamp ?? '')).slice(0, MAX_EVENTS);
  return table(
    ['Last seen', 'Type', 'Reason', 'Object', 'Message', 'Count'],
    rows.map((e) => {
      const plural = { Pod: 'pods', Node: 'nodes', Deployment: 'deployments' }[e.involvedObject.kind];
      return [
        `${age(e.lastTimestamp, ctx.now)} ago`,
        badge(e.type, e.type === 'Warning' ? 'bad' : 'muted'),
        e.reason,
        plural ? link(`${e.involvedObject.kind}/${e.involvedObject.name}`, plural, e.involvedObject.name) : `${e.involvedObject.kind}/${e.involvedObject.name}`,
        e.message,
        String(e.count ?? 1),
      ];
    }),
    'no events',
  );
}

export function eventsView(ctx) {
  const all = [...ctx.state.events.values()];
  const warnings = ctx.params.get('type') === 'Warning';
  return h(
    'div',
    null,
    h('h2', null, 'Events ', h('a', { href: warnings ? '#/events' : '#/events?type=Warning', class: 'small' }, warnings ? 'show all' : 'warnings only')),
    eventsTable(ctx, warnings ? all.filter((e) => e.type === 'Warning') : all),
    all.length > MAX_EVENTS ? h('p', { class: 'muted' }, `newest ${MAX_EVENTS} of ${all.length}`) : null,
  );
}
