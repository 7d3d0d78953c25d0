import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RoleSchema, type Role } from '../../protocol/api.js';
import { OPERATION_ROLES, OPERATIONS, ROLE_ORDER, allowed, requiredRole, type Operation } from './authz.js';

/**
 * Who may do what, written out role by role (not derived from the rank order), as the three old
 * copies of the rule had it (server.ts ROLE_RANK per route, mqtt-commands.ts NEEDS/RANK, and the
 * unused acl.ts roleAllows): viewer reads, operator writes workloads and nodes, admin manages
 * tokens, node deletion and the secrets key; scrape (a Prometheus token) reads /metrics and nothing else.
 */
const MAY: Record<Role, readonly Operation[]> = {
  scrape: ['metrics.scrape'],
  viewer: [
    'metrics.scrape',
    'metrics.read',
    'whoami',
    'get',
    'list',
    'watch',
    'rollout.status',
    'rollout.history',
    'pods.logs',
    'agent.version.list',
    'node.upgrade.status',
  ],
  operator: [
    'metrics.scrape',
    'metrics.read',
    'whoami',
    'get',
    'list',
    'watch',
    'rollout.status',
    'rollout.history',
    'pods.logs',
    'agent.version.list',
    'node.upgrade.status',
    'apply',
    'delete',
    'scale',
    'rollout.undo',
    'rollout.pause',
    'rollout.resume',
    'rollout.restart',
    'rollout.promote',
    'node.cordon',
    'node.uncordon',
    'node.drain',
    'node.labels',
    'node.taints',
    'pods.exec',
  ],
  admin: [
    'metrics.scrape',
    'metrics.read',
    'whoami',
    'get',
    'list',
    'watch',
    'rollout.status',
    'rollout.history',
    'pods.logs',
    'agent.version.list',
    'node.upgrade.status',
    'apply',
    'delete',
    'scale',
    'rollout.undo',
    'rollout.pause',
    'rollout.resume',
    'rollout.restart',
    'rollout.promote',
    'node.cordon',
    'node.uncordon',
    'node.drain',
    'node.labels',
    'node.taints',
    'pods.exec',
    'node.delete',
    'token.create',
    'token.list',
    'token.revoke',
    'secrets.rotate-key',
    'agent.version.push',
    'agent.version.delete',
    'node.upgrade',
  ],
};

describe('allowed(role, operation)', () => {
  const pairs = RoleSchema.options.flatMap((role) => OPERATIONS.map((op) => [role, op, MAY[role].includes(op)] as const));

  it('covers every role and every operation', () => {
    expect(pairs).toHaveLength(4 * Object.keys(OPERATION_ROLES).length);
    expect(new Set(ROLE_ORDER)).toEqual(new Set(RoleSchema.options));
    for (const role of RoleSchema.options) for (const op of MAY[role]) expect(OPERATIONS).toContain(op);
  });

  it.each(pairs)('%s may %s: %s', (role, op, want) => {
    expect(allowed(role, op)).toBe(want);
  });

  it.each(OPERATIONS)('%s: requiredRole is the lowest role allowed', (op) => {
    const lowest = ROLE_ORDER.find((r) => MAY[r].includes(op));
    expect(requiredRole(op)).toBe(lowest);
  });

  it.each<[string, string, string]>([
    ['an unknown role', 'root', 'get'],
    ['an empty role', '', 'get'],
    ['an unknown operation', 'admin', 'format-disk'],
    ['a prototype key as operation', 'admin', 'constructor'],
    ['a prototype key as operation', 'admin', '__proto__'],
  ])('refuses %s from unvalidated input (%s, %s)', (_what, role, op) => {
    expect(allowed(role as Role, op as Operation)).toBe(false);
  });
});

describe('docs/security.md "Roles"', () => {
  const doc = readFileSync(new URL('../../docs/security.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('## Roles'), doc.indexOf('\n## ', doc.indexOf('## Roles') + 1));
  const rows = [...section.matchAll(/^\| `([a-z.-]+)` \| (\w+) \|/gm)].map((m) => [m[1], m[2]]);

  it('lists every operation with its least role, and nothing else', () => {
    expect(Object.fromEntries(rows)).toEqual(OPERATION_ROLES);
    expect(rows).toHaveLength(OPERATIONS.length);
  });
});
