import { NODE_UP_CHANNELS, TOPIC_LIMITS, parseTopic } from '../../protocol/topics.js';
import type { Role } from '../../protocol/api.js';

/**
 * Who may publish and subscribe to what. Pure functions over protocol/topics.ts; the broker hooks
 * (broker-auth.ts) and any future transport call these, so the rules live in one place.
 *
 *   node  → publishes only its own up-channels; subscribes only to its own desired topic.
 *   user  → publishes only to its own command topic; subscribes only to its own reply topic.
 *   hub   → anything (it is the in-process control plane).
 * Wildcard filters are for the hub alone: a wildcard would let a node read every node's desired
 * set (which carries its secrets). Anything over TOPIC_LIMITS is refused for everyone.
 */

export type Principal = { kind: 'node'; node: string } | { kind: 'user'; clientId: string; role: Role } | { kind: 'hub' };

const UP = new Set<string>(NODE_UP_CHANNELS);

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
  if (hasWildcard(filter)) return false;
  const t = parseTopic(filter);
  if (!t) return false;
  if (p.kind === 'node') return t.type === 'node' && t.node === p.node && t.channel === 'desired';
  return t.type === 'reply' && t.clientId === p.clientId;
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
