// The Orchard dashboard: a single page served by the hub (no build step, no CDN, no framework).
// Data flow: list each kind once, then follow GET /api/v1/watch (store events) to keep the
// lists current; usage (not in the store) is polled every 10 s. A dropped watch is re-opened
// with backoff; if watching is refused (too many streams) the page polls instead.
// Actions shown depend on the token's operations (GET /api/v1/whoami); the hub checks every
// request anyway, so hiding a button is a convenience, never the protection.

import { ApiError, api, list, token, watch } from './api.js';
import { h, replace } from './dom.js';
import { fleetView, nodeView } from './views-fleet.js';
import { logsView } from './views-logs.js';
import { deploymentView, deploymentsView, eventsView, podView, podsView, servicesView } from './views-workloads.js';

const $ = (id) => document.getElementById(id);
const KINDS = { Node: 'nodes', Deployment: 'deployments', Pod: 'pods', Service: 'services', Event: 'events' };
const METRICS_EVERY_MS = 10_000;

const state = {
  nodes: new Map(),
  deployments: new Map(),
  pods: new Map(),
  services: new Map(),
  events: new Map(),
  nodeMetrics: new Map(),
  podMetrics: new Map(),
};
let me;
let session; // AbortController of the signed-in session (watch, polls)
let mounted; // { route, update?, unmount? }
const memo = new Map();

// ---- store of objects ----

function applyEvent(type, obj) {
  const plural = KINDS[obj.kind];
  if (!plural) return;
  const m = state[plural];
  const name = obj.metadata.name;
  if (type === 'DELETED') {
    m.delete(name);
    return;
  }
  // A watch event can arrive before the list it overlaps: keep the newer write.
  const have = m.get(name);
  if (!have || have.metadata.resourceVersion <= obj.metadata.resourceVersion) m.set(name, obj);
}

async function relist(signal) {
  const lists = await Promise.all(Object.values(KINDS).map((p) => list(p, signal)));
  if (signal.aborted) return; // its watch is over: a newer list owns the state
  Object.values(KINDS).forEach((p, i) => {
    state[p] = new Map(lists[i].map((o) => [o.metadata.name, o]));
  });
}

async function pollMetrics(signal) {
  try {
    const [nodes, pods] = await Promise.all([api('GET', 'metrics/nodes?history=1', undefined, signal), api('GET', 'metrics/pods', undefined, signal)]);
    state.nodeMetrics = new Map(nodes.items.map((m) => [m.name, m]));
    state.podMetrics = new Map(pods.items.map((m) => [m.name, m]));
  } catch (e) {
    if (!signal.aborted) console.warn('metrics', e.message);
  }
}

// ---- live updates ----

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const wake = () => (clearTimeout(t), resolve());
    const t = setTimeout(() => (signal.removeEventListener('abort', wake), resolve()), ms);
    signal.addEventListener('abort', wake, { once: true });
  });

function setLive(text, kind) {
  const el = $('live');
  el.textContent = text;
  el.className = `badge ${kind}`;
}

async function syncLoop(signal) {
  let backoff = 1000;
  let polling = false;
  while (!signal.aborted) {
    try {
      if (polling) {
        await relist(signal);
        render();
        setLive('polling', 'warn');
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 1.5, 15_000);
        continue;
      }
      const pending = [];
      let listed = false;
      // This watch only: a list that fails ends it, and the loop watches and lists again
      // (otherwise the page would wait on a stream whose list never came).
      const attempt = new AbortController();
      const stop = () => attempt.abort();
      signal.addEventListener('abort', stop, { once: true });
      // Watch first, list once the stream is open: nothing written in between is missed.
      await watch(
        Object.keys(KINDS),
        {
          onOpen: () => {
            relist(attempt.signal)
              .then(() => {
                if (attempt.signal.aborted) return;
                listed = true;
                for (const [t, o] of pending.splice(0)) applyEvent(t, o);
                setLive('live', 'ok');
                backoff = 1000;
                render();
              })
              .catch((e) => {
                console.warn('list', e.message);
                attempt.abort();
              });
          },
          onEvent: (type, obj) => {
            if (!listed) pending.push([type, obj]);
            else {
              applyEvent(type, obj);
              scheduleRender();
            }
          },
        },
        attempt.signal,
      ).finally(() => {
        signal.removeEventListener('abort', stop);
        // A list still in flight belongs to this watch: it must not land after the next one started.
        attempt.abort();
      });
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return signOut(e.message);
      if (e instanceof ApiError && e.code === 'ERR_WATCH_LIMIT') polling = true;
    }
    if (signal.aborted) return;
    if (!polling) {
      setLive(`reconnecting in ${Math.round(backoff / 1000)} s`, 'bad');
      await sleep(backoff + Math.random() * 500, signal);
      backoff = Math.min(backoff * 2, 30_000);
    }
  }
}

async function metricsLoop(signal) {
  while (!signal.aborted) {
    await pollMetrics(signal);
    scheduleRender();
    await sleep(METRICS_EVERY_MS, signal);
  }
}

