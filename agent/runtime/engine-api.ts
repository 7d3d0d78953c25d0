import { readFileSync } from 'node:fs';
import { request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import { OrchardError } from '../../protocol/errors.js';

/**
 * A small Docker Engine API client over `node:http`: JSON calls, streamed responses (pull
 * progress, events, logs) and the hijacked connection of an exec. It replaces dockerode and
 * docker-modem in the agent (issue 17: their code and objects were ≈ 1 MiB of the agent's heap
 * for the twenty-odd calls the agent makes). Paths carry no API version, as dockerode's did:
 * the engine answers in its own current version, which is what docker-runtime.ts reads.
 *
 * Where the engine lives, as the docker CLI reads it: `socketPath` if given, else `DOCKER_HOST`
 * (`unix:///path`, or `tcp://host:port`, over TLS with `DOCKER_TLS_VERIFY` set and the client
 * certificate from `DOCKER_CERT_PATH`, default `~/.docker`), else `/var/run/docker.sock`.
 *
 * Every failure is an OrchardError: an engine answer ≥ 300 is `ERR_RUNTIME` with the engine's
 * own message and `details.status` (docker-runtime.ts maps 404 and 304 by that status), a call
 * aborted by its signal rejects with an error named `AbortError`.
 */

export interface EngineEndpoint {
  socketPath?: string;
  host?: string;
  port?: number;
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
}

/** Where the engine is: an explicit socket, else `DOCKER_HOST`, else the default socket. */
export function engineEndpoint(socketPath: string | undefined, env: NodeJS.ProcessEnv = process.env): EngineEndpoint {
  if (socketPath !== undefined) return { socketPath };
  const host = env.DOCKER_HOST ?? '';
  if (host === '') return { socketPath: '/var/run/docker.sock' };
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  if (host.startsWith('tcp://') || host.startsWith('http://') || host.startsWith('https://')) {
    const u = new URL(host.replace(/^tcp:/, 'http:'));
    const verify = env.DOCKER_TLS_VERIFY !== undefined && env.DOCKER_TLS_VERIFY !== '' && env.DOCKER_TLS_VERIFY !== '0';
    // `[::1]` is how a URL writes an IPv6 host; a socket wants it bare.
    const ep: EngineEndpoint = { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port || (verify ? 2376 : 2375)) };
    if (verify) {
      const dir = env.DOCKER_CERT_PATH ?? `${env.HOME ?? ''}/.docker`;
      ep.tls = { ca: readFileSync(`${dir}/ca.pem`), cert: readFileSync(`${dir}/cert.pem`), key: readFileSync(`${dir}/key.pem`) };
    }
    return ep;
  }
  if (host.startsWith('ssh://'))
    throw new OrchardError(
      'ERR_VALIDATION',
      'DOCKER_HOST: ssh:// Docker hosts are not supported by the Orchard agent; run the agent on the device that runs the engine and use its unix socket',
    );
  throw new OrchardError('ERR_VALIDATION', `DOCKER_HOST: "${host}" is not a unix://, tcp:// or https:// address`);
}

/** The query string's value types: arrays and objects (the engine's `filters`) go as JSON. */
export type Query = Record<string, string | number | boolean | object | undefined>;

export interface CallOptions {
  query?: Query;
  /** Sent as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Bounds the call until the engine's answer starts (a streamed body lives on; destroy it to end it). */
  signal?: AbortSignal;
}

/** `busybox:1`, `reg:5000/app@sha256:…` as a path segment: slashes, colons and `@` stay readable. */
export function pathName(name: string): string {
  return encodeURIComponent(name).replace(/%2F/gi, '/').replace(/%3A/gi, ':').replace(/%40/g, '@');
}

