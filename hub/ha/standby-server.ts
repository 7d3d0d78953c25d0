import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { OrchardError } from '../../protocol/errors.js';
import type { Health, NotLeaderDetails } from '../../protocol/hubs.js';
import { OBJECT_KINDS, kindFromPlural } from '../../protocol/objects.js';
import { guardFactory, tokenAuthenticator } from '../api/authenticate.js';
import { toOrchardError } from '../api/errors.js';
import { RouteRules } from '../api/route-rules.js';
import { registerObjectReadRoutes } from '../api/routes-objects.js';
import { SECURITY_HEADERS } from '../api/security-headers.js';
import type { Logger } from '../log.js';
import { Operations } from '../operations.js';
import { LoginLimiter, sourceKey, type LoginLimiterOptions } from '../security/rate-limit.js';
import type { HubMembers } from './hub-members.js';
import type { StoreMirror } from './store-mirror.js';

/**
 * The HTTP port of a standby hub (issue 19). It answers, so clients find the leader at once
 * instead of waiting for a connection timeout, and it serves the object reads from its copy of
 * the store (StoreMirror: kept from etcd, read barrier per request), so reads go on while the
 * leader is dead and before a new one is elected, as long as etcd has a quorum:
 * - `GET /healthz` → 200 `{ok: true, role: 'standby', id, leader: {id, api, mqtt, epoch}}`;
 * - `GET /api/v1/whoami`, `GET /api/v1/<kind>` and `GET /api/v1/<kind>/<name>` for every object
 *   kind (nodes, pods, deployments, services, configmaps, secrets — redacted —, events, …) → the
 *   leader's own route code (hub/api/routes-objects.ts) on the copy: same bodies, same token and
 *   role checks (the group's auth.json from etcd, same barrier), same 401/403/404/429;
 * - anything else (every write, watch streams, logs, metrics, tokens, the dashboard), and the reads
 *   before the copy's first load → 503 ERR_NOT_LEADER naming the leader's API address in
 *   `details.leader` (the CLI retries there). No credential is checked for that answer: it carries
 *   only addresses, which every agent already has, and does nothing.
 * Its MQTT port stays closed: an agent's connection is refused and it moves on to the next hub
 * (an MQTT CONNACK has no way to say where to go in 3.1.1, and a broker that accepts and then
 * drops would look to the agent like a live hub).
 *
 * Same TLS as the leader would use (this hub's certificate, signed by the group's CA), so a client
 * that trusts the group trusts the answer. Closed (connections included) before the hub starts on
 * the same port once elected.
 */
export interface StandbyServerOptions {
  host: string;
  port: number;
  /** This hub's election id. */
  id: string;
  members: Pick<HubMembers, 'leader'>;
  tls?: { cert: string; key: string };
  /** Object reads from the copy of the store; without it every request but /healthz is ERR_NOT_LEADER. */
  reads?: StandbyReads;
  /**
   * Since when etcd has answered none of this hub's requests, and why (HubMembers.unreadable): said
   * in `/healthz` (degraded) and in every ERR_NOT_LEADER, so a client of a group whose etcd lost
   * its quorum learns that instead of "an election is under way".
   */
  unreadable?: () => { since: number; error: string } | undefined;
  /** ms since the epoch; Date.now by default. */
  now?: () => number;
}

export interface StandbyReads {
  mirror: Pick<StoreMirror, 'ready' | 'fresh' | 'auth' | 'store'>;
  log: Logger;
  /** Failed-login limits (the leader's defaults when absent); counted per hub. */
  rateLimit?: Omit<LoginLimiterOptions, 'now'>;
}

/** Whether a request is one of the reads a standby serves (checked before any credential). */
export function isStandbyRead(method: string | undefined, url: string | undefined): boolean {
  if (method !== 'GET') return false;
  const path = (url ?? '/').split('?')[0] ?? '/';
  if (path === '/api/v1/whoami') return true;
  const m = /^\/api\/v1\/([^/]+)(?:\/([^/]+))?$/.exec(path);
  if (!m?.[1]) return false;
  let plural: string;
  try {
    plural = decodeURIComponent(m[1]).toLowerCase();
  } catch {
    return false;
  }
  // As Operations.resolveKind: a plain-object index, so "constructor" must not count.
  const kind = kindFromPlural(plural);
  return kind !== undefined && (OBJECT_KINDS as readonly string[]).includes(kind);
}

export class StandbyServer {
  private constructor(private readonly app: FastifyInstance) {}

  get port(): number {
    return (this.app.server.address() as AddressInfo).port;
  }

