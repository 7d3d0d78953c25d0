import { NODE_UP_CHANNELS, TOPIC_LIMITS, parseTopic, topics } from '../../protocol/topics.js';
import type { Role } from '../../protocol/api.js';

/**
 * Who may publish and subscribe to what. Pure functions over protocol/topics.ts; the broker hooks
 * (broker-auth.ts) and any future transport call these, so the rules live in one place.
 *
 *   node  → publishes only its own up-channels (stream output on its own stream-up topic included:
 *           it cannot answer another node's streams); subscribes only to its own desired,
 *           upgrade and stream-down topics (only the hub publishes there, so only the hub opens
 *           streams or upgrades a node), and
 *           (read only) to the service broadcast topics: `orchard/v1/services/+` (or one
 *           service's topic) and `orchard/v1/service-index` (issue 15: every node needs every
 *           service, since any pod may dial any name; they carry no secrets).
 *   user  → publishes only to its own command topic; subscribes only to its own reply topic.
 *   both  → may read `orchard/v1/hubs`, the hub addresses of an etcd group (issue 19: how they
 *           find the next leader; addresses only, no secret).
 *   hub   → anything (it is the in-process control plane); the only publisher of service topics.
 * Wildcard filters are for the hub alone, except the one service filter above: a wildcard would
 * let a node read every node's desired set (which carries its secrets). Anything over
 * TOPIC_LIMITS is refused for everyone.
 */

export type Principal = { kind: 'node'; node: string } | { kind: 'user'; clientId: string; role: Role } | { kind: 'hub' };

const UP = new Set<string>(NODE_UP_CHANNELS);
/** The one wildcard filter a node may use: every service's retained message (read only). */
const SERVICES_FILTER = topics.allServices();

function withinLimits(topic: string): boolean {
  return topic.length > 0 && topic.length <= TOPIC_LIMITS.maxLength && topic.split('/').length <= TOPIC_LIMITS.maxLevels;
}

function hasWildcard(topic: string): boolean {
  return topic.includes('+') || topic.includes('#');
}

export function canPublish(p: Principal, topic: string): boolean {
  if (!withinLimits(topic) || hasWildcard(topic)) return false;
  if (p.kind === 'hub') return true;
  const t = parseTopic(topic);
  if (!t) return false;
  if (p.kind === 'node') return t.type === 'node' && t.node === p.node && UP.has(t.channel);
  return t.type === 'command' && t.clientId === p.clientId;
}

export function canSubscribe(p: Principal, filter: string): boolean {
  if (!withinLimits(filter)) return false;
  if (p.kind === 'hub') return true;
  if (p.kind === 'node' && filter === SERVICES_FILTER) return true;
  if (hasWildcard(filter)) return false;
  const t = parseTopic(filter);
  if (!t) return false;
  if (t.type === 'hubs') return true;
  if (p.kind === 'node') {
    if (t.type === 'service' || t.type === 'serviceIndex') return true;
    return t.type === 'node' && t.node === p.node && (t.channel === 'desired' || t.channel === 'stream-down' || t.channel === 'upgrade');
  }
  return t.type === 'reply' && t.clientId === p.clientId;
}

/**
 * Retained messages are kept by the broker until replaced, so who may leave one is narrow:
 * the hub (desired sets); a node only on its own presence and status topics (the agent's last
 * will and latest status), each at most MAX_RETAINED_BYTES; users never. A node so holds at
 * most 2 retained messages; a user none. Anything else is published with `retain` cleared.
 */
export const MAX_RETAINED_BYTES = 64 * 1024;
const NODE_RETAINED = new Set<string>(['presence', 'status']);

export function mayRetain(p: Principal, topic: string, bytes: number): boolean {
  if (p.kind === 'hub') return true;
  if (p.kind === 'user' || bytes > MAX_RETAINED_BYTES) return false;
  const t = parseTopic(topic);
  return t?.type === 'node' && t.node === p.node && NODE_RETAINED.has(t.channel);
}

/** Whether a message on a concrete `topic` may be delivered to `p` (defence in depth behind canSubscribe). */
export function canReceive(p: Principal, topic: string): boolean {
  return !hasWildcard(topic) && canSubscribe(p, topic);
}

/** For logs: a principal in a few words, never a secret. */
export function describePrincipal(p: Principal): string {
  if (p.kind === 'node') return `node ${p.node}`;
  if (p.kind === 'user') return `client ${p.clientId} (${p.role})`;
  return 'hub';
}
