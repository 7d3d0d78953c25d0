import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { z } from 'zod';
import { OrchardError, parseOrThrow } from '../../protocol/errors.js';
import { NameSchema } from '../../protocol/manifest.js';
import { parseSinceDuration } from '../../protocol/streams.js';
import { nodeLogsSince, streamTarget } from '../streams/stream-target.js';
import { EXEC_CHANNEL } from '../../protocol/api.js';
import { recordEvent } from '../events.js';
import type { Logger } from '../log.js';
import type { Operation } from '../security/authz.js';
import { WRITE_BARRIER_MS, type Store } from '../store/store.js';
import type { StreamHandle, StreamHub, StreamSink } from '../streams/stream-hub.js';
import type { Role } from '../../protocol/api.js';
import { SECURITY_HEADERS } from './security-headers.js';
import { parseQuery } from './request-parse.js';

/**
 * `orchard logs` and `orchard exec` over HTTP (issue 16; docs/observability.md "Logs", "Exec"):
 *
 *   GET /api/v1/pods/{name}/logs?container=&follow=&tail=&since=&previous=   (viewer)
 *     → 200 text/plain, the log bytes as written (stdout and stderr merged, in order), chunked
 *       while following. Errors before the first byte are the JSON envelope; a stream that fails
 *       later ends with the trailer `X-Orchard-Error: {code,message}`.
 *   GET /api/v1/pods/{name}/exec?container=&command=…&tty=&stdin=&cols=&rows=  (operator)
 *     → upgraded to a WebSocket (binary messages, first byte a channel: protocol/api.ts
 *       EXEC_CHANNEL). Every exec is recorded as an Event on the pod naming the token and argv,
 *       durable (Store.sync) before the device is asked to run anything.
 *
 * Both go through the StreamHub, which grants the device credit only as the response or the
 * WebSocket drains, so a slow reader pauses the device's stream.
 */

export interface StreamRoutesDeps {
  need: (op: Operation) => (req: FastifyRequest) => Promise<void>;
  /** The same check `need` runs, for the WebSocket upgrade (which bypasses fastify's routing). */
  authenticate: (authorization: string | undefined, source: string, op: Operation) => { id?: string; name: string; role: Role };
  store: Store;
  streams: StreamHub;
  log: Logger;
  /** ApiDeps.writeGate: an exec records an event first, so it is a write. */
  writeGate?: () => void;
  now: () => Date;
  /** Whether an API token is still valid (revoked or expired: false); its sessions are swept every 5 s. */
  isTokenActive?: (id: string) => boolean;
}

/**
 * The log and exec sessions each API token holds, so revoking it (or its expiry) ends them
 * at once, as it ends the token's watch streams and MQTT sessions.
 */
class TokenSessions {
  private readonly byToken = new Map<string, Set<() => void>>();
  private readonly timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly isTokenActive: ((id: string) => boolean) | undefined) {
    if (isTokenActive !== undefined) {
      this.timer = setInterval(() => {
        for (const id of [...this.byToken.keys()]) if (!isTokenActive(id)) this.closeToken(id);
      }, 5_000);
      this.timer.unref();
    }
  }

  /** Tracks a session of `tokenId` (none for tokens without an id); returns its untrack function. */
  add(tokenId: string | undefined, close: () => void): () => void {
    if (tokenId === undefined) return () => undefined;
    let set = this.byToken.get(tokenId);
    if (set === undefined) this.byToken.set(tokenId, (set = new Set()));
    set.add(close);
    return () => {
      set.delete(close);
      if (set.size === 0 && this.byToken.get(tokenId) === set) this.byToken.delete(tokenId);
    };
  }

  /** Ends every session of the token; returns how many. */
  closeToken(tokenId: string): number {
    const set = this.byToken.get(tokenId);
    if (set === undefined) return 0;
    this.byToken.delete(tokenId);
    for (const close of set) close();
    return set.size;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }
}

const flag = z
  .enum(['1', 'true', '0', 'false'])
  .optional()
  .transform((v) => v === '1' || v === 'true');

const LogsQuerySchema = z.object({
  container: NameSchema.optional(),
  follow: flag,
  tail: z
    .string()
    .regex(/^\d{1,7}$/, 'must be a whole number')
    .transform(Number)
    .optional(),
  since: z.string().max(32).optional(),
  previous: flag,
});

const ExecQuerySchema = z.object({
  container: NameSchema.optional(),
  command: z
    .array(z.string().max(16 * 1024))
    .min(1, 'give the command as one or more command= parameters')
    .max(256),
  tty: flag,
  stdin: flag,
  cols: z.coerce.number().int().min(1).max(1000).optional(),
  rows: z.coerce.number().int().min(1).max(1000).optional(),
});

/**
 * A sink that holds what arrives before its writer is attached (at most one window: the device
 * sends no more than it was granted) and then hands everything to `write`.
 */
class PendingSink implements StreamSink {
  private queue: Array<{ fd: 1 | 2; data: Buffer; done: () => void }> = [];
  private target: StreamSink | undefined;
  private ending: { err?: OrchardError; exitCode?: number } | undefined;

