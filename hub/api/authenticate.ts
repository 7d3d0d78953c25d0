import type { FastifyRequest } from 'fastify';
import { OrchardError } from '../../protocol/errors.js';
import { allowed, requiredRole, type Operation } from '../security/authz.js';
import { apiTokenIdentity } from '../security/rate-limit.js';
import type { Role } from '../../protocol/api.js';
import type { RouteRules } from './route-rules.js';

export interface ApiPrincipal {
  /** The API token's id (watch streams are counted and closed per token); the name when absent. */
  id?: string;
  name: string;
  role: Role;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: ApiPrincipal;
  }
}

/**
 * What checking an API token needs: the leader's ApiAuth (server.ts), or a standby's view of the
 * same credentials from etcd (hub/ha/standby-server.ts).
 */
export interface TokenAuth {
  authenticate(token: string): ApiPrincipal | undefined;
  /**
   * True when `identity` (the public part of the credential: see hub/security/rate-limit.ts) has
   * failed too often from this source, or the source as a whole has. Asked only once a credential
   * has failed (its failure is then answered 429): a correct credential is accepted even then.
   */
  limited(source: string, identity: string): boolean;
  /** Counts a failed login of `identity` from `source`. */
  failed(source: string, identity: string): void;
}

/**
 * The one check of an API request's credential and role, shared by the leader's API (server.ts)
 * and a standby's read routes (hub/ha/standby-server.ts), so both answer 401/403/429 alike.
 * ERR_UNAUTHENTICATED without a valid `Authorization: Bearer` token, ERR_RATE_LIMITED once a
 * failing token (or address) failed too often, ERR_FORBIDDEN when the role may not do `op`.
 */
export function tokenAuthenticator(auth: TokenAuth): (authorization: string | undefined, source: string, op: Operation) => ApiPrincipal {
  return (authorization, source, op) => {
    const header = authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    // Verified first, always: a lock on this token id or this address refuses failures, never a valid token.
    const principal = m?.[1] ? auth.authenticate(m[1]) : undefined;
    if (!principal) {
      if (!m) throw new OrchardError('ERR_UNAUTHENTICATED', 'missing "Authorization: Bearer <token>" header');
      const identity = apiTokenIdentity(m[1] ?? '');
      const locked = auth.limited(source, identity);
      auth.failed(source, identity);
      if (locked) throw new OrchardError('ERR_RATE_LIMITED', 'too many failed logins with this token from this address; try again later');
      throw new OrchardError('ERR_UNAUTHENTICATED', 'the API token is unknown, expired or revoked');
    }
    if (!allowed(principal.role, op)) {
      throw new OrchardError('ERR_FORBIDDEN', `role "${principal.role}" may not do this (needs ${requiredRole(op)})`);
    }
    return principal;
  };
}

/**
 * Writes the write gate lets through (ApiDeps.writeGate): revoking a credential takes effect on this
 * hub at once (its sessions are cut) whatever etcd does, and must stay possible while etcd takes no
 * writes (a full space quota does not end the leader). Their copy in etcd is queued, as before.
 */
export const WRITE_GATE_EXEMPT: ReadonlySet<Operation> = new Set<Operation>(['token.revoke', 'node.delete']);

/** `need(op)`: the preHandler guard of a route, tagged for RouteRules (route-rules.ts). */
export function guardFactory(
  rules: RouteRules,
  authenticate: ReturnType<typeof tokenAuthenticator>,
  /** Throws when the store takes no writes now (ApiDeps.writeGate): checked for writes, after authentication. */
  writeGate?: () => void,
): (op: Operation) => (req: FastifyRequest) => Promise<void> {
  return (op) =>
    rules.tag(async (req: FastifyRequest): Promise<void> => {
      req.principal = authenticate(req.headers.authorization, req.ip, op);
      if (writeGate !== undefined && req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS' && !WRITE_GATE_EXEMPT.has(op)) writeGate();
    }, op);
}
