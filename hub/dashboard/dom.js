// DOM helpers for the dashboard. Every piece of data reaches the page as a text node or as an
// attribute set with setAttribute: nothing is ever parsed as HTML (no innerHTML, no
// insertAdjacentHTML, no document.write), so a pod name, label, event message or log line can
// never become markup. Event handlers are attached with addEventListener, never as attributes
// (the hub's CSP forbids inline handlers anyway).

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Attributes a caller may set; `on*` and `style` are refused (handlers go through `on`, styles through classes). */
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      continue;
    }
    if (/^on/i.test(k) || k === 'style' || k === 'innerHTML') throw new Error(`refused attribute ${k}`);
    if (k === 'href' && !String(v).startsWith('#')) throw new Error('only in-page links');
    if (k === 'value' && 'value' in el) el.value = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** h('td', {class: 'x'}, 'text', child…): an HTML element; strings become text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements (charts). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A table from a header row and rows of cells (strings or nodes); `empty` when no rows. */
export function table(head, rows, empty = 'none') {
  return h(
    'table',
    null,
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        head.map((c) => h('th', null, c)),
      ),
    ),
    h(
      'tbody',
      null,
      rows.length
        ? rows.map((r) =>
            h(
              'tr',
              r.attrs ?? null,
              (r.cells ?? r).map((c) => h('td', null, c)),
            ),
          )
        : h('tr', null, h('td', { class: 'muted', colspan: head.length }, empty)),
    ),
  );
}

/** A small coloured label: kind ok | warn | bad | muted | info. */
export function badge(text, kind = 'muted', title) {
  return h('span', { class: `badge ${kind}`, title }, text);
}

/** An in-page link to a route (#/kind/name); names are URI-encoded. */
export function link(text, ...path) {
  return h('a', { href: `#/${path.map((p) => encodeURIComponent(p)).join('/')}` }, text);
}

// ---- formatting ----

export function bytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  const units = ['B', 'Ki', 'Mi', 'Gi', 'Ti'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)}${units[i]}`;
}

export function cores(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return n < 1 ? `${Math.round(n * 1000)}m` : `${n.toFixed(2).replace(/\.?0+$/, '')}`;
}

/** "3m ago" style age of an ISO timestamp against now. */
export function age(iso, now = Date.now()) {
  const t = Date.parse(iso ?? '');
  if (!Number.isFinite(t)) return '—';
  let sec = Math.max(0, Math.round((now - t) / 1000));
  if (sec < 60) return `${sec}s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min}m`;
  const hr = Math.floor(min / 60);
  if (hr < 48) return `${hr}h${min % 60 ? `${min % 60}m` : ''}`;
  return `${Math.floor(hr / 24)}d`;
}
