import * as http from 'node:http';
import * as https from 'node:https';
import { WebSocket } from 'ws';
import { z } from 'zod';
import { ERROR_CATALOGUE, OrchardError, validationError, type ErrorCode } from '../protocol/errors.js';
import type { Connection } from './config.js';

/**
 * The CLI's only way to the hub: JSON over HTTP(S) with a bearer token. Every request has a
 * timeout. Hub errors (`{code, message, details}`) become OrchardErrors with the same code
 * and details, so the entry point prints the hub's own words and field paths.
 */

const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

const ErrorBodySchema = z.object({
  code: z.string().optional(),
  message: z.string(),
  details: z
    .object({ issues: z.array(z.object({ path: z.string(), message: z.string() })).optional() })
    .catchall(z.unknown())
    .optional(),
});

// Messages that mean the TLS handshake failed because the hub's certificate is not trusted.
const TLS_TRUST_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export interface RequestOptions {
  body?: string | object;
  contentType?: string;
}

/**
 * Several hubs (an etcd group, docs/ha.md): the client tries `conn.servers` in order, starting with
 * the one that answered last. It moves on when a hub answers ERR_NOT_LEADER (a standby, or a
 * leader that just lost its lease: neither did anything), trying first the leader the answer
 * names; and when a hub cannot be reached — for a GET on any transport error, for other methods
 * only when the connection was never made (refused, no route, no such host), since a request cut
 * off mid-way may have been done. A hub's own error (a 4xx, ERR_TIMEOUT of the durability
 * barrier …) is final.
 */
const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);

export class HubClient {
  private current: string;
  private readonly servers: string[];

  constructor(private readonly conn: Connection) {
    this.current = conn.server;
    this.servers = conn.servers !== undefined && conn.servers.length > 0 ? conn.servers : [conn.server];
  }

  /** The hub this client talks to now (the last one that answered). */
  get server(): string {
    return this.current;
  }

  /**
   * Runs `attempt` against each hub in turn (see above) until one answers; the last error when
   * none does. `attempt` gets the hub's base URL and must reject with this client's OrchardErrors.
   */
  private async failover<T>(method: string, attempt: (server: string) => Promise<T>): Promise<T> {
    const queue = [this.current, ...this.servers.filter((s) => s !== this.current)];
    const tried = new Set<string>();
    let last: unknown;
    while (queue.length > 0) {
      const server = queue.shift()!;
      if (tried.has(server)) continue;
      tried.add(server);
      try {
        const r = await attempt(server);
        this.current = server;
        return r;
      } catch (err) {
        last = err;
        if (OrchardError.is(err, 'ERR_NOT_LEADER')) {
          const leader = err.details?.['leader'];
          // Only to a hub of the same scheme: the token must not drop from https to http on a hub's word.
          if (typeof leader === 'string' && new URL(server).protocol === safeProtocol(leader)) queue.unshift(leader.replace(/\/+$/, ''));
          continue;
        }
        const code = OrchardError.is(err) ? err.details?.['errno'] : undefined;
        const unreached = isTransportError(err) && (method === 'GET' || (typeof code === 'string' && NEVER_CONNECTED.has(code)));
        if (!unreached) throw err;
      }
    }
    throw last;
  }

  get hasToken(): boolean {
    return this.conn.token !== undefined;
  }

  get(path: string): Promise<unknown> {
    return this.request('GET', path);
  }

  post(path: string, body: string | object, contentType?: string): Promise<unknown> {
    return this.request('POST', path, contentType === undefined ? { body } : { body, contentType });
  }

  delete(path: string): Promise<unknown> {
    return this.request('DELETE', path);
  }

  /** GETs and parses the answer, reporting a schema mismatch with its field path. */
  async getParsed<S extends z.ZodType>(path: string, schema: S): Promise<{ parsed: z.infer<S>; raw: unknown }> {
    const raw = await this.get(path);
    const r = schema.safeParse(raw);
    if (!r.success) throw validationError(r.error, `response from hub for GET ${path}`);
    return { parsed: r.data, raw };
  }

  /** Resolves with the parsed JSON body (undefined when empty); rejects with an OrchardError. */
  request(method: string, path: string, opts: RequestOptions = {}): Promise<unknown> {
    return this.failover(method, (server) => this.requestTo(server, method, path, opts));
  }

