import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AgentUpgradeRequestSchema, AgentVersionStringSchema, MAX_AGENT_FILE_BYTES } from '../../protocol/agent-upgrade.js';
import { OrchardError, parseOrThrow } from '../../protocol/errors.js';
import { NameSchema } from '../../protocol/manifest.js';
import type { AgentVersions } from '../agent-upgrade/agent-versions.js';
import type { AgentUpgradeController } from '../agent-upgrade/upgrade-controller.js';
import type { Operation } from '../security/authz.js';
import { jsonBody } from './body.js';
import { parseParams, parseQuery } from './request-parse.js';

/**
 * Agent versions and fleet upgrades (docs/agent.md "Upgrades"):
 *   POST   /api/v1/agent-versions?version=V        the file as application/octet-stream (admin; ≤ 64 MiB)
 *   GET    /api/v1/agent-versions                  stored versions with hash and signature (viewer)
 *   DELETE /api/v1/agent-versions/:version         (admin; not while a progressing rollout uses it)
 *   GET    /api/v1/agent-versions/:version/file    the file, for nodes: HTTP Basic node:credential
 *   POST   /api/v1/agent-rollouts                  start `orchard node upgrade` (admin)
 *   POST   /api/v1/agent-rollouts/halt             {name?} stop the newest (or named) rollout (admin)
 *   GET    /api/v1/agent-rollouts/status           the newest rollout, or {rollout: null} (viewer)
 */

export interface AgentUpgradeRouteDeps {
  need: (op: Operation) => (req: FastifyRequest) => Promise<void>;
  versions: AgentVersions;
  controller: AgentUpgradeController;
  /** Checks a node's MQTT credential (AuthStore.authenticateNode). */
  authenticateNode(node: string, credential: string): boolean;
  /** The login limiter, as for API tokens (identity = node name). */
  limited(source: string, identity: string): boolean;
  failed(source: string, identity: string): void;
}

const VersionParams = z.object({ version: AgentVersionStringSchema });
const HaltSchema = z.strictObject({ name: NameSchema.optional() });

export function registerAgentUpgradeRoutes(app: FastifyInstance, deps: AgentUpgradeRouteDeps): void {
  // Uploads are binary and larger than any JSON body: their own scope, parser and limit; the guard
  // runs on onRequest so nobody without an admin token gets 64 MiB read into the hub's memory.
  void app.register(async (scope) => {
    scope.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: MAX_AGENT_FILE_BYTES }, (_req, body, done) => done(null, body));
    scope.post('/api/v1/agent-versions', { onRequest: deps.need('agent.version.push'), bodyLimit: MAX_AGENT_FILE_BYTES }, async (req) => {
      const q = parseQuery(z.object({ version: AgentVersionStringSchema }), req);
      if (!Buffer.isBuffer(req.body)) throw new OrchardError('ERR_UNSUPPORTED_MEDIA', 'send the agent file as application/octet-stream');
      return deps.versions.push(q.version, req.body);
    });
  });
  app.get('/api/v1/agent-versions', { preHandler: deps.need('agent.version.list') }, async () => ({ items: deps.versions.list() }));
  app.delete('/api/v1/agent-versions/:version', { preHandler: deps.need('agent.version.delete') }, async (req) => {
    const { version } = parseParams(VersionParams, req);
    const active = deps.controller.latest();
    if (active?.status.phase === 'Progressing' && active.spec.version === version)
      throw new OrchardError('ERR_UPGRADE_IN_PROGRESS', `agent rollout ${active.metadata.name} is rolling out ${version}; halt it first`);
    if (!deps.versions.delete(version)) throw new OrchardError('ERR_NOT_FOUND', `agent version ${version} not found`);
    return { version, deleted: true };
  });
  app.get('/api/v1/agent-versions/:version/file', async (req, reply) => {
    nodeOf(req, deps);
    const { version } = parseParams(VersionParams, req);
    const bytes = deps.versions.read(version);
    return reply
      .type('application/octet-stream')
      .header('x-orchard-sha256', deps.versions.get(version)?.sha256 ?? '')
      .send(bytes);
  });

  app.post('/api/v1/agent-rollouts', { preHandler: deps.need('node.upgrade') }, async (req) => {
    const body = parseOrThrow(AgentUpgradeRequestSchema, jsonBody(req), 'upgrade request');
    return deps.controller.create(body);
  });
  app.post('/api/v1/agent-rollouts/halt', { preHandler: deps.need('node.upgrade') }, async (req) => {
    const body = parseOrThrow(HaltSchema, jsonBody(req), 'halt request');
    return deps.controller.halt(body.name);
  });
  app.get('/api/v1/agent-rollouts/status', { preHandler: deps.need('node.upgrade.status') }, async () => ({ rollout: deps.controller.latest() ?? null }));
}

/** The node named by HTTP Basic credentials, verified first (a lock refuses failures only, as for tokens). */
function nodeOf(req: FastifyRequest, deps: AgentUpgradeRouteDeps): string {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? '');
  if (!m?.[1]) throw new OrchardError('ERR_UNAUTHENTICATED', 'missing "Authorization: Basic <node:credential>" header');
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  const node = colon > 0 ? text.slice(0, colon) : '';
  if (node !== '' && deps.authenticateNode(node, text.slice(colon + 1))) return node;
  const identity = `node:${node.slice(0, 63)}`;
  const locked = deps.limited(req.ip, identity);
  deps.failed(req.ip, identity);
  if (locked) throw new OrchardError('ERR_RATE_LIMITED', 'too many failed logins for this node from this address; try again later');
  throw new OrchardError('ERR_UNAUTHENTICATED', 'unknown node or wrong credential');
}