// ---- actions (operators) ----

function toast(text, kind = 'ok') {
  const el = h('div', { class: `toast ${kind}`, role: 'status' }, text);
  $('toasts').appendChild(el);
  setTimeout(() => el.remove(), kind === 'bad' ? 8000 : 4000);
}

async function act(label, method, path, body) {
  try {
    await api(method, path, body ?? {});
    toast(`${label}: done`);
  } catch (e) {
    toast(`${label}: ${e.code ? `${e.code}: ` : ''}${e.message}`, 'bad');
  }
}

/** A modal asking to confirm; with `input`, returns the typed value (undefined when cancelled). */
function dialog(title, message, confirmLabel, input) {
  return new Promise((resolve) => {
    const field = input ? h('input', { id: 'dialog-input', type: 'number', min: 0, value: input.value, 'aria-label': input.label }) : null;
    const ok = h('button', { id: 'dialog-ok', value: 'ok' }, confirmLabel);
    const cancel = h('button', { id: 'dialog-cancel', value: 'cancel', class: 'secondary' }, 'Cancel');
    const d = h(
      'dialog',
      null,
      h(
        'form',
        { method: 'dialog' },
        h('h3', null, title),
        message ? h('p', null, message) : null,
        field ? h('label', null, `${input.label} `, field) : null,
        h('menu', null, cancel, ok),
      ),
    );
    d.addEventListener('close', () => {
      d.remove();
      resolve(d.returnValue === 'ok' ? (field ? field.value : true) : field ? undefined : false);
    });
    document.body.appendChild(d);
    d.showModal();
    field?.select();
  });
}

// ---- routing and rendering ----

function route() {
  const [path, query] = (location.hash.replace(/^#\/?/, '') || 'fleet').split('?');
  const [view, ...rest] = path.split('/').map((p) => decodeURIComponent(p));
  return { view, name: rest[0], params: new URLSearchParams(query ?? ''), key: location.hash };
}

const VIEWS = {
  fleet: (c) => fleetView(c),
  nodes: (c, n) => (n ? nodeView(c, n) : fleetView(c)),
  deployments: (c, n) => (n ? deploymentView(c, n) : deploymentsView(c)),
  pods: (c, n) => (n ? podView(c, n) : podsView(c)),
  services: (c) => servicesView(c),
  events: (c) => eventsView(c),
};

function context(r) {
  return {
    state,
    me,
    now: Date.now(),
    params: r.params,
    can: (op) => me?.operations.includes(op) ?? false,
    act: async (...a) => {
      await act(...a);
      memo.clear();
    },
    confirm: (title, message, label) => dialog(title, message, label),
    prompt: (title, label, value) => dialog(title, '', 'Apply', { label, value }),
    toast,
    once: (key, fn) => {
      if (memo.size > 64) memo.clear();
      if (!memo.has(key)) memo.set(key, fn());
      return memo.get(key);
    },
  };
}

function render() {
  if (!me) return;
  const r = route();
  const main = $('main');
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.getAttribute('href') === `#/${r.view === 'nodes' ? 'fleet' : r.view}`);
  const ctx = context(r);
  if (mounted?.key === r.key && mounted.update) return mounted.update(ctx);
  mounted?.unmount?.();
  if (r.view === 'logs') {
    const v = logsView(ctx, r.name);
    mounted = { key: r.key, update: v.update, unmount: v.unmount };
    return replace(main, v.el);
  }
  const keepScroll = mounted?.key === r.key ? window.scrollY : 0;
  mounted = { key: r.key };
  replace(main, (VIEWS[r.view] ?? VIEWS.fleet)(ctx, r.name));
  window.scrollTo(0, keepScroll);
}

let renderTimer;
function scheduleRender() {
  if (renderTimer === undefined) renderTimer = setTimeout(() => ((renderTimer = undefined), render()), 300);
}

// ---- sign in / out ----

function signOut(message) {
  session?.abort();
  session = undefined;
  mounted?.unmount?.();
  mounted = undefined;
  me = undefined;
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message ?? '';
}

async function signIn() {
  session?.abort();
  try {
    me = await api('GET', 'whoami');
  } catch (e) {
    return signOut(token.get() ? e.message : '');
  }
  session = new AbortController();
  $('login').hidden = true;
  $('app').hidden = false;
  $('me').textContent = `${me.name} (${me.role})`;
  $('me').dataset.role = me.role;
  render();
  void syncLoop(session.signal);
  void metricsLoop(session.signal);
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('token'));
  token.set(input.value);
  input.value = '';
  void signIn();
});
$('signout').addEventListener('click', () => {
  token.clear();
  signOut('signed out; the token is no longer kept in this browser');
});
window.addEventListener('hashchange', () => render());
setInterval(() => {
  // Ages ("3m ago") move on even when nothing changes; views that own their state are left alone.
  if (me && !mounted?.update) scheduleRender();
}, 15_000);
void signIn();
