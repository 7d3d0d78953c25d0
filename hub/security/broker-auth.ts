import type { Aedes, AuthErrorCode, AuthenticateError, Client } from 'aedes';
import type { Socket } from 'node:net';
import { isValidClientId } from '../../protocol/topics.js';
import type { Role } from '../../protocol/api.js';
import { canPublish, canReceive, canSubscribe, describePrincipal } from './acl.js';
import type { Principal } from './acl.js';
import { TOKEN_USERNAME } from './auth-store.js';
import type { AuthStore } from './auth-store.js';
import type { RateLimiter } from './rate-limit.js';
import { sourceKey } from './rate-limit.js';

/**
 * Authentication and ACL hooks for the embedded aedes broker.
 *
 * CONNECT conventions:
 *   node   username = node name, password = its credential, clientId MUST equal the node name.
 *   user   username = "token", password = an API token, clientId any valid id (not a node's name).
 * Refusals: bad/missing credentials → CONNACK 4 (counted by the limiter per remote address);
 * locked-out source or a last-will on a forbidden topic → 5; clientId rules → 2.
 *
 * A forbidden PUBLISH closes the client (MQTT 3.1.1 has no per-message refusal); a forbidden
 * SUBSCRIBE gets SUBACK 0x80 and the session stays up. authorizeForward re-checks every delivery
 * (including retained messages), so nothing reaches a client it could not have subscribed to.
 * In-process `broker.publish` bypasses these hooks by aedes design: that is the hub's own path.
 */

export interface BrokerAuthDeps {
  auth: Pick<AuthStore, 'authenticateNode' | 'authenticateApiToken' | 'hasNode' | 'isApiTokenActive'>;
  limiter: RateLimiter;
  log: (msg: string) => void;
}

interface Session {
  principal: Principal;
  /** API token id for user sessions, so revoking the token can close them. */
  tokenId?: string;
}

const sessions = new WeakMap<Client, Session>();
/** Authenticated clients per broker, also by client id (a CONNECT checks only its own id's). */
interface Registry {
  all: Set<Client>;
  byId: Map<string, Set<Client>>;
}
const registries = new WeakMap<Aedes, Registry>();
/** Last-will topics seen at preConnect, checked once the principal is known. */
const pendingWills = new WeakMap<Client, string>();

/** The authenticated principal behind a broker client; `{ kind: 'hub' }` for aedes' null client. */
export function principalOf(client: Client | null): Principal | undefined {
  if (client === null) return { kind: 'hub' };
  return sessions.get(client)?.principal;
}

/**
 * The role of the live user session with MQTT client id `clientId`. Commands arrive on
 * `commands/<clientId>`, which only that session may publish to, so this is its sender's role.
 * Prefer `broker.on('publish', (packet, client) => principalOf(client))` where the client is at hand.
 */
export function roleOfClient(broker: Aedes, clientId: string): Role | undefined {
  for (const c of liveClients(broker)) {
    const p = sessions.get(c)?.principal;
    if (p?.kind === 'user' && p.clientId === clientId) return p.role;
  }
  return undefined;
}