  static async start(opts: StandbyServerOptions): Promise<StandbyServer> {
    /** `why`: the reason a read is not served here after all (its copy cannot be confirmed current). */
    const refuse = (req: http.IncomingMessage, res: http.ServerResponse, why?: string): void => {
      const cut = opts.unreadable?.();
      const cutFor = cut === undefined ? 0 : Math.max(0, Math.round(((opts.now ?? Date.now)() - cut.since) / 1000));
      const leader = opts.members.leader();
      const known = leader?.api !== undefined && leader.mqtt !== undefined ? leader : undefined;
      const path = (req.url ?? '/').split('?')[0];
      // The body is never read: drop it rather than buffer it.
      req.resume();
      let status: number;
      let body: unknown;
      if (req.method === 'GET' && path === '/healthz') {
        const h: Health = {
          ok: true,
          role: 'standby',
          id: opts.id,
          ...(known ? { leader: { id: known.id, api: known.api!, mqtt: known.mqtt!, epoch: known.epoch } } : {}),
          // etcd's own error (member addresses) stays in the hub's log, as a leader's degradedReason.
          ...(cut === undefined
            ? {}
            : {
                degraded: true as const,
                degradedReason:
                  `etcd has answered none of this hub's requests for ${cutFor} s (is a quorum of its members up? can this hub reach them?): ` +
                  'it cannot tell who leads or take over until etcd answers; without a quorum no hub can take writes',
                degradedSince: new Date(cut.since).toISOString(),
              }),
        };
        status = 200;
        body = h;
      } else {
        const details: NotLeaderDetails = known ? { leader: known.api!, leaderId: known.id, leaderMqtt: known.mqtt!, epoch: known.epoch } : {};
        const err = new OrchardError(
          'ERR_NOT_LEADER',
          (known && cut === undefined
            ? `this hub (${opts.id}) is a standby; the leader is ${known.api}`
            : cut !== undefined
              ? `this hub (${opts.id}) is a standby and cannot reach the group: etcd has answered none of its requests for ${cutFor} s ` +
                `(is a quorum of its members up? can this hub reach them?): it cannot tell who leads until etcd answers, and without a quorum ` +
                `no hub can take writes; devices keep running their workloads` +
                (known ? `; the last leader etcd named was ${known.api}` : '')
              : `this hub (${opts.id}) is a standby and no hub leads right now (an election is under way); retry in a few seconds`) +
            (why === undefined ? '' : ` (it serves reads only while etcd confirms its copy is current: ${why})`),
          { details },
        );
        status = err.status;
        body = err.toJSON();
      }
      const text = JSON.stringify(body);
      res.writeHead(status, {
        ...SECURITY_HEADERS,
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
        // Clients come back for the leader elsewhere; no point keeping this socket.
        connection: 'close',
        ...(status === 503 ? { 'retry-after': '1' } : {}),
      });
      res.end(text);
    };
    const reads = opts.reads;
    const app = Fastify({
      logger: false,
      forceCloseConnections: true,
      serverFactory: (route) => {
        // Reads go to fastify (the leader's route code); everything else is answered here, as before reads existed.
        const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
          if (reads?.mirror.ready && isStandbyRead(req.method, req.url)) route(req, res);
          else refuse(req, res);
        };
        // An https.Server is typed apart from http.Server, but hands fastify the same request and
        // response classes (http.IncomingMessage, http.ServerResponse), which is all it uses.
        const server = opts.tls
          ? (https.createServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' }, handler) as unknown as http.Server)
          : http.createServer(handler);
        // fastify's own timeout options apply only to servers it makes: set them here.
        server.headersTimeout = 10_000;
        server.requestTimeout = 10_000;
        server.keepAliveTimeout = 5_000;
        return server;
      },
    });
    if (reads) registerReads(app, reads, refuse);
    await app.listen({ port: opts.port, host: opts.host });
    return new StandbyServer(app);
  }

  /** Closes the port and every connection on it; resolves when the port is free. */
  async close(): Promise<void> {
    await this.app.close();
  }
}

function registerReads(app: FastifyInstance, reads: StandbyReads, refuse: (req: http.IncomingMessage, res: http.ServerResponse, why?: string) => void): void {
  const { mirror, log } = reads;
  app.addHook('onRequest', async (_req, reply) => {
    void reply.headers(SECURITY_HEADERS);
  });
  // The read barrier before the credential is checked: the token and the objects are those etcd
  // holds now (store-mirror.ts). A request without a credential is refused (401) without it. When
  // etcd cannot confirm the copy (no quorum, the copy lags), the read is the leader's to serve.
  app.addHook('onRequest', async (req, reply) => {
    if (req.headers.authorization === undefined) return;
    try {
      await mirror.fresh();
    } catch (err) {
      const oe = OrchardError.from(err);
      log.warn('standby read refused: its copy of the store cannot be confirmed current', { err: oe });
      reply.hijack();
      // etcd's own error names members (addresses): it stays in the log, as on /healthz.
      refuse(req.raw, reply.raw, `etcd did not confirm it (${oe.code}; the hub's log has etcd's error)`);
      return reply;
    }
    return undefined;
  });
  const rules = new RouteRules();
  rules.install(app);
  app.addHook('onResponse', async (req, reply) => {
    log.debug('standby read', { method: req.method, url: req.url.split('?')[0], status: reply.statusCode, ip: req.ip });
  });
  app.setErrorHandler((err, req, reply) => {
    const oe = toOrchardError(err);
    if (oe.status >= 500) log.warn('standby read failed', { url: req.url.split('?')[0], err: oe.cause ?? oe });
    void reply.status(oe.status).send(oe.toJSON());
  });
  // isStandbyRead lets through only the routes below; anything else is the leader's.
  app.setNotFoundHandler((req, reply) => {
    reply.hijack();
    refuse(req.raw, reply.raw);
  });
  const limiter = new LoginLimiter({ ...reads.rateLimit });
  const authenticate = tokenAuthenticator({
    // Before the leader stored the group's credentials nobody has a token to present.
    authenticate: (token) => mirror.auth()?.authenticateApiToken(token),
    limited: (source, identity) => !limiter.check(sourceKey(source), identity).allowed,
    failed: (source, identity) => void limiter.recordFailure(sourceKey(source), identity),
  });
  const ops = new Operations({ store: mirror.store, log, now: () => new Date() });
  registerObjectReadRoutes(app, { need: guardFactory(rules, authenticate), ops });
}
