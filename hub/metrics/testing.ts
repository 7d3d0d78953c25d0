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

/** A scrape whose consumer calls `write` once, right after the first chunk that contains `after` (the body is between chunks then). */
export async function scrapeWriting(m: HubMetrics, after: string, write: () => void): Promise<{ text: string; hit: boolean }> {
  let text = '';
  let hit = false;
  for await (const c of m.chunks()) {
    const s = c.toString('utf8');
    text += s;
    if (!hit && s.includes(after)) {
      hit = true;
      write();
    }
  }
  return { text, hit };
}

/** The series of family `name` written more than once in `text` (name and labels; a scrape must write each once). */
export function repeatedSeries(text: string, name: string): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith(`${name}{`)) continue;
    const key = l.slice(0, l.lastIndexOf(' '));
    if (seen.has(key)) out.push(key);
    seen.add(key);
  }
  return out;
}
