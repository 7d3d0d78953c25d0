import { z } from 'zod';
import {
  AgentRolloutSchema,
  ConfigMapSchema,
  DeploymentSchema,
  EventSchema,
  NodeSchema,
  PersistentVolumeSchema,
  ServiceSchema,
  PodSchema,
  RevisionSchema,
  SecretSchema,
  type EventObject,
  type ObjectKind,
  type ObjectOf,
} from '../protocol/objects.js';
import type { HubClient } from './client.js';

/** Typed reads of hub objects. Responses are checked against the shared protocol schemas. */

export const SCHEMA_BY_KIND = {
  Deployment: DeploymentSchema,
  Pod: PodSchema,
  Node: NodeSchema,
  Event: EventSchema,
  ConfigMap: ConfigMapSchema,
  Secret: SecretSchema,
  Revision: RevisionSchema,
  Volume: PersistentVolumeSchema,
  Service: ServiceSchema,
  AgentRollout: AgentRolloutSchema,
} as const satisfies Record<ObjectKind, z.ZodType>;

export type KindMap = { [K in ObjectKind]: ObjectOf<K> };

export function listSchema<S extends z.ZodType>(item: S) {
  return z.object({ items: z.array(item) });
}

export async function listObjects<K extends ObjectKind>(
  client: HubClient,
  kind: K,
  plural: string,
  query = '',
): Promise<{ items: KindMap[K][]; raw: unknown }> {
  const { parsed, raw } = await client.getParsed(`/api/v1/${plural}${query}`, listSchema(SCHEMA_BY_KIND[kind]));
  return { items: parsed.items as KindMap[K][], raw };
}

export async function getObject<K extends ObjectKind>(client: HubClient, kind: K, plural: string, name: string): Promise<{ item: KindMap[K]; raw: unknown }> {
  const { parsed, raw } = await client.getParsed(`/api/v1/${plural}/${encodeURIComponent(name)}`, SCHEMA_BY_KIND[kind]);
  return { item: parsed as KindMap[K], raw };
}

/**
 * Events about one object, oldest first. The query narrows on the hub; the filter here keeps
 * the answer right even if a hub ignores the query.
 */
export async function eventsFor(client: HubClient, kind: ObjectKind, name: string): Promise<EventObject[]> {
  const query = `?involvedObject=${encodeURIComponent(`${kind}/${name}`)}`;
  const { items } = await listObjects(client, 'Event', 'events', query);
  return sortEvents(items.filter((e) => e.involvedObject.kind.toLowerCase() === kind.toLowerCase() && e.involvedObject.name === name));
}

export function sortEvents(events: EventObject[]): EventObject[] {
  return [...events].sort((a, b) => (Date.parse(a.lastTimestamp) || 0) - (Date.parse(b.lastTimestamp) || 0));
}
