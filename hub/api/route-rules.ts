import type { FastifyInstance, RouteOptions } from 'fastify';
import type { Operation } from '../security/authz.js';

/**
 * Every HTTP route is either guarded by `need(op)` (an operation of hub/security/authz.ts) or is
 * one of the few public routes below. The check runs when the route is registered (fastify's
 * onRoute hook), so a route added without a rule stops `buildApi` — it can never be served
 * unguarded — and hub/api/authz-routes.test.ts reads the resulting list.
 */

/** Routes that need no API token: health, the dashboard page, and the join (its token is in the body). */
export const PUBLIC_ROUTES: readonly string[] = [
  'GET /healthz',
  'GET /',
  'GET /dashboard.css',
  'GET /dashboard/:file',
  'GET /api/v1/ca',
  'POST /api/v1/join',
  // The single-file agent for device installs (routes-agent.ts: no secret in it; TLS pinned to the hub CA vouches for it).
  'GET /agent/orchard-agent.mjs',
  'GET /agent/orchard-agent.mjs.sha256',
  'GET /agent/orchard-agent-launcher.mjs',
  'GET /agent/orchard-agent-launcher.mjs.sha256',
  // No API token: a node's own credential (Basic auth), checked in the handler (routes-agent-upgrade.ts).
  'GET /api/v1/agent-versions/:version/file',
];

export interface RouteRule {
  method: string;
  url: string;
  operation: Operation | 'public';
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Each registered route and the operation that guards it (route-rules.ts). */
    routeRules: readonly RouteRule[];
  }
}

export class RouteRules {
  private readonly ops = new WeakMap<object, Operation>();
  private readonly rules: RouteRule[] = [];

  /** Marks `preHandler` as the guard for `op`. */
  tag<F extends object>(preHandler: F, op: Operation): F {
    this.ops.set(preHandler, op);
    return preHandler;
  }

  /** Call before any route is registered. */
  install(app: FastifyInstance): void {
    app.decorate('routeRules', this.rules);
    app.addHook('onRoute', (route: RouteOptions) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      // A guard may run as onRequest (before the body is read: large uploads) or as preHandler.
      const handlers: unknown[] = [route.preHandler, route.onRequest].flatMap((h: unknown) =>
        h === undefined ? [] : Array.isArray(h) ? (h as unknown[]) : [h],
      );
      const guarded = handlers.map((h) => (typeof h === 'function' ? this.ops.get(h) : undefined)).filter((op) => op !== undefined);
      if (guarded.length > 1) throw new Error(`route ${methods.join(',')} ${route.url} has more than one need(op) guard`);
      for (const method of methods) {
        // fastify adds a HEAD route for each GET, with the same preHandler.
        const operation = guarded[0] ?? (PUBLIC_ROUTES.includes(`${method === 'HEAD' ? 'GET' : method} ${route.url}`) ? 'public' : undefined);
        if (operation === undefined) {
          throw new Error(
            `route ${method} ${route.url} has no authorisation rule: guard it with need(<operation from hub/security/authz.ts>) or list it in PUBLIC_ROUTES`,
          );
        }
        this.rules.push({ method, url: route.url, operation });
      }
    });
  }
}
