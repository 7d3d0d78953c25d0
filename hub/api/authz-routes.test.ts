import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CommandRequestSchema,
  RoleSchema,
  RolloutActionSchema,
  type CommandOp,
  type CommandReply,
  type CommandRequest,
  type Role,
} from '../../protocol/api.js';
import { createLogger } from '../log.js';
import { Operations } from '../operations.js';
import { OPERATIONS, ROLE_ORDER, requiredRole } from '../security/authz.js';
import { MemoryStore } from '../store/memory-store.js';
import { MqttCommands, commandOperation } from './mqtt-commands.js';
import type { RouteRule } from './route-rules.js';
import { buildApi, type ApiAuth } from './server.js';
import { HubMetrics } from '../metrics/prometheus.js';
import { UsageStore } from '../metrics/usage-store.js';
import { StreamHub } from '../streams/stream-hub.js';
import { AgentVersions } from '../agent-upgrade/agent-versions.js';
import { AgentUpgradeController } from '../agent-upgrade/upgrade-controller.js';
import { systemClock } from '../../protocol/clock.js';

/**
 * Both doors use the one table in hub/security/authz.ts: every HTTP route fastify registers and
 * every MQTT command the schema accepts maps to an operation there, and each still needs exactly
 * the role it needed before the three copies of the rule were merged (issue 14, item 3).
 */

const rank = (r: Role): number => ROLE_ORDER.indexOf(r);

/** Each route and the least role it needed before the merge (server.ts ROLE_RANK, need(role)). */
/** Public in the rule table (no API token) but answered only with a node's credential (routes-agent-upgrade.ts). */
const NODE_CREDENTIAL_ROUTES = new Set(['GET /api/v1/agent-versions/:version/file']);

const HTTP_BEFORE: Record<string, Role | 'public'> = {
  'GET /healthz': 'public',
  'GET /': 'public',
  'GET /dashboard.css': 'public',
  'GET /dashboard/:file': 'public',
  'GET /api/v1/ca': 'public',
  'POST /api/v1/join': 'public',
  'GET /agent/orchard-agent.mjs': 'public',
  'GET /agent/orchard-agent.mjs.sha256': 'public',
  'GET /agent/orchard-agent-launcher.mjs': 'public',
  'GET /agent/orchard-agent-launcher.mjs.sha256': 'public',
  'GET /metrics': 'scrape',
  'GET /api/v1/metrics/nodes': 'viewer',
  'GET /api/v1/metrics/pods': 'viewer',
  // Issue 15: the node proxies' counters for describe service.
  'GET /api/v1/metrics/services': 'viewer',
  'GET /api/v1/whoami': 'viewer',
  'GET /api/v1/:plural': 'viewer',
  'GET /api/v1/:plural/:name': 'viewer',
  'GET /api/v1/watch': 'viewer',
  'GET /api/v1/deployments/:name/rollout/status': 'viewer',
  'GET /api/v1/deployments/:name/rollout/history': 'viewer',
  // Issue 16: logs for viewers, exec (a WebSocket; the plain GET answers 400) for operators.
  'GET /api/v1/pods/:name/logs': 'viewer',
  'GET /api/v1/pods/:name/exec': 'operator',
  'POST /api/v1/apply': 'operator',
  'POST /api/v1/deployments/:name/scale': 'operator',
  'POST /api/v1/deployments/:name/expose': 'operator',
  // Added with autoscaling (issue 16): scale's rule.
  'POST /api/v1/deployments/:name/autoscale': 'operator',
  'DELETE /api/v1/:plural/:name': 'operator',
  'POST /api/v1/deployments/:name/rollout/undo': 'operator',
  'POST /api/v1/deployments/:name/rollout/pause': 'operator',
  'POST /api/v1/deployments/:name/rollout/resume': 'operator',
  'POST /api/v1/deployments/:name/rollout/restart': 'operator',
  'POST /api/v1/deployments/:name/rollout/promote': 'operator',
  'POST /api/v1/nodes/:name/cordon': 'operator',
  'POST /api/v1/nodes/:name/uncordon': 'operator',
  'POST /api/v1/nodes/:name/drain': 'operator',
  'POST /api/v1/nodes/:name/labels': 'operator',
  'POST /api/v1/nodes/:name/taints': 'operator',
  'DELETE /api/v1/nodes/:name': 'admin',
  'POST /api/v1/tokens': 'admin',
  'GET /api/v1/tokens': 'admin',
  'DELETE /api/v1/tokens/:id': 'admin',
  'POST /api/v1/secrets/rotate-key': 'admin',
  'POST /api/v1/agent-versions': 'admin',
  'GET /api/v1/agent-versions': 'viewer',
  'DELETE /api/v1/agent-versions/:version': 'admin',
  'GET /api/v1/agent-versions/:version/file': 'public',
  'POST /api/v1/agent-rollouts': 'admin',
  'POST /api/v1/agent-rollouts/halt': 'admin',
  'GET /api/v1/agent-rollouts/status': 'viewer',
};

