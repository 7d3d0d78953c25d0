import type { Role } from '../../protocol/api.js';

/**
 * The one authorisation table: every operation a user can ask for, over HTTP or as an MQTT
 * command, and the least role that may do it. Both transports name the SAME operation (the HTTP
 * route's `need(op)` in hub/api, `commandOperation()` in mqtt-commands.ts), so an operation cannot
 * get one rule on one door and another rule on the other. docs/security.md "Roles" lists this
 * table; authz.test.ts keeps the two in step, and hub/api/authz-routes.test.ts fails on a route or
 * a command that maps to no operation here.
 *
 * Roles are ranked: each may do everything the role before it may (scrape < viewer < operator < admin).
 */
export const OPERATION_ROLES = {
  // ---- scrape: GET /metrics only (a Prometheus token reads no objects) ----
  'metrics.scrape': 'scrape',
  // ---- read ----
  'metrics.read': 'viewer',
  /** The caller's own token: name, role and what it may do (the dashboard hides what it may not). */
  whoami: 'viewer',
  get: 'viewer',
  list: 'viewer',
  watch: 'viewer',
  'rollout.status': 'viewer',
  'rollout.history': 'viewer',
  'pods.logs': 'viewer',
  'agent.version.list': 'viewer',
  'node.upgrade.status': 'viewer',
  // ---- write ----
  apply: 'operator',
  delete: 'operator',
  scale: 'operator',
  'rollout.undo': 'operator',
  'rollout.pause': 'operator',
  'rollout.resume': 'operator',
  'rollout.restart': 'operator',
  'rollout.promote': 'operator',
  'node.cordon': 'operator',
  'node.uncordon': 'operator',
  'node.drain': 'operator',
  'node.labels': 'operator',
  'node.taints': 'operator',
  'pods.exec': 'operator',
  // ---- admin ----
  'node.delete': 'admin',
  'token.create': 'admin',
  'token.list': 'admin',
  'token.revoke': 'admin',
  'secrets.rotate-key': 'admin',
  'agent.version.push': 'admin',
  'agent.version.delete': 'admin',
  'node.upgrade': 'admin',
} as const satisfies Record<string, Role>;

export type Operation = keyof typeof OPERATION_ROLES;

export const OPERATIONS = Object.keys(OPERATION_ROLES) as Operation[];

/** Lowest first. */
export const ROLE_ORDER: readonly Role[] = ['scrape', 'viewer', 'operator', 'admin'];

/** The least role that may perform `op`. */
export function requiredRole(op: Operation): Role {
  return OPERATION_ROLES[op];
}

/**
 * Whether `role` may perform `op`. Fails closed: an unknown role or an unknown operation (from
 * unvalidated input, or `"constructor"`) is refused.
 */
export function allowed(role: Role, op: Operation): boolean {
  if (!Object.hasOwn(OPERATION_ROLES, op)) return false;
  const have = ROLE_ORDER.indexOf(role);
  return have >= 0 && have >= ROLE_ORDER.indexOf(OPERATION_ROLES[op]);
}
