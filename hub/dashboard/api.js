// The hub's HTTP API as the dashboard uses it. The token the user gives is kept in this
// browser's localStorage and sent as "Authorization: Bearer …" on every request; streams (the
// watch and pod logs) are read with fetch + ReadableStream, because EventSource cannot send an
// Authorization header.

const TOKEN_KEY = 'orchardToken';

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY) ?? '',
  set: (v) => localStorage.setItem(TOKEN_KEY, v.trim()),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

/** An error answer of the hub: its status, ERR_* code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(res) {
  try {
    const body = await res.json();
    return new ApiError(res.status, body.code, body.message ?? res.statusText);
  } catch {
    return new ApiError(res.status, undefined, `${res.status} ${res.statusText}`);
  }
}

const headers = (json) => ({ authorization: `Bearer ${token.get()}`, ...(json ? { 'content-type': 'application/json' } : {}) });

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One JSON request to /api/v1/<path>; throws ApiError on an error answer. A GET that failed
 * without an answer (fetch's TypeError: the browser dropped the request, e.g. Chromium's
 * ERR_NETWORK_CHANGED when the machine's interfaces change) is sent again, at most twice; a
 * write is not, because it may have reached the hub.
 */
export async function api(method, path, body, signal) {
  for (let attempt = 1; ; attempt++) {
    let res;
    try {
      res = await fetch(`/api/v1/${path}`, {
        method,
        headers: headers(body !== undefined),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if (method !== 'GET' || !(e instanceof TypeError) || signal?.aborted || attempt >= 3) throw e;
      await pause(250 * attempt);
      continue;
    }
    if (!res.ok) throw await errorOf(res);
    return res.json();
  }
}

export const list = async (plural, signal) => (await api('GET', plural, undefined, signal)).items;
export const enc = encodeURIComponent;

/**
 * Reads a text stream chunk by chunk (UTF-8 split across chunks is decoded whole).
 * Resolves when the stream ends; rejects on an error answer (ApiError) or abort.
 */
async function readText(url, onText, signal) {
  const res = await fetch(url, { headers: headers(false), signal });
  if (!res.ok) throw await errorOf(res);
  if (!res.body) throw new ApiError(0, undefined, 'this browser cannot read streamed answers');
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    onText(decoder.decode(value, { stream: true }));
  }
  const rest = decoder.decode();
  if (rest) onText(rest);
}

/**
 * GET /api/v1/watch?kinds=…: calls onOpen once the hub has started the stream (the subscription
 * is live from then on), then onEvent(type, object) per store event. Resolves when the hub ends
 * the stream (restart, slow reader): the caller re-lists and watches again.
 */
export async function watch(kinds, { onOpen, onEvent }, signal) {
  let buf = '';
  let opened = false;
  await readText(
    `/api/v1/watch?kinds=${enc(kinds.join(','))}`,
    (text) => {
      if (!opened) {
        opened = true;
        onOpen();
      }
      buf += text;
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let type = 'message';
        let data = '';
        for (const line of frame.split('\n')) {
          if (line.startsWith('event: ')) type = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (data) onEvent(type, JSON.parse(data));
      }
    },
    signal,
  );
}

/**
 * GET /api/v1/pods/<pod>/logs: the container's output as the device sends it (stdout and
 * stderr merged), as text chunks; with follow, until the container stops or the signal aborts.
 */
export function streamLogs(pod, { container, tail, follow }, onText, signal) {
  const q = new URLSearchParams();
  if (container) q.set('container', container);
  if (tail !== undefined) q.set('tail', String(tail));
  q.set('follow', follow ? 'true' : 'false');
  return readText(`/api/v1/pods/${enc(pod)}/logs?${q}`, onText, signal);
}
