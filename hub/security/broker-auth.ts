import type { Aedes, AuthErrorCode, AuthenticateError, Client } from 'aedes';
import type { Socket } from 'node:net';
import { userClientTokenId } from '../../protocol/topics.js';
import type { Role } from '../../protocol/api.js';
import { canPublish, canReceive, canSubscribe, describePrincipal, mayRetain } from './acl.js';
import type { Principal } from './acl.js';
import { TOKEN_USERNAME } from './auth-store.js';
import type { AuthStore } from './auth-store.js';
import type { LoginLimiter } from './rate-limit.js';
import { apiTokenIdentity, nodeIdentity, sourceKey } from './rate-limit.js';

/**
 * Authentication and ACL hooks for the embedded aedes broker.
 *
 * CONNECT conventions:
 *   node   username = node name, password = its credential, clientId MUST equal the node name.
 *   user   username = "token", password = an API token, clientId `u.<tokenId>[.<suffix>]`
 *          (protocol/topics.ts userClientId: a namespace no node name can enter), clean session.
 * Refusals: bad/missing credentials → CONNACK 4, or 5 while the limiter has that claimed identity
 * or the remote address locked (counted either way, per address and claimed identity); a correct
 * credential is accepted even then (rate-limit.ts LoginLimiter). A last-will on a forbidden topic
 * → 5; clientId and session rules → 2.
 *
 * `retain` is honoured only where mayRetain (acl.ts) allows it; elsewhere it is cleared before
 * aedes stores anything (publishes and last wills alike), and any copy left on that topic dropped.
 * Refused subscriptions are logged once per SUBSCRIBE packet, not once per filter.
 *
 * A forbidden PUBLISH closes the client (MQTT 3.1.1 has no per-message refusal); a forbidden
 * SUBSCRIBE gets SUBACK 0x80 and the session stays up. authorizeForward re-checks every delivery
 * (including retained messages), so nothing reaches a client it could not have subscribed to.
 * In-process `broker.publish` bypasses these hooks by aedes design: that is the hub's own path.
 */

