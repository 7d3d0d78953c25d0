import { createHash } from 'node:crypto';
import { API_VERSION } from '../protocol/manifest.js';
import type { EventObject } from '../protocol/objects.js';
import type { Store } from './store/store.js';

export interface EventInput {
  kind: string;
  name: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/**
 * Records an Event. The same (object, reason, message) within the store bumps `count` and
 * `lastTimestamp` instead of adding a row, as Kubernetes' event aggregation does, so a
 * crash-looping pod does not flood the store.
 */
export function recordEvent(store: Store, now: Date, e: EventInput): EventObject {
  const digest = createHash('sha256').update(`${e.kind}\0${e.name}\0${e.reason}\0${e.message}`).digest('hex').slice(0, 10);
  const name = `${e.name.slice(0, 40)}.${digest}`;
  const ts = now.toISOString();
  const existing = store.get('Event', name);
  if (existing) {
    const next = structuredClone(existing) as EventObject;
    next.count += 1;
    next.lastTimestamp = ts;
    return store.update(next);
  }
  return store.create({
    apiVersion: API_VERSION,
    kind: 'Event',
    metadata: { name, labels: {}, annotations: {}, ownerName: `${e.kind}/${e.name}` },
    involvedObject: { kind: e.kind, name: e.name },
    type: e.type,
    reason: e.reason,
    message: e.message,
    count: 1,
    firstTimestamp: ts,
    lastTimestamp: ts,
  });
}