export function installBrokerAuth(broker: Aedes, deps: BrokerAuthDeps): void {
  const { auth, limiter, log } = deps;
  const registry: Registry = { all: new Set(), byId: new Map() };
  registries.set(broker, registry);
  broker.on('clientDisconnect', (client) => unregister(registry, client));

  broker.preConnect = (client, packet, callback) => {
    if (packet.will?.topic !== undefined) pendingWills.set(client, packet.will.topic);
    callback(null, true);
  };

  broker.authenticate = (client, username, password, done) => {
    const source = sourceKey(remoteAddress(client));
    const refuse = (code: number, why: string, countFailure: boolean): void => {
      if (countFailure) limiter.recordFailure(source);
      log(`mqtt: refused connection from ${source} (clientId ${JSON.stringify(client.id)}): ${why}`);
      const err = Object.assign(new Error(why), { returnCode: code as AuthErrorCode }) as AuthenticateError;
      done(err, false);
    };

    const gate = limiter.check(source);
    if (!gate.allowed) return refuse(5, `too many failed logins; locked for ${Math.ceil(gate.retryAfterMs / 1000)} s`, false);
    if (username === undefined || username === '' || password === undefined || password.length === 0) {
      return refuse(4, 'no username or password', true);
    }
    const secret = password.toString('utf8');

    let session: Session;
    if (username === TOKEN_USERNAME) {
      const who = auth.authenticateApiToken(secret);
      if (!who) return refuse(4, 'invalid API token', true);
      if (!isValidClientId(client.id)) return refuse(2, 'clientId must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}', false);
      // A user taking a node's clientId would kick that node off the broker (aedes closes the older session).
      if (auth.hasNode(client.id)) return refuse(2, `clientId ${client.id} is a node's name`, false);
      session = { principal: { kind: 'user', clientId: client.id, role: who.role }, tokenId: who.id };
    } else {
      if (!auth.authenticateNode(username, secret)) return refuse(4, `bad credential for node ${JSON.stringify(username)}`, true);
      if (client.id !== username) return refuse(2, `a node must connect with clientId = its name (${username})`, false);
      session = { principal: { kind: 'node', node: username } };
    }

    // Only the same identity may take over a live session with this clientId.
    for (const other of liveClients(broker, client.id)) {
      if (other !== client && identity(sessions.get(other)) !== identity(session)) {
        return refuse(2, `clientId ${client.id} is in use by another identity`, false);
      }
    }
    const will = pendingWills.get(client);
    pendingWills.delete(client);
    if (will !== undefined && !canPublish(session.principal, will)) {
      return refuse(5, `last-will topic ${JSON.stringify(will.slice(0, 80))} is not allowed for ${describePrincipal(session.principal)}`, false);
    }

    limiter.recordSuccess(source);
    sessions.set(client, session);
    registry.all.add(client);
    let same = registry.byId.get(client.id);
    if (same === undefined) registry.byId.set(client.id, (same = new Set()));
    same.add(client);
    done(null, true);
  };

  broker.authorizePublish = (client, packet, callback) => {
    // null: aedes re-publishing a stored last-will whose client is gone; wills were checked at CONNECT.
    if (client === null) return callback(null);
    const session = activeSession(client);
    if (session && canPublish(session.principal, packet.topic)) return callback(null);
    log(`mqtt: refused publish to ${JSON.stringify(packet.topic.slice(0, 120))} by ${who(client)}; closing it`);
    callback(new Error('publish not authorized'));
  };

  broker.authorizeSubscribe = (client, sub, callback) => {
    const session = activeSession(client);
    if (session && canSubscribe(session.principal, sub.topic)) return callback(null, sub);
    log(`mqtt: refused subscribe to ${JSON.stringify(sub.topic.slice(0, 120))} by ${who(client)}`);
    callback(null, null); // SUBACK 0x80 for this filter; the session stays up
  };

  broker.authorizeForward = (client, packet) => {
    const session = sessions.get(client);
    return session && canReceive(session.principal, packet.topic) ? packet : null;
  };

  /** A credential revoked or expired mid-session stops working at its next publish or subscribe. */
  function activeSession(client: Client): Session | undefined {
    const s = sessions.get(client);
    if (!s) return undefined;
    const p = s.principal;
    const ok = p.kind === 'node' ? auth.hasNode(p.node) : p.kind === 'user' ? s.tokenId !== undefined && auth.isApiTokenActive(s.tokenId) : true;
    return ok ? s : undefined;
  }

  function who(client: Client): string {
    const p = sessions.get(client)?.principal;
    return p ? describePrincipal(p) : `unauthenticated client ${JSON.stringify(client.id)}`;
  }
}

/** Closes every live session of `node` at once (call after revokeNode). Returns how many were closed. */
export function disconnectNode(broker: Aedes, node: string): number {
  return closeWhere(broker, (s) => s.principal.kind === 'node' && s.principal.node === node);
}

/** Closes every live session authenticated with API token `tokenId` (call after revokeApiToken). */
export function disconnectApiToken(broker: Aedes, tokenId: string): number {
  return closeWhere(broker, (s) => s.tokenId === tokenId);
}

function closeWhere(broker: Aedes, pred: (s: Session) => boolean): number {
  let n = 0;
  for (const c of liveClients(broker)) {
    const s = sessions.get(c);
    if (s && pred(s)) {
      sessions.delete(c); // no further publish/subscribe/forward even before the socket is gone
      c.close();
      n++;
    }
  }
  return n;
}

/** Live authenticated clients, all or only those with client id `id`; forgets closed ones on the way. */
function liveClients(broker: Aedes, id?: string): Client[] {
  const registry = registries.get(broker);
  if (!registry) return [];
  const out: Client[] = [];
  const from = id === undefined ? registry.all : registry.byId.get(id);
  for (const c of [...(from ?? [])]) {
    if (c.closed) unregister(registry, c);
    else out.push(c);
  }
  return out;
}

function unregister(registry: Registry, client: Client): void {
  registry.all.delete(client);
  const same = registry.byId.get(client.id);
  if (same === undefined) return;
  same.delete(client);
  if (same.size === 0) registry.byId.delete(client.id);
}

function identity(s: Session | undefined): string {
  if (!s) return '';
  const p = s.principal;
  return p.kind === 'node' ? `node:${p.node}` : p.kind === 'user' ? `token:${s.tokenId ?? ''}` : 'hub';
}

function remoteAddress(client: Client): string | undefined {
  // TLS/TCP streams are sockets; websocket clients carry the upgrade request.
  const conn = client.conn as Partial<Socket>;
  return client.req?.socket?.remoteAddress ?? conn.remoteAddress;
}

