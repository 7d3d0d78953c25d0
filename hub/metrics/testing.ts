import type { Store } from '../store/store.js';
import { HubMetrics } from './prometheus.js';
import type { UsageStore } from './usage-store.js';

/** A HubMetrics over `store` and `usage` for tests: no process metrics, fixed hub gauges (queues 0 unless given). */
export function testMetrics(
  store: Store,
  usage: UsageStore,
  o: { now: () => number; chunkBytes?: number; queueDepths?: Record<string, number>; intakeBacklog?: number; mqttConnections?: number },
): HubMetrics {
  return new HubMetrics({
    store,
    usage,
    queueDepths: () => o.queueDepths ?? {},
    intakeBacklog: () => o.intakeBacklog ?? 0,
    mqttConnections: () => o.mqttConnections ?? 0,
    processMetrics: false,
    now: o.now,
    ...(o.chunkBytes !== undefined ? { chunkBytes: o.chunkBytes } : {}),
  });
}
