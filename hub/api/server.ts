import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { z } from 'zod';
import { TokenTtlSecondsSchema } from '../security/auth-store.js';
import {
  ExposeArgsSchema,
  JoinRequestSchema,
  MAX_BODY_BYTES,
  RoleSchema,
  ScaleArgsSchema,
  AutoscaleArgsSchema,
  type JoinResponse,
  type Role,
} from '../../protocol/api.js';
import { OrchardError, parseOrThrow } from '../../protocol/errors.js';
import { LabelsSchema, NameSchema } from '../../protocol/manifest.js';
import { OBJECT_KINDS, type ObjectKind } from '../../protocol/objects.js';
import type { Logger } from '../log.js';
import type { Operations } from '../operations.js';
import { WRITE_BARRIER_MS, type Store } from '../store/store.js';
import { jsonBody } from './body.js';
import { toOrchardError } from './errors.js';
import { registerDashboardRoutes } from './dashboard.js';
import { SECURITY_HEADERS } from './security-headers.js';
import { resolveTimeouts, type HubTimeouts } from '../security/limits.js';
import { joinTokenIdentity } from '../security/rate-limit.js';
import { registerTokenRoutes, type TokenRevocation } from './routes-tokens.js';
import { registerConfigRoutes } from './routes-config.js';
import { registerNodeRoutes } from './routes-nodes.js';
import { registerRolloutRoutes } from './routes-rollout.js';
import { registerMetricsRoutes } from './routes-metrics.js';
import { registerStreamRoutes } from './routes-streams.js';
import type { StreamHub } from '../streams/stream-hub.js';
import { registerAgentRoutes } from './routes-agent.js';
import { registerAgentUpgradeRoutes, type AgentUpgradeRouteDeps } from './routes-agent-upgrade.js';
import type { HubMetrics } from '../metrics/prometheus.js';
import type { UsageStore } from '../metrics/usage-store.js';
import { RolloutOperations } from '../rollout/rollout-ops.js';
import { redactSecret } from '../secrets/secret-codec.js';
import { WatchStreams, type WatchStreamsOptions } from './watch-streams.js';
import { RouteRules } from './route-rules.js';
import { guardFactory, tokenAuthenticator, type ApiPrincipal, type TokenAuth } from './authenticate.js';
import { registerObjectReadRoutes } from './routes-objects.js';
import { parseQuery } from './request-parse.js';
import type { Health, HubListMessage } from '../../protocol/hubs.js';

export type { ApiPrincipal };

/** What the API needs from the security layer; hub.ts adapts the AuthStore to it. */
export interface ApiAuth extends TokenAuth {
  /** Whether the API token with this id still exists and has not expired (open watch streams re-check). */
  isTokenActive?(id: string): boolean;
  caPem(): string | undefined;
  /** Refuses an enrolled name (ERR_NODE_EXISTS) unless the token was made to replace it. */
  join(token: string, node: string): { credential: string; labels: Record<string, string>; replaced: boolean };
  createJoinToken(opts: { ttlSeconds?: number; uses?: number; labels?: Record<string, string>; replaceNode?: string }): {
    token: string;
    id: string;
    expiresAt?: string;
  };
  createApiToken(opts: { name: string; role: Role; ttlSeconds?: number }): { token: string; id: string };
  listTokens(): unknown;
  revokeNode(node: string): void;
}

export interface ApiDeps {
  store: Store;
  ops: Operations;
  auth: ApiAuth;
  log: Logger;
  /**
   * Throws (ERR_STORE_UNAVAILABLE) while the store takes no writes (etcd without quorum): every
   * request but GET/HEAD/OPTIONS is refused after authentication, before its handler changes anything.
   */
  writeGate?: () => void;
  mqttPort: () => number;
  /** Deletes a node: revoke, disconnect, forget its object (its pods are rescheduled). */
  deleteNode: (name: string) => Promise<void>;
  tls?: { cert: string; key: string };
  /** `orchard rollout …` operations (routes-rollout.ts); built from store and log when absent. */
  rollout?: RolloutOperations;
  /** Admin: rotate the secrets encryption key (routes-config.ts). */
  rotateSecretsKey?: () => { keyId: string; reencrypted: number; retired: string[] };
  /** Slow-client limits (hub/security/limits.ts); defaults when absent. */
  timeouts?: Partial<HubTimeouts>;
  /** Admin: revoke a join or API token (routes-tokens.ts); the route is absent without it. */
  revokeToken?: (id: string) => TokenRevocation;
  /** Watch stream limits (watch-streams.ts); defaults when absent. */
  watch?: Pick<WatchStreamsOptions, 'maxPerToken' | 'maxBufferedBytes' | 'sweepMs'>;
  /** `/metrics` and `/api/v1/metrics/…` (routes-metrics.ts); absent without it. */
  metrics?: { usage: UsageStore; prometheus: HubMetrics };
  /** `orchard logs` / `orchard exec` (routes-streams.ts); absent without it. */
  streams?: StreamHub;
  /** The single-file agent served at /agent/orchard-agent.mjs (routes-agent.ts); default dist/orchard-agent.mjs beside the hub. */
  agentFile?: string;
  /** An etcd group's leader (issue 19): what /healthz adds (role, id, leader), and the hub list for join answers. */
  health?: () => Omit<Health, 'ok'>;
  hubList?: () => HubListMessage | undefined;
  /** Agent versions and `orchard node upgrade` (routes-agent-upgrade.ts); absent without it. */
  agentUpgrade?: Pick<AgentUpgradeRouteDeps, 'versions' | 'controller' | 'authenticateNode'>;
}

