/**
 * The dashboard: one self-contained page (no build step, no CDN — devices and hubs are often
 * offline) that polls the API with the token the user pastes (kept in localStorage).
 *
 * Its script and style are separate responses (`/dashboard.js`, `/dashboard.css`), never inline:
 * the hub sends `Content-Security-Policy: default-src 'self'` with no 'unsafe-inline'
 * (security-headers.ts), so markup injected into the page could not run script even if an
 * escape were missed.
 */
export function renderDashboard(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Orchard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/dashboard.css"></head><body>
<h1>🍎 Orchard</h1>
<div id="auth"><input id="token" type="password" placeholder="API token (orchard token create --role viewer)"> <button id="save">Use token</button> <span id="err" class="bad"></span></div>
<h2>Nodes</h2><table id="nodes"></table>
<h2>Deployments</h2><table id="deployments"></table>
<h2>Pods</h2><table id="pods"></table>
<h2>Recent events</h2><table id="events"></table>
<script src="/dashboard.js"></script></body></html>`;
}

export const DASHBOARD_CSS = `body{font:14px system-ui,sans-serif;margin:1.5rem;color:#1d2b1f;background:#f7faf5}
h1{font-size:1.4rem;margin:0 0 1rem} h2{font-size:1.05rem;margin:1.5rem 0 .4rem}
table{border-collapse:collapse;width:100%;background:#fff} th,td{padding:.3rem .6rem;border-bottom:1px solid #e3eadf;text-align:left}
th{background:#eef4ea;font-weight:600} .ok{color:#2f7d32} .bad{color:#b3261e} .muted{color:#6b7a6d}
#auth{margin-bottom:1rem} input{font:inherit;padding:.25rem;width:28rem;max-width:90%}
`;

export const DASHBOARD_JS = `const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
$('token').value = localStorage.getItem('orchardToken') || '';
$('save').onclick = () => { localStorage.setItem('orchardToken', $('token').value.trim()); refresh(); };
async function get(path) {
  const r = await fetch('/api/v1/' + path, { headers: { authorization: 'Bearer ' + (localStorage.getItem('orchardToken') || '') } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.message || r.statusText);
  return body.items;
}
function table(id, head, rows) {
  $(id).innerHTML = '<tr>' + head.map((h) => '<th>' + h + '</th>').join('') + '</tr>' +
    (rows.length ? rows.map((r) => '<tr>' + r.map((c) => '<td>' + c + '</td>').join('') + '</tr>').join('') : '<tr><td class="muted" colspan="' + head.length + '">none</td></tr>');
}
const ready = (n) => (n.status.conditions || []).some((c) => c.type === 'Ready' && c.status === 'True');
async function refresh() {
  try {
    const [nodes, deps, pods, events] = await Promise.all([get('nodes'), get('deployments'), get('pods'), get('events')]);
    $('err').textContent = '';
    table('nodes', ['Name', 'Status', 'Arch', 'CPU', 'Memory', 'Pods'], nodes.map((n) => [esc(n.metadata.name),
      ready(n) ? '<span class="ok">Ready</span>' : '<span class="bad">NotReady</span>', esc(n.status.info?.arch), esc(n.status.info?.cpu.cores),
      esc(Math.round((n.status.info?.memoryBytes || 0) / 1048576) + 'Mi'), pods.filter((p) => p.spec.nodeName === n.metadata.name).length]));
    table('deployments', ['Name', 'Ready', 'Mode'], deps.map((d) => [esc(d.metadata.name),
      esc(d.status.readyReplicas + '/' + (d.spec.mode === 'global' ? d.status.replicas : d.spec.replicas)), esc(d.spec.mode)]));
    table('pods', ['Name', 'Status', 'Restarts', 'Node'], pods.map((p) => {
      const waiting = (p.status.containerStatuses || []).find((c) => c.state !== 'running' && c.reason);
      return [esc(p.metadata.name), esc(waiting ? waiting.reason : p.status.phase), (p.status.containerStatuses || []).reduce((a, c) => a + c.restartCount, 0), esc(p.spec.nodeName || '—')];
    }));
    table('events', ['Last seen', 'Type', 'Reason', 'Object', 'Message'], events.slice(-15).reverse().map((e) => [esc(e.lastTimestamp),
      esc(e.type), esc(e.reason), esc(e.involvedObject.kind + '/' + e.involvedObject.name), esc(e.message)]));
  } catch (e) { $('err').textContent = e.message; }
}
refresh(); setInterval(refresh, 3000);
`;