/** One command of each kind the schema accepts, and the least role it needed before the merge (mqtt-commands.ts NEEDS/RANK). */
const COMMANDS_BEFORE: Record<CommandOp, Array<[CommandRequest, Role]>> = {
  apply: [[{ id: 'a', op: 'apply', args: { manifests: '' } }, 'operator']],
  get: [
    [{ id: 'g1', op: 'get', args: { kind: 'pods' } }, 'viewer'],
    [{ id: 'g2', op: 'get', args: { kind: 'pods', name: 'x' } }, 'viewer'],
  ],
  delete: [[{ id: 'd', op: 'delete', args: { kind: 'pods', name: 'x' } }, 'operator']],
  scale: [[{ id: 's', op: 'scale', args: { name: 'x', replicas: 1 } }, 'operator']],
  // Added with Services (issue 15): an apply of a generated Service, so apply's role.
  expose: [[{ id: 'e', op: 'expose', args: { deployment: 'x', port: 80, protocol: 'TCP' } }, 'operator']],
  // Added with autoscaling (issue 16): scale's rule.
  autoscale: [[{ id: 'as', op: 'autoscale', args: { name: 'x', minReplicas: 1, maxReplicas: 3, cpuPercent: 50 } }, 'operator']],
  // Added with logs (issue 16): a bounded read, viewer like GET /api/v1/pods/:name/logs.
  logs: [[{ id: 'l', op: 'logs', args: { pod: 'x' } }, 'viewer']],
  rollout: RolloutActionSchema.options.map((action) => [
    { id: `r-${action}`, op: 'rollout', args: { action, name: 'x' } },
    action === 'status' || action === 'history' ? 'viewer' : 'operator',
  ]),
};

function stubAuth(): ApiAuth {
  return {
    // The bearer token is the role name, so each request picks its role.
    authenticate: (token) => ((RoleSchema.options as readonly string[]).includes(token) ? { name: token, role: token as Role } : undefined),
    limited: () => false,
    failed: () => undefined,
    caPem: () => undefined,
    join: () => ({ credential: 'c'.repeat(43), labels: {}, replaced: false }),
    createJoinToken: () => ({ token: 't', id: '0123456789ab' }),
    createApiToken: () => ({ token: 't', id: '0123456789ab' }),
    listTokens: () => [],
    revokeNode: () => undefined,
  };
}