export interface BrokerAuthDeps {
  auth: Pick<AuthStore, 'authenticateNode' | 'authenticateApiToken' | 'hasNode' | 'isApiTokenActive'>;
  limiter: LoginLimiter;
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
/** Last wills seen at preConnect (the object aedes keeps as the client's will), checked once the principal is known. */
interface Will {
  topic: string;
  payload: Buffer | string;
  retain?: boolean;
}
const pendingWills = new WeakMap<Client, Will>();
/** Refused filters of the SUBSCRIBE being handled, per client (aedes authorizes a packet's filters in one synchronous loop). */
const refusedFilters = new WeakMap<Client, { count: number; first: string[] }>();

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
    if (packet.will?.topic !== undefined) pendingWills.set(client, packet.will);
    callback(null, true);
  };

  broker.authenticate = (client, username, password, done) => {
    const source = sourceKey(remoteAddress(client));
    const secret = password?.toString('utf8') ?? '';
    // Failures count per (source, claimed identity): one guesser does not lock out the other clients behind its address.
    const claimed = username === TOKEN_USERNAME ? apiTokenIdentity(secret) : nodeIdentity(username);
    const refuse = (code: number, why: string): void => {
      log(`mqtt: refused connection from ${source} (clientId ${JSON.stringify(client.id)}): ${why}`);
      const err = Object.assign(new Error(why), { returnCode: code as AuthErrorCode }) as AuthenticateError;
      done(err, false);
    };
    // The credential is always checked first: a lock refuses failures only, never the right secret.
    const fail = (why: string): void => {
      const gate = limiter.fail(source, claimed);
      if (gate.allowed) return refuse(4, why);
      refuse(5, `${why}; too many failed logins for ${claimed}, locked for ${Math.ceil(gate.retryAfterMs / 1000)} s`);
    };

    if (username === undefined || username === '' || secret.length === 0) return fail('no username or password');

    let session: Session;
    if (username === TOKEN_USERNAME) {
      const who = auth.authenticateApiToken(secret);
      if (!who) return fail('invalid API token');
      // A user's ids live in its token's own namespace: it can never take (or squat, before the node
      // joins) a node's id, whose session aedes would close, nor another token's.
      if (userClientTokenId(client.id) !== who.id) return refuse(2, `an API-token client's id must be u.${who.id} or u.${who.id}.<suffix>`);
      // A persistent session would keep queued messages (memory) for a client that may never return.
      if (!client.clean) return refuse(2, 'API-token clients must connect with a clean session');
      session = { principal: { kind: 'user', clientId: client.id, role: who.role }, tokenId: who.id };
    } else {
      if (!auth.authenticateNode(username, secret)) return fail(`bad credential for node ${JSON.stringify(username)}`);
      if (client.id !== username) return refuse(2, `a node must connect with clientId = its name (${username})`);
      session = { principal: { kind: 'node', node: username } };
    }

    // Only the same identity may take over a live session with this clientId.
    for (const other of liveClients(broker, client.id)) {
      if (other !== client && identity(sessions.get(other)) !== identity(session)) {
        return refuse(2, `clientId ${client.id} is in use by another identity`);
      }
    }
    const will = pendingWills.get(client);
    pendingWills.delete(client);
    if (will !== undefined && !canPublish(session.principal, will.topic)) {
      return refuse(5, `last-will topic ${JSON.stringify(will.topic.slice(0, 80))} is not allowed for ${describePrincipal(session.principal)}`);
    }
    // The will is stored retained when it fires: clear the flag now where retaining is not allowed.
    if (will?.retain === true && !mayRetain(session.principal, will.topic, byteLength(will.payload))) will.retain = false;

    limiter.recordSuccess(source, claimed);
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
    if (session && canPublish(session.principal, packet.topic)) {
      if (packet.retain && !mayRetain(session.principal, packet.topic, byteLength(packet.payload))) {
        // Delivered live, never stored: retained messages live until replaced, so anyone allowed
        // to leave them could fill the hub's memory (a viewer: 4 MiB per client id it makes up).
        packet.retain = false;
        dropRetained(broker, packet.topic);
      }
      return callback(null);
    }
    log(`mqtt: refused publish to ${JSON.stringify(packet.topic.slice(0, 120))} by ${who(client)}; closing it`);
    callback(new Error('publish not authorized'));
  };

  broker.authorizeSubscribe = (client, sub, callback) => {
    const session = activeSession(client);
    if (session && canSubscribe(session.principal, sub.topic)) return callback(null, sub);
    noteRefusedFilter(client, sub.topic);
    callback(null, null); // SUBACK 0x80 for this filter; the session stays up
  };

  /** One log line per SUBSCRIBE packet (a packet may carry tens of thousands of filters): count + first few. */
  function noteRefusedFilter(client: Client, filter: string): void {
    let r = refusedFilters.get(client);
    if (r === undefined) {
      const batch = (r = { count: 0, first: [] as string[] });
      refusedFilters.set(client, batch);
      // aedes authorizes every filter of a packet in one synchronous loop, so this runs after the packet's last one.
      setImmediate(() => {
        refusedFilters.delete(client);
        const more = batch.count > batch.first.length ? `, … (${batch.count - batch.first.length} more)` : '';
        log(`mqtt: refused ${batch.count} subscribe filter${batch.count === 1 ? '' : 's'} by ${who(client)}: ${batch.first.join(', ')}${more}`);
      });
    }
    r.count++;
    if (r.first.length < 3) r.first.push(JSON.stringify(filter.slice(0, 120)));
  }

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

function byteLength(payload: Buffer | string): number {
  return typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
}

/** Drops the retained message on `topic`, if any (an empty retained payload clears a topic). */
function dropRetained(broker: Aedes, topic: string): void {
  const persistence = (broker as unknown as { persistence?: { storeRetained(p: object): Promise<void> | unknown } }).persistence;
  const r = persistence?.storeRetained({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false });
  if (r instanceof Promise) r.catch(() => undefined);
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