  attach(t: StreamSink): void {
    this.target = t;
    for (const q of this.queue) t.write(q.fd, q.data, q.done);
    this.queue = [];
    if (this.ending?.err !== undefined) t.fail(this.ending.err);
    else if (this.ending !== undefined) t.end(this.ending.exitCode);
  }

  write(fd: 1 | 2, data: Buffer, done: () => void): void {
    if (this.target !== undefined) this.target.write(fd, data, done);
    else this.queue.push({ fd, data, done });
  }

  end(exitCode?: number): void {
    if (this.target !== undefined) this.target.end(exitCode);
    else this.ending = exitCode === undefined ? {} : { exitCode };
  }

  fail(err: OrchardError): void {
    if (this.target !== undefined) this.target.fail(err);
    else this.ending = { err };
  }
}

export function registerStreamRoutes(app: FastifyInstance, d: StreamRoutesDeps): { closeToken: (tokenId: string) => number } {
  const sessions = new TokenSessions(d.isTokenActive);
  app.get('/api/v1/pods/:name/logs', { preHandler: d.need('pods.logs') }, async (req, reply) => {
    const { name } = req.params as { name: string };
    const q = parseQuery(LogsQuerySchema, req);
    const t = streamTarget(d.store, name, q.container);
    let sinceAgo: number | undefined;
    if (q.since !== undefined) {
      sinceAgo = parseSinceDuration(q.since);
      if (sinceAgo === undefined)
        throw new OrchardError('ERR_VALIDATION', `since "${q.since}" is not a duration like 30s, 10m or 2h`, {
          details: { issues: [{ path: 'query.since', message: 'must be a duration like 30s, 10m or 2h' }] },
        });
    }
    // Measured on the device's clock when its agent can (older agents: from the hub's clock).
    const since = nodeLogsSince(d.store, t.node, sinceAgo, d.now().getTime());
    const res = reply.raw;
    let gone = false;
    let handle: StreamHandle | undefined;
    req.raw.on('close', () => {
      gone = true;
      handle?.cancel();
    });
    const pending = new PendingSink();
    handle = await d.streams.open(
      t.node,
      {
        kind: 'logs',
        pod: name,
        container: t.container,
        follow: q.follow && !q.previous,
        previous: q.previous,
        ...(q.tail !== undefined ? { tail: q.tail } : {}),
        ...since,
      },
      pending,
    );
    if (gone) {
      handle.cancel();
      return reply.hijack();
    }
    reply.hijack();
    const untrack = sessions.add(req.principal?.id, () => {
      handle?.cancel();
      res.destroy();
    });
    req.raw.on('close', untrack);
    // A quiet `-f` must not be cut by the idle timeout; the stream ends when either side goes.
    req.raw.socket.setTimeout(0);
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/plain; charset=utf-8',
      'cache-control': 'no-cache',
      trailer: 'X-Orchard-Error',
    });
    res.flushHeaders();
    pending.attach(responseSink(res));
  });

  // Reached only without an Upgrade header: exec is a WebSocket (attachExecUpgrade).
  app.get('/api/v1/pods/:name/exec', { preHandler: d.need('pods.exec') }, async () => {
    throw new OrchardError('ERR_VALIDATION', 'exec needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)');
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024, perMessageDeflate: false });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    const m = /^\/api\/v1\/pods\/([^/]+)\/exec$/.exec(path);
    if (m === null) {
      httpError(socket, new OrchardError('ERR_NOT_FOUND', `no WebSocket route ${path}`));
      return;
    }
    socket.on('error', () => socket.destroy());
    // Everything that can throw runs inside the promise: this listener is outside fastify, and a
    // throw here (a malformed %-escape, before any authentication) would end the hub process.
    Promise.resolve()
      .then(() => {
        let pod: string;
        try {
          pod = decodeURIComponent(m[1] ?? '');
        } catch {
          throw new OrchardError('ERR_VALIDATION', 'the pod name in the path is not valid percent-encoding');
        }
        // ws answers a bad handshake itself and never calls back: check it before a device stream opens.
        if (!isWebSocketHandshake(req))
          throw new OrchardError('ERR_VALIDATION', 'exec needs a WebSocket upgrade (Upgrade: websocket, Sec-WebSocket-Version: 13, a Sec-WebSocket-Key)');
        return execUpgrade(d, wss, sessions, req, socket, head, pod);
      })
      .catch((err: unknown) => {
        const oe = OrchardError.from(err);
        if (oe.status >= 500 && oe.code === 'ERR_INTERNAL') d.log.error('exec failed', { err });
        httpError(socket, oe);
      });
  });
  app.addHook('onClose', async () => {
    sessions.stop();
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return { closeToken: (id) => sessions.closeToken(id) };
}

/** The checks ws's handleUpgrade makes before it calls back (RFC 6455 4.2.1). */
export function isWebSocketHandshake(req: IncomingMessage): boolean {
  const key = req.headers['sec-websocket-key'];
  return (
    req.method === 'GET' &&
    (req.headers.upgrade ?? '').toLowerCase() === 'websocket' &&
    req.headers['sec-websocket-version'] === '13' &&
    typeof key === 'string' &&
    /^[+/0-9A-Za-z]{22}==$/.test(key)
  );
}

async function execUpgrade(
  d: StreamRoutesDeps,
  wss: WebSocketServer,
  sessions: TokenSessions,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  pod: string,
): Promise<void> {
  const principal = d.authenticate(req.headers.authorization, req.socket.remoteAddress ?? '', 'pods.exec');
  d.writeGate?.(); // before the audit event: an exec etcd cannot record does not run
  const url = new URL(req.url ?? '', 'http://hub');
  const raw: Record<string, unknown> = {};
  for (const key of new Set(url.searchParams.keys())) raw[key] = key === 'command' ? url.searchParams.getAll(key) : url.searchParams.get(key);
  const q = parseOrThrow(ExecQuerySchema, raw, 'query', 'query');
  const t = streamTarget(d.store, pod, q.container);
  const argv = JSON.stringify(q.command);
  recordEvent(d.store, d.now(), {
    kind: 'Pod',
    name: pod,
    type: 'Normal',
    reason: 'Exec',
    message: `token "${principal.name}"${principal.id !== undefined ? ` (${principal.id})` : ''} ran ${argv.length > 1000 ? `${argv.slice(0, 1000)}…` : argv} in container ${t.container}${q.tty ? ' with a terminal' : ''}`,
  });
  d.log.info('exec', { pod, container: t.container, token: principal.id ?? principal.name, command: q.command });
  // The audit event must outlive a hub crash or failover before anything runs on the device: a
  // remote store's durability barrier first (etcd: a quorum's fsync; SQLite committed durably
  // already). A barrier that fails or times out refuses the exec (ERR_TIMEOUT, ERR_NOT_LEADER).
  // Listen for the client leaving before the barrier: one that goes during it must not have a
  // command started on the device with nobody attached (review, 2026-12-02).
  let gone = false;
  socket.once('close', () => (gone = true));
  if (d.store.sync) await d.store.sync(WRITE_BARRIER_MS);
  if (gone || socket.destroyed) return;
  const pending = new PendingSink();
  const handle = await d.streams.open(
    t.node,
    {
      kind: 'exec',
      pod,
      container: t.container,
      command: q.command,
      tty: q.tty,
      stdin: q.stdin,
      ...(q.cols !== undefined ? { cols: q.cols } : {}),
      ...(q.rows !== undefined ? { rows: q.rows } : {}),
    },
    pending,
  );
  if (gone) {
    handle.cancel();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const untrack = sessions.add(principal.id, () => {
      handle.cancel();
      ws.terminate();
    });
    ws.on('close', () => {
      untrack();
      handle.cancel();
    });
    ws.on('error', () => ws.terminate());
    handle.onStdinDrain = () => ws.resume();
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (!isBinary || buf.length === 0) return;
      const channel = buf[0];
      const body = buf.subarray(1);
      if (channel === EXEC_CHANNEL.stdin) {
        if (!handle.stdin(Buffer.from(body))) ws.pause();
      } else if (channel === EXEC_CHANNEL.stdinEof) handle.closeStdin();
      else if (channel === EXEC_CHANNEL.resize) {
        const r = z.object({ cols: z.number().int().min(1).max(1000), rows: z.number().int().min(1).max(1000) }).safeParse(safeJson(body));
        if (r.success) handle.resize(r.data.cols, r.data.rows);
      }
    });
    pending.attach(wsSink(ws));
  });
}

function safeJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

function responseSink(res: ServerResponse): StreamSink {
  return {
    write: (_fd, data, done) => {
      if (res.destroyed || res.writableEnded) return done();
      // The callback runs once node has handed the bytes to the socket: that is "drained".
      res.write(data, () => done());
    },
    end: () => {
      if (!res.writableEnded) res.end();
    },
    fail: (err) => {
      if (res.writableEnded) return;
      res.addTrailers({ 'X-Orchard-Error': JSON.stringify(err.toJSON()) });
      res.end();
    },
  };
}

function wsSink(ws: WebSocket): StreamSink {
  const status = (body: object, code: number): void => {
    if (ws.readyState !== ws.OPEN) return;
    ws.send(Buffer.concat([Buffer.from([EXEC_CHANNEL.status]), Buffer.from(JSON.stringify(body))]), () => ws.close(code));
  };
  return {
    write: (fd, data, done) => {
      if (ws.readyState !== ws.OPEN) return done();
      ws.send(Buffer.concat([Buffer.from([fd === 2 ? EXEC_CHANNEL.stderr : EXEC_CHANNEL.stdout]), data]), () => done());
    },
    end: (exitCode) => status({ exitCode: exitCode ?? 0 }, 1000),
    fail: (err) => status({ error: err.toJSON() }, 1011),
  };
}

/** An error answer on a socket that was never upgraded (the JSON envelope, like any route). */
function httpError(socket: Duplex, err: OrchardError): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(err.toJSON());
  socket.end(
    `HTTP/1.1 ${err.status} ${err.code}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
