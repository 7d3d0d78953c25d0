import { NameSchema } from './pod-spec.js';

/**
 * Every MQTT topic Orchard uses, built and parsed only here. All live under `orchard/v1/`.
 *
 * Up (agent → hub):      orchard/v1/nodes/{node}/status    NodeStatusMessage, on connect and on change (retained)
 *                         orchard/v1/nodes/{node}/usage     NodeUsageMessage, periodic heartbeat
 *                         orchard/v1/nodes/{node}/observed  ObservedSetMessage, on change and periodic
 *                         orchard/v1/nodes/{node}/presence  PresenceMessage; the last-will says offline
 * Down (hub → agent):    orchard/v1/nodes/{node}/desired   DesiredSetMessage, retained, QoS 1
 * Streams (issue 16):     orchard/v1/nodes/{node}/stream-down  log/exec stream control (hub → agent), QoS 0
 *                         orchard/v1/nodes/{node}/stream-up    log/exec output (agent → hub), QoS 1 (protocol/streams.ts)
 *                         orchard/v1/nodes/{node}/upgrade   AgentUpgradeMessage, retained, QoS 1 (empty = none; issue 17)
 * Services (hub → all):  orchard/v1/services/{service}   ServiceMessage, retained, QoS 1 (empty = deleted)
 *                         orchard/v1/service-index       ServiceIndexMessage, retained, QoS 1
 * HA (hub → all):        orchard/v1/hubs                 HubListMessage, retained, QoS 1 (protocol/hubs.ts; etcd groups only)
 * Commands:              orchard/v1/commands/{clientId}    CommandRequest (client → hub)
 *                         orchard/v1/replies/{clientId}     CommandReply  (hub → client)
 *                         clientId = u.<API token id>[.<suffix>] (userClientId)
 */

export const TOPIC_ROOT = 'orchard/v1';

export const NODE_UP_CHANNELS = ['status', 'usage', 'observed', 'presence', 'stream-up'] as const;
export const NODE_DOWN_CHANNELS = ['desired', 'stream-down', 'upgrade'] as const;
export type NodeUpChannel = (typeof NODE_UP_CHANNELS)[number];
export type NodeDownChannel = (typeof NODE_DOWN_CHANNELS)[number];
export type NodeChannel = NodeUpChannel | NodeDownChannel;

/** Limits the broker enforces on any topic (aedes < 1.1.1 could be crashed by deep topics). */
export const TOPIC_LIMITS = { maxLength: 256, maxLevels: 8 } as const;

/** MQTT client ids and command client ids: what a name may safely be in a topic level. */
const CLIENT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export const topics = {
  node: (node: string, channel: NodeChannel): string => `${TOPIC_ROOT}/nodes/${node}/${channel}`,
  nodeStatus: (node: string): string => topics.node(node, 'status'),
  nodeUsage: (node: string): string => topics.node(node, 'usage'),
  nodeObserved: (node: string): string => topics.node(node, 'observed'),
  nodePresence: (node: string): string => topics.node(node, 'presence'),
  nodeDesired: (node: string): string => topics.node(node, 'desired'),
  nodeStreamUp: (node: string): string => topics.node(node, 'stream-up'),
  nodeStreamDown: (node: string): string => topics.node(node, 'stream-down'),
  nodeUpgrade: (node: string): string => topics.node(node, 'upgrade'),
  /** Subscription filter for every node's up-channel `channel`. */
  allNodes: (channel: NodeChannel): string => `${TOPIC_ROOT}/nodes/+/${channel}`,
  service: (name: string): string => `${TOPIC_ROOT}/services/${name}`,
  /** Subscription filter for every service's message. */
  allServices: (): string => `${TOPIC_ROOT}/services/+`,
  serviceIndex: (): string => `${TOPIC_ROOT}/service-index`,
  /** The hubs of an etcd group, the leader first (protocol/hubs.ts). */
  hubs: (): string => `${TOPIC_ROOT}/hubs`,
  command: (clientId: string): string => `${TOPIC_ROOT}/commands/${clientId}`,
  reply: (clientId: string): string => `${TOPIC_ROOT}/replies/${clientId}`,
  allCommands: (): string => `${TOPIC_ROOT}/commands/+`,
} as const;

/**
 * MQTT client ids of API-token (user) clients: `u.<tokenId>` or `u.<tokenId>.<suffix>`, so a
 * token can take only ids in its own namespace and never a node's (node ids are node names,
 * DNS labels, which cannot contain '.'). Several sessions of one token pick different suffixes.
 */
const USER_CLIENT_ID_RE = /^u\.([0-9a-f]{12})(?:\.[A-Za-z0-9_.-]+)?$/;

/** The MQTT client id for API token `tokenId` (its public id), with an optional suffix per session. */
export function userClientId(tokenId: string, suffix?: string): string {
  return suffix === undefined ? `u.${tokenId}` : `u.${tokenId}.${suffix}`;
}

/** The API token id a user client id belongs to; undefined if `clientId` is not a user client id. */
export function userClientTokenId(clientId: string): string | undefined {
  if (!isValidClientId(clientId)) return undefined;
  return USER_CLIENT_ID_RE.exec(clientId)?.[1];
}

export type ParsedTopic =
  | { type: 'node'; node: string; channel: NodeChannel }
  | { type: 'command'; clientId: string }
  | { type: 'reply'; clientId: string }
  | { type: 'service'; service: string }
  | { type: 'serviceIndex' }
  | { type: 'hubs' };

export function isValidClientId(id: string): boolean {
  return CLIENT_ID_RE.test(id);
}

/** Parses an Orchard topic; undefined for anything that is not exactly one of ours. */
export function parseTopic(topic: string): ParsedTopic | undefined {
  if (topic.length > TOPIC_LIMITS.maxLength) return undefined;
  const parts = topic.split('/');
  if (parts.length > TOPIC_LIMITS.maxLevels) return undefined;
  if (parts[0] !== 'orchard' || parts[1] !== 'v1') return undefined;
  if (parts[2] === 'nodes' && parts.length === 5) {
    const node = parts[3] ?? '';
    const channel = parts[4] as NodeChannel;
    if (!NameSchema.safeParse(node).success) return undefined;
    if (!(NODE_UP_CHANNELS as readonly string[]).includes(channel) && !(NODE_DOWN_CHANNELS as readonly string[]).includes(channel)) return undefined;
    return { type: 'node', node, channel };
  }
  if (parts[2] === 'services' && parts.length === 4) {
    const service = parts[3] ?? '';
    return NameSchema.safeParse(service).success ? { type: 'service', service } : undefined;
  }
  if (parts[2] === 'service-index' && parts.length === 3) return { type: 'serviceIndex' };
  if (parts[2] === 'hubs' && parts.length === 3) return { type: 'hubs' };
  if ((parts[2] === 'commands' || parts[2] === 'replies') && parts.length === 4) {
    const clientId = parts[3] ?? '';
    if (!isValidClientId(clientId)) return undefined;
    return parts[2] === 'commands' ? { type: 'command', clientId } : { type: 'reply', clientId };
  }
  return undefined;
}
