// Live logs of one pod: GET /api/v1/pods/<pod>/logs?follow=true read as a stream and appended
// as text nodes (a log line is never parsed as markup). The page keeps the newest MAX_CHARS.

import { streamLogs } from './api.js';
import { h, replace } from './dom.js';

const MAX_CHARS = 512 * 1024;

/** A view that owns its element across re-renders: update() only refreshes the pod list. */
export function logsView(ctx, podName) {
  let ac;
  let kept = 0;
  const out = h('pre', { class: 'logs', 'aria-live': 'polite' });
  const status = h('span', { class: 'muted', id: 'logs-status' });
  const podSel = h('select', { id: 'logs-pod', 'aria-label': 'pod' });
  const containerSel = h('select', { id: 'logs-container', 'aria-label': 'container' });
  const tail = h('input', { id: 'logs-tail', type: 'number', min: 0, value: 200, 'aria-label': 'lines to show first' });
  const follow = h('input', { id: 'logs-follow', type: 'checkbox', checked: true });
  const startBtn = h('button', { id: 'logs-start' }, 'Stream');
  const stopBtn = h('button', { id: 'logs-stop', disabled: true }, 'Stop');

  const appendText = (text) => {
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    out.appendChild(document.createTextNode(text));
    kept += text.length;
    while (kept > MAX_CHARS && out.firstChild) {
      kept -= out.firstChild.textContent.length;
      out.removeChild(out.firstChild);
    }
    if (atBottom) out.scrollTop = out.scrollHeight;
  };

  const stop = () => {
    ac?.abort();
    ac = undefined;
    startBtn.disabled = false;
    stopBtn.disabled = true;
  };

  const start = async () => {
    stop();
    const pod = podSel.value;
    if (!pod) return;
    if (location.hash !== `#/logs/${encodeURIComponent(pod)}`) history.replaceState(null, '', `#/logs/${encodeURIComponent(pod)}`);
    replace(out);
    kept = 0;
    const mine = (ac = new AbortController());
    startBtn.disabled = true;
    stopBtn.disabled = false;
    status.textContent = follow.checked ? 'streaming…' : 'loading…';
    status.className = 'muted';
    try {
      await streamLogs(pod, { container: containerSel.value, tail: Number(tail.value) || 0, follow: follow.checked }, appendText, mine.signal);
      if (ac === mine) status.textContent = follow.checked ? 'stream ended (the container stopped or the hub closed it)' : 'end of log';
    } catch (e) {
      if (mine.signal.aborted) {
        status.textContent = 'stopped';
      } else {
        status.textContent = e.code ? `${e.code}: ${e.message}` : e.message;
        status.className = 'bad';
      }
    } finally {
      if (ac === mine) stop();
    }
  };
  startBtn.addEventListener('click', () => void start());
  stopBtn.addEventListener('click', stop);

  const fillContainers = () => {
    const p = ctx.state.pods.get(podSel.value);
    const names = (p?.spec.containers ?? []).map((c) => c.name);
    if (names.join() === [...containerSel.options].map((o) => o.value).join()) return;
    replace(
      containerSel,
      names.map((n) => h('option', { value: n }, n)),
    );
  };
  podSel.addEventListener('change', () => {
    fillContainers();
    void start();
  });

  const update = (c) => {
    ctx = c;
    const names = [...ctx.state.pods.keys()].sort();
    const current = podSel.value || podName;
    if (current && !names.includes(current)) names.unshift(current);
    if (names.join() !== [...podSel.options].map((o) => o.value).join()) {
      replace(
        podSel,
        names.map((n) => h('option', { value: n }, n)),
      );
      podSel.value = current ?? '';
    }
    fillContainers();
  };

  const el = h(
    'div',
    null,
    h('h2', null, 'Logs'),
    h(
      'div',
      { class: 'toolbar' },
      h('label', null, 'Pod ', podSel),
      h('label', null, 'Container ', containerSel),
      h('label', null, 'Tail ', tail),
      h('label', null, follow, ' follow'),
      startBtn,
      stopBtn,
      status,
    ),
    out,
  );
  update(ctx);
  if (podSel.value) void start();
  return { el, update, unmount: stop };
}