function queryString(q: Query | undefined): string {
  if (q === undefined) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(typeof v === 'object' ? JSON.stringify(v) : String(v))}`);
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

/** The error an aborted call rejects with: named TimeoutError for a timeout, else AbortError. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  const err = new Error('the engine call was aborted', { cause: reason });
  err.name = reason instanceof Error && reason.name === 'TimeoutError' ? 'TimeoutError' : 'AbortError';
  return err;
}

/** Reads a whole (small) body; a connection lost before its end rejects. */
function readBody(res: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      ended = true;
      resolve(Buffer.concat(chunks));
    });
    res.on('error', reject);
    res.on('close', () => {
      if (!ended) reject(new Error('the engine closed the connection before the end of its answer'));
    });
  });
}

async function engineError(res: IncomingMessage, method: string, path: string): Promise<OrchardError> {
  let text = '';
  try {
    text = (await readBody(res)).toString('utf8').trim();
  } catch {
    // the status says enough
  }
  let message = text;
  try {
    const j = JSON.parse(text) as { message?: unknown };
    if (typeof j.message === 'string') message = j.message;
  } catch {
    // not JSON: the text as it came
  }
  if (message === '') message = `${method} ${path.split('?')[0]}: HTTP ${res.statusCode}`;
  return new OrchardError('ERR_RUNTIME', message, { details: { status: res.statusCode } });
}

/** Longest line eachLine keeps: the engine's progress and event lines are a few KiB. */
export const MAX_LINE_CHARS = 1024 * 1024;

/**
 * Calls `onLine` for each line of a streamed answer (pull progress, events: one JSON object a
 * line), decoded as UTF-8 across chunk boundaries. A line longer than MAX_LINE_CHARS is dropped
 * rather than buffered. Returns `flush`, which hands over an unterminated last line.
 */
export function eachLine(stream: Readable, onLine: (line: string) => void): () => void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    if (buf.length > MAX_LINE_CHARS) buf = '';
  });
  return () => {
    const rest = buf;
    buf = '';
    if (rest !== '') onLine(rest);
  };
}

/** Runs `read` of an answer's body; if `signal` fires first the answer is destroyed (with abortError), so the read ends. */
async function withinSignal<T>(res: IncomingMessage, signal: AbortSignal | undefined, read: () => Promise<T>): Promise<T> {
  if (signal === undefined) return read();
  const onAbort = (): void => {
    res.destroy(abortError(signal));
  };
  signal.addEventListener('abort', onAbort, { once: true });
  if (signal.aborted) onAbort();
  try {
    return await read();
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** The engine's HTTP status in an error this client threw (undefined for anything else). */
export function engineStatus(err: unknown): number | undefined {
  if (!(err instanceof OrchardError)) return undefined;
  const s = err.details?.['status'];
  return typeof s === 'number' ? s : undefined;
}

export class EngineApi {
  private readonly ep: EngineEndpoint;

  constructor(endpoint: EngineEndpoint) {
    this.ep = endpoint;
  }

  /** A call whose answer is JSON (or empty: undefined). */
  async json<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
    const res = await this.stream(method, path, opts);
    const body = await withinSignal(res, opts.signal, () => readBody(res));
    if (body.length === 0) return undefined as T;
    try {
      return JSON.parse(body.toString('utf8')) as T;
    } catch {
      // A success with a body that is not JSON (a proxy, an engine variant): nothing to read in it.
      return undefined as T;
    }
  }

  /** A call whose answer is read as it comes (pull progress, events, logs). */
  stream(method: string, path: string, opts: CallOptions = {}): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = this.open(method, path, opts, reject);
      req.on('response', (res) => {
        if ((res.statusCode ?? 0) < 300) return resolve(res);
        this.failed(res, method, path, opts.signal).then(reject, reject);
      });
      req.end(opts.body === undefined ? undefined : JSON.stringify(opts.body));
    });
  }

  /**
   * An exec's start: the engine upgrades the connection (HTTP 101) and the socket then carries the
   * process's stdin one way and its (multiplexed, unless a TTY) output the other way.
   */
  hijack(path: string, body: unknown, opts: CallOptions = {}): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const req = this.open('POST', path, { ...opts, headers: { Connection: 'Upgrade', Upgrade: 'tcp' } }, reject);
      req.on('upgrade', (_res, socket, head) => {
        if (head.length > 0) socket.unshift(head);
        resolve(socket);
      });
      req.on('response', (res) => {
        // A success without the upgrade (a proxy that strips it): there is no way to write stdin.
        if ((res.statusCode ?? 0) < 300) {
          res.destroy();
          return reject(new OrchardError('ERR_RUNTIME', `the engine did not upgrade the connection of ${path} (HTTP ${res.statusCode})`));
        }
        this.failed(res, 'POST', path, opts.signal).then(reject, reject);
      });
      req.end(JSON.stringify(body));
    });
  }

  /** The engine's error answer, read within the call's signal (a body that never ends must not hang the call). */
  private async failed(res: IncomingMessage, method: string, path: string, signal: AbortSignal | undefined): Promise<Error> {
    const err = await withinSignal(res, signal, () => engineError(res, method, path));
    return signal?.aborted === true ? abortError(signal) : err;
  }

  private open(method: string, path: string, opts: CallOptions, reject: (e: Error) => void): ClientRequest {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body !== undefined || headers['Upgrade'] !== undefined) headers['Content-Type'] = 'application/json';
    const ro: RequestOptions = { method, path: `${path}${queryString(opts.query)}`, headers };
    if (this.ep.socketPath !== undefined) ro.socketPath = this.ep.socketPath;
    else {
      ro.host = this.ep.host;
      ro.port = this.ep.port;
    }
    const req = this.ep.tls === undefined ? httpRequest(ro) : httpsRequest({ ...ro, ...this.ep.tls });
    const signal = opts.signal;
    if (signal !== undefined) {
      const onAbort = (): void => {
        req.destroy(abortError(signal));
      };
      if (signal.aborted) queueMicrotask(onAbort);
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        const off = (): void => signal.removeEventListener('abort', onAbort);
        req.once('response', off);
        req.once('upgrade', off);
        req.once('close', off);
      }
    }
    req.on('error', reject);
    return req;
  }
}