  private requestTo(server: string, method: string, path: string, opts: RequestOptions): Promise<unknown> {
    const url = urlOf(server, path);

    // A Buffer goes as is (agent-version push); any other object as JSON.
    const body = opts.body === undefined ? undefined : typeof opts.body === 'string' || Buffer.isBuffer(opts.body) ? opts.body : JSON.stringify(opts.body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.conn.token !== undefined) headers['authorization'] = `Bearer ${this.conn.token}`;
    if (body !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }

    const isHttps = url.protocol === 'https:';
    const signal = AbortSignal.timeout(this.conn.timeoutMs);
    const options: https.RequestOptions = { method, headers, signal };
    if (isHttps && this.conn.caPem !== undefined) options.ca = this.conn.caPem;

    return new Promise<unknown>((resolve, reject) => {
      const onResponse = (res: http.IncomingMessage): void => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            res.destroy();
            reject(new OrchardError('ERR_PAYLOAD_TOO_LARGE', `response from hub for ${method} ${path} is larger than ${MAX_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (err) => reject(this.networkError(err, server)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status >= 400) {
            reject(hubError(status, text));
            return;
          }
          if (text.trim() === '') {
            resolve(undefined);
            return;
          }
          try {
            resolve(JSON.parse(text));
          } catch {
            reject(new OrchardError('ERR_INTERNAL', `hub answered ${method} ${path} with a body that is not JSON: ${firstLine(text)}`));
          }
        });
      };
      const req = isHttps ? https.request(url, options, onResponse) : http.request(url, options, onResponse);
      req.on('error', (err) => reject(this.networkError(err, server)));
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  /**
   * GETs a streamed answer (`orchard logs`): resolves with the response once a 2xx status arrived
   * (the caller reads it, as slowly as it likes: that is the flow control), rejects with the hub's
   * error otherwise. The timeout covers only the wait for the status line.
   */
  openStream(path: string): Promise<http.IncomingMessage> {
    return this.failover('GET', (server) => this.openStreamAt(server, path));
  }

  private openStreamAt(server: string, path: string): Promise<http.IncomingMessage> {
    const url = urlOf(server, path);
    const headers: Record<string, string> = { accept: 'text/plain' };
    if (this.conn.token !== undefined) headers['authorization'] = `Bearer ${this.conn.token}`;
    const options: https.RequestOptions = { method: 'GET', headers };
    if (url.protocol === 'https:' && this.conn.caPem !== undefined) options.ca = this.conn.caPem;
    return new Promise((resolve, reject) => {
      const onResponse = (res: http.IncomingMessage): void => {
        clearTimeout(timer);
        const status = res.statusCode ?? 0;
        if (status < 400) {
          resolve(res);
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => reject(hubError(status, Buffer.concat(chunks).toString('utf8'))));
        res.on('error', (err) => reject(this.networkError(err, server)));
      };
      const req = url.protocol === 'https:' ? https.request(url, options, onResponse) : http.request(url, options, onResponse);
      const timer = setTimeout(() => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })), this.conn.timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(this.networkError(err, server));
      });
      req.end();
    });
  }

  /** Opens a WebSocket (`orchard exec`); the hub's refusal (401, 403, 404, 409, 429 …) becomes its OrchardError. */
  websocket(path: string): Promise<WebSocket> {
    // Nothing runs before the hub accepts the upgrade: any hub that did not is safe to pass over.
    return this.failover('GET', (server) => this.websocketAt(server, path));
  }

  private websocketAt(server: string, path: string): Promise<WebSocket> {
    const url = urlOf(server, path);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const headers: Record<string, string> = {};
    if (this.conn.token !== undefined) headers['authorization'] = `Bearer ${this.conn.token}`;
    const ws = new WebSocket(url, {
      headers,
      handshakeTimeout: this.conn.timeoutMs,
      perMessageDeflate: false,
      ...(this.conn.caPem !== undefined ? { ca: this.conn.caPem } : {}),
    });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => reject(hubError(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
      });
      ws.once('error', (err) => reject(this.networkError(err, server)));
    });
  }

  private networkError(err: Error, server: string): OrchardError {
    if (err.name === 'AbortError' || err.name === 'TimeoutError') {
      return new OrchardError('ERR_TIMEOUT', `hub at ${server} did not answer within ${this.conn.timeoutMs / 1000}s`, {
        cause: err,
        details: { transport: true },
      });
    }
    const code = (err as NodeJS.ErrnoException).code;
    const hint =
      code !== undefined && TLS_TRUST_CODES.has(code) ? " (the hub's certificate is not trusted: pass --ca FILE or run 'orchard login --ca FILE')" : '';
    return new OrchardError('ERR_INTERNAL', `cannot reach hub at ${server}: ${err.message}${hint}`, {
      cause: err,
      details: { transport: true, ...(code !== undefined ? { errno: code } : {}) },
    });
  }
}

/** `server` (with any base path) + `path` (with any query). */
function urlOf(server: string, path: string): URL {
  const base = new URL(server);
  const url = new URL(base.href);
  const [pathname = '', query] = path.split('?', 2);
  url.pathname = `${base.pathname.replace(/\/+$/, '')}${pathname}`;
  url.search = query === undefined ? '' : `?${query}`;
  return url;
}

function safeProtocol(url: string): string | undefined {
  try {
    return new URL(url).protocol;
  } catch {
    return undefined;
  }
}

/** True when the request never got an HTTP answer (unreachable, TLS failure, timeout). */
export function isTransportError(err: unknown): boolean {
  return OrchardError.is(err) && err.details?.['transport'] === true;
}

export function hubError(status: number, text: string): OrchardError {
  let parsed: z.infer<typeof ErrorBodySchema> | undefined;
  try {
    const r = ErrorBodySchema.safeParse(JSON.parse(text));
    if (r.success) parsed = r.data;
  } catch {
    // Not JSON (a proxy's HTML page, say): fall through to a message with the status.
  }
  const code: ErrorCode = parsed?.code !== undefined && parsed.code in ERROR_CATALOGUE ? (parsed.code as ErrorCode) : codeForStatus(status);
  if (parsed === undefined) {
    const snippet = firstLine(text);
    return new OrchardError(code, `hub answered HTTP ${status}${snippet === '' ? '' : `: ${snippet}`}`);
  }
  return parsed.details === undefined ? new OrchardError(code, parsed.message) : new OrchardError(code, parsed.message, { details: parsed.details });
}

function codeForStatus(status: number): ErrorCode {
  if (status === 401) return 'ERR_UNAUTHENTICATED';
  if (status === 403) return 'ERR_FORBIDDEN';
  if (status === 404) return 'ERR_NOT_FOUND';
  if (status === 409) return 'ERR_CONFLICT';
  if (status === 413) return 'ERR_PAYLOAD_TOO_LARGE';
  if (status === 429) return 'ERR_RATE_LIMITED';
  if (status === 504) return 'ERR_TIMEOUT';
  if (status >= 400 && status < 500) return 'ERR_VALIDATION';
  return 'ERR_INTERNAL';
}

function firstLine(text: string): string {
  const line = text.trim().split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