const TokenCreateSchema = z.strictObject({
  type: z.enum(['join', 'api']).default('join'),
  ttlSeconds: TokenTtlSecondsSchema.optional(),
  uses: z.number().int().min(1).max(1_000_000).optional(),
  labels: LabelsSchema.optional(),
  /** Join tokens only: the token may re-enrol exactly this (enrolled) node name, and no other. */
  replaceNode: NameSchema.optional(),
  role: RoleSchema.optional(),
  name: z.string().min(1).max(128).optional(),
});

/** Builds the web API (not yet listening). Every route validates its input with zod. */
export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const to = resolveTimeouts(deps.timeouts);
  // headersTimeout and requestTimeout are only enforced every connectionsCheckingInterval.
  const serverOpts = { headersTimeout: to.httpHeadersMs, connectionsCheckingInterval: to.httpCheckIntervalMs };
  const app = Fastify({
    bodyLimit: MAX_BODY_BYTES,
    logger: false,
    // A slow or half-open client cannot hold the hub.
    connectionTimeout: to.httpIdleMs,
    requestTimeout: to.httpRequestMs,
    keepAliveTimeout: 5_000,
    ...(deps.tls
      ? { https: { cert: deps.tls.cert, key: deps.tls.key, minVersion: 'TLSv1.2' as const, handshakeTimeout: to.tlsHandshakeMs, ...serverOpts } }
      : { http: serverOpts }),
  });
  // CSP, framing, sniffing and referrer headers on every answer, errors and 404s included.
  app.addHook('onRequest', async (_req, reply) => {
    void reply.headers(SECURITY_HEADERS);
  });
  // Every route is guarded by need(op) or listed as public; checked as each route registers.
  const rules = new RouteRules();
  rules.install(app);
  // Access log at debug level (never the Authorization header): shows who called what, and when.
  app.addHook('onResponse', async (req, reply) => {
    deps.log.debug('request', { method: req.method, url: req.url.split('?')[0], status: reply.statusCode, ip: req.ip });
  });

  // Bodies arrive as text; each route parses YAML/JSON itself so errors come out in our format.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: MAX_BODY_BYTES }, (_req, body, done) => done(null, body));

  // A remote store (etcd) makes writes durable behind the cache: a write is reported as done only
  // once the store confirms it (hub/store/store.ts sync), as SQLite's synchronous commit does.
  const sync = deps.store.sync?.bind(deps.store);
  if (sync) {
    app.addHook('onSend', async (req, reply, payload) => {
      if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS' || reply.statusCode >= 400) return payload;
      try {
        await sync(WRITE_BARRIER_MS);
        return payload;
      } catch (err) {
        const oe = OrchardError.from(err);
        deps.log.warn('write not confirmed by the store', { method: req.method, url: req.url.split('?')[0], err: oe });
        void reply.status(oe.status).header('content-type', 'application/json; charset=utf-8');
        return JSON.stringify(oe.toJSON());
      }
    });
  }

  app.setErrorHandler((err, req, reply) => {
    const oe = toOrchardError(err);
    if (oe.status >= 500) deps.log.error('request failed', { method: req.method, url: req.url, err: oe.cause ?? oe });
    void reply.status(oe.status).send(oe.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send(new OrchardError('ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`).toJSON());
  });

  // One check for every guarded route and the exec WebSocket upgrade (which fastify does not route).
  const authenticate = tokenAuthenticator(deps.auth);
  const need = guardFactory(rules, authenticate, deps.writeGate);

  const watches = new WatchStreams({
    ...deps.watch,
    isTokenActive: (id) => deps.auth.isTokenActive?.(id) ?? true,
    onClose: (tokenId, why) => deps.log.info('watch stream closed by the hub', { tokenId, why }),
  });
  app.addHook('onClose', async () => watches.stop());
  const revokeToken = deps.revokeToken;

  registerConfigRoutes(app, { need, ...(deps.rotateSecretsKey ? { rotateSecretsKey: deps.rotateSecretsKey } : {}) });
  registerNodeRoutes(app, { need, store: deps.store, log: deps.log });
  let streamSessions: { closeToken: (tokenId: string) => number } | undefined;
  if (revokeToken) {
    registerTokenRoutes(app, {
      need,
      revokeToken: (id) => {
        const r = revokeToken(id);
        if (!(r.revoked && r.kind === 'api')) return r;
        // A revoked API token's open watch streams, logs and exec sessions end now, not when their clients hang up.
        streamSessions?.closeToken(id);
        return { ...r, watchStreamsClosed: watches.closeToken(id) };
      },
    });
  }
  if (deps.metrics) registerMetricsRoutes(app, { need, store: deps.store, ...deps.metrics });
  if (deps.streams)
    streamSessions = registerStreamRoutes(app, {
      need,
      authenticate,
      store: deps.store,
      streams: deps.streams,
      log: deps.log,
      ...(deps.writeGate ? { writeGate: deps.writeGate } : {}),
      now: () => new Date(),
      isTokenActive: (id) => deps.auth.isTokenActive?.(id) ?? true,
    });
  if (deps.agentUpgrade)
    registerAgentUpgradeRoutes(app, {
      need,
      ...deps.agentUpgrade,
      limited: (source, identity) => deps.auth.limited(source, identity),
      failed: (source, identity) => deps.auth.failed(source, identity),
    });
  registerRolloutRoutes(app, { need, rollout: deps.rollout ?? new RolloutOperations({ store: deps.store, log: deps.log, now: () => new Date() }) });
  registerAgentRoutes(app, deps.agentFile === undefined ? {} : { agentFile: deps.agentFile });
  app.get('/healthz', async (): Promise<Health> => ({ ok: true, ...(deps.health ? deps.health() : { role: 'single' }) }));
  registerDashboardRoutes(app);

  // ---- join (no API token: the join token is the credential) ----
  app.get('/api/v1/ca', async (_req, reply) => {
    const pem = deps.auth.caPem();
    if (!pem) throw new OrchardError('ERR_NOT_FOUND', 'this hub runs without TLS (--insecure) and has no CA');
    return reply.type('application/x-pem-file').send(pem);
  });
  app.post('/api/v1/join', async (req) => {
    const body = parseOrThrow(JoinRequestSchema, jsonBody(req), 'join request');
    // Before the token is used up: a join etcd cannot take would answer ERR_TIMEOUT after using it.
    deps.writeGate?.();
    // The token is checked first, always: a lock refuses failing joins only, never a valid token.
    try {
      const r = deps.auth.join(body.token, body.node);
      const hubs = deps.hubList?.();
      const res: JoinResponse = {
        node: body.node,
        credential: r.credential,
        caPem: deps.auth.caPem() ?? '',
        mqttPort: deps.mqttPort(),
        labels: r.labels,
        ...(hubs ? { hubs } : {}),
      };
      if (r.replaced) deps.log.warn('node re-enrolled with a --replace-node token; its old credential is revoked', { node: body.node });
      else deps.log.info('node joined', { node: body.node });
      return res;
    } catch (err) {
      if (OrchardError.is(err, 'ERR_TOKEN_INVALID')) {
        const identity = joinTokenIdentity(body.token);
        const locked = deps.auth.limited(req.ip, identity);
        deps.auth.failed(req.ip, identity);
        if (locked) throw new OrchardError('ERR_RATE_LIMITED', 'too many failed joins with this token from this address; try again later');
      }
      throw err;
    }
  });

  // ---- workloads ----
  app.post('/api/v1/apply', { preHandler: need('apply') }, async (req) => {
    const body = typeof req.body === 'string' ? req.body : '';
    return deps.ops.apply(body);
  });
  app.post('/api/v1/deployments/:name/scale', { preHandler: need('scale') }, async (req) => {
    const { name } = req.params as { name: string };
    const body = parseOrThrow(ScaleArgsSchema.omit({ name: true }), jsonBody(req), 'scale request');
    return deps.ops.scale(name, body.replicas);
  });
  // spec.autoscale (`orchard autoscale deployment NAME`): scale's rule.
  app.post('/api/v1/deployments/:name/autoscale', { preHandler: need('scale') }, async (req) => {
    const { name } = req.params as { name: string };
    const body = parseOrThrow(AutoscaleArgsSchema.omit({ name: true }), jsonBody(req), 'autoscale request');
    return deps.ops.autoscale({ ...body, name });
  });
  // A Service for a deployment's pods (`orchard expose`), applied like any manifest: apply's rule.
  app.post('/api/v1/deployments/:name/expose', { preHandler: need('apply') }, async (req) => {
    const { name } = req.params as { name: string };
    const body = parseOrThrow(ExposeArgsSchema.omit({ deployment: true }), jsonBody(req), 'expose request');
    return deps.ops.expose({ ...body, deployment: name });
  });
  app.delete('/api/v1/nodes/:name', { preHandler: need('node.delete') }, async (req) => {
    const { name } = req.params as { name: string };
    if (!deps.store.get('Node', name)) throw new OrchardError('ERR_NOT_FOUND', `node "${name}" not found`);
    await deps.deleteNode(name);
    return { kind: 'Node', name, deleted: true };
  });
  app.delete('/api/v1/:plural/:name', { preHandler: need('delete') }, async (req) => {
    const { plural, name } = req.params as { plural: string; name: string };
    return deps.ops.delete(plural, name);
  });

  // ---- reads (whoami, list, get: shared with a standby's read port, routes-objects.ts) ----
  registerObjectReadRoutes(app, { need, ops: deps.ops });

  // ---- watch (SSE): one line per store event, for dashboards and `rollout status` ----
  app.get('/api/v1/watch', { preHandler: need('watch') }, (req, reply) => {
    const q = parseQuery(z.object({ kinds: z.string().max(200).optional() }), req);
    const kinds = (q.kinds ? q.kinds.split(',') : [...OBJECT_KINDS]).map((k) => deps.ops.resolveKind(k)) as ObjectKind[];
    const principal = req.principal!;
    const tokenId = principal.id ?? principal.name;
    watches.admit(tokenId); // ERR_WATCH_LIMIT (429) as a normal answer, before the stream starts
    reply.hijack();
    const res = reply.raw;
    let stop = (): void => undefined;
    let ping: NodeJS.Timeout | undefined;
    const stream = watches.open(tokenId, res, () => {
      stop();
      clearInterval(ping);
    });
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    stream.write(': watching\n\n');
    stop = deps.store.watch(
      (ev) => stream.write(`event: ${ev.type}\ndata: ${JSON.stringify(ev.object.kind === 'Secret' ? redactSecret(ev.object) : ev.object)}\n\n`),
      kinds,
    );
    ping = setInterval(() => stream.write(': ping\n\n'), 15_000);
    req.raw.on('close', () => stream.release());
  });

  // ---- tokens (admin) ----
  app.post('/api/v1/tokens', { preHandler: need('token.create') }, async (req) => {
    const body = parseOrThrow(TokenCreateSchema, jsonBody(req), 'token request');
    if (body.type === 'api' || body.role) {
      if (body.replaceNode !== undefined)
        throw new OrchardError('ERR_VALIDATION', 'replaceNode applies to join tokens, not to API tokens', {
          details: { issues: [{ path: 'replaceNode', message: 'only for join tokens' }] },
        });
      const role = body.role ?? 'viewer';
      return {
        type: 'api',
        role,
        ...deps.auth.createApiToken({ name: body.name ?? `${role}-token`, role, ...(body.ttlSeconds ? { ttlSeconds: body.ttlSeconds } : {}) }),
      };
    }
    const opts: { ttlSeconds?: number; uses?: number; labels?: Record<string, string>; replaceNode?: string } = {};
    if (body.ttlSeconds) opts.ttlSeconds = body.ttlSeconds;
    if (body.uses) opts.uses = body.uses;
    if (body.labels) opts.labels = body.labels;
    if (body.replaceNode !== undefined) opts.replaceNode = body.replaceNode;
    return { type: 'join', ...deps.auth.createJoinToken(opts) };
  });
  app.get('/api/v1/tokens', { preHandler: need('token.list') }, async () => deps.auth.listTokens());

  return app;
}

export { parseSelector } from './routes-objects.js';
export type { FastifyReply };