describe('every HTTP route maps to an operation of the one table', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    const store = new MemoryStore();
    const log = createLogger('hub', 'silent');
    app = await buildApi({
      store,
      ops: new Operations({ store, log, now: () => new Date() }),
      auth: stubAuth(),
      log,
      mqttPort: () => 8883,
      deleteNode: async () => undefined,
      // Optional routes are registered too, as hub.ts does.
      revokeToken: () => ({ revoked: false, disconnected: 0 }),
      rotateSecretsKey: () => ({ keyId: 'k', reencrypted: 0, retired: [] }),
      agentUpgrade: (() => {
        const versions = new AgentVersions({ dataDir: '/nonexistent-orchard-test', caKeyPem: undefined, now: () => new Date() });
        const publisher = { publish: async () => undefined };
        return { versions, controller: new AgentUpgradeController({ store, versions, publisher, log, clock: systemClock }), authenticateNode: () => false };
      })(),
      metrics: (() => {
        const usage = new UsageStore({ now: () => 0 });
        return {
          usage,
          prometheus: new HubMetrics({ store, usage, queueDepths: () => ({}), intakeBacklog: () => 0, mqttConnections: () => 0, processMetrics: false }),
        };
      })(),
      streams: new StreamHub({ publisher: { publish: async () => undefined }, clock: systemClock, log, isConnected: () => false }),
    });
    await app.ready();
  });
  afterAll(async () => {
    await app.close();
  });

  const routes = (): Array<RouteRule & { route: string }> =>
    app.routeRules.filter((r) => r.method !== 'HEAD').map((r) => ({ ...r, route: `${r.method} ${r.url}` }));

  it('fastify registered exactly the routes listed here (a new route needs a row, and a rule)', () => {
    expect(
      routes()
        .map((r) => r.route)
        .sort(),
    ).toEqual(Object.keys(HTTP_BEFORE).sort());
    for (const head of app.routeRules.filter((r) => r.method === 'HEAD')) {
      expect(app.routeRules.find((r) => r.method === 'GET' && r.url === head.url)?.operation).toBe(head.operation);
    }
  });

  it('each route needs the same role as before', () => {
    for (const r of routes()) {
      const before = HTTP_BEFORE[r.route];
      if (before === 'public') expect(r.operation, r.route).toBe('public');
      else expect(r.operation === 'public' ? 'public' : requiredRole(r.operation), r.route).toBe(before);
    }
  });

  it('buildApi refuses a route registered without a rule', async () => {
    const bad = await buildApi({
      store: new MemoryStore(),
      ops: new Operations({ store: new MemoryStore(), log: createLogger('hub', 'silent'), now: () => new Date() }),
      auth: stubAuth(),
      log: createLogger('hub', 'silent'),
      mqttPort: () => 8883,
      deleteNode: async () => undefined,
    });
    expect(() => bad.get('/api/v1/unguarded', async () => ({}))).toThrow(/no authorisation rule/);
    await bad.close();
  });

  const concrete = (url: string): string =>
    url.replace(':plural', 'pods').replace(':name', 'x').replace(':id', '0123456789ab') + (url === '/api/v1/watch' ? '?kinds=nope' : '');

  it.each(Object.entries(HTTP_BEFORE).flatMap(([route, before]) => RoleSchema.options.map((role) => [route, role, before] as const)))(
    '%s as %s (needs %s)',
    async (route, role, before) => {
      const [method, url] = route.split(' ') as [string, string];
      const r = await app.inject({ method: method as 'GET', url: concrete(url), headers: { authorization: `Bearer ${role}` } });
      if (NODE_CREDENTIAL_ROUTES.has(route)) {
        // No API token opens these, whatever its role: they take a node's own credential (Basic auth).
        expect(r.statusCode, r.body).toBe(401);
      } else if (before !== 'public' && rank(role) < rank(before)) {
        expect(r.statusCode, r.body).toBe(403);
        expect(r.json<{ code: string; message: string }>()).toMatchObject({
          code: 'ERR_FORBIDDEN',
          message: `role "${role}" may not do this (needs ${before})`,
        });
      } else {
        expect([401, 403], r.body).not.toContain(r.statusCode);
      }
      if (before !== 'public') expect((await app.inject({ method: method as 'GET', url: concrete(url) })).statusCode).toBe(401);
    },
  );

  it('docs/security.md lists each operation with the routes that use it', () => {
    const doc = readFileSync(new URL('../../docs/security.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `([a-z.-]+)` \| \w+ \| ([^|]+) \|/gm)];
    const documented = Object.fromEntries(
      rows.map((m) => [m[1], (m[2] ?? '').trim() === '—' ? [] : (m[2] ?? '').split(',').map((s) => s.replace(/`/g, '').trim())]),
    );
    const served: Record<string, string[]> = {};
    for (const r of routes()) if (r.operation !== 'public') (served[r.operation] ??= []).push(r.route);
    for (const op of OPERATIONS) expect((served[op] ?? []).sort(), op).toEqual((documented[op] ?? []).sort());
  });
});

describe('every MQTT command maps to an operation of the one table', () => {
  const discriminators = CommandRequestSchema.options.map((o) => o.shape.op.value);
  const samples = Object.values(COMMANDS_BEFORE).flat();

  it('has a sample for every op the command schema accepts, and every rollout action', () => {
    expect(Object.keys(COMMANDS_BEFORE).sort()).toEqual([...discriminators].sort());
    for (const [cmd] of samples) expect(CommandRequestSchema.safeParse(cmd).success, cmd.id).toBe(true);
  });

  it.each(samples.map(([cmd, before]) => [cmd.op, cmd.id, before, cmd] as const))('%s (%s) needs %s, as before', (_op, _id, before, cmd) => {
    const op = commandOperation(cmd);
    expect(OPERATIONS).toContain(op);
    expect(requiredRole(op)).toBe(before);
  });

  it.each(samples.flatMap(([cmd, before]) => RoleSchema.options.map((role) => [cmd.id, role, before, cmd] as const)))(
    '%s as %s (needs %s)',
    async (_id, role, before, cmd) => {
      const store = new MemoryStore();
      const log = createLogger('hub', 'silent');
      const replies: CommandReply[] = [];
      const publisher = { publish: async (_t: string, payload: Buffer) => void replies.push(JSON.parse(payload.toString()) as CommandReply) };
      const mc = new MqttCommands({ ops: new Operations({ store, log, now: () => new Date() }), log, publisher });
      await mc.handle('orchard/v1/commands/cli-1', Buffer.from(JSON.stringify(cmd)), role);
      const reply = replies[0];
      if (rank(role) < rank(before)) {
        expect(reply).toMatchObject({ ok: false, error: { code: 'ERR_FORBIDDEN', message: `role "${role}" may not ${cmd.op} (needs ${before})` } });
      } else {
        expect(reply?.ok === false ? reply.error.code : 'ok').not.toBe('ERR_FORBIDDEN');
      }
    },
  );
});
