import type { DataPlaneStatus, ServiceDataPlane, ServiceTable } from '../../../agent/services/service-table-types.js';

/**
 * The services fleet bench's data plane (scripts/bench/services-fleet.ts): opens nothing, only
 * notes when each endpoint first appeared in an applied table. A remote endpoint is known to a
 * node's table by `address:endpointPort` (the table carries no pod uid for it); the pod's own node
 * knows it as a ready endpoint port, keyed `uid:<pod uid>`. Both come from the Service status.
 */
export function endpointKeys(table: ServiceTable): Set<string> {
  const keys = new Set<string>();
  for (const l of table.listeners) for (const e of l.endpoints) keys.add(e.id);
  for (const p of table.endpointPorts) if (p.ready) keys.add(`uid:${p.uid}`);
  return keys;
}

export class TimingDataPlane implements ServiceDataPlane {
  applies = 0;
  lastApplyAt = 0;
  /** Key → time (Date.now) of the apply where it last appeared (absent before). */
  private readonly appeared = new Map<string, number>();
  private current = new Set<string>();

  constructor(private readonly now: () => number = Date.now) {}

  async apply(table: ServiceTable): Promise<void> {
    const t = this.now();
    this.applies++;
    this.lastApplyAt = t;
    const next = endpointKeys(table);
    for (const k of next) if (!this.current.has(k)) this.appeared.set(k, t);
    this.current = next;
  }

  /** Earliest time at or after `since` when any of `keys` appeared and is still present; undefined if none did. */
  seen(keys: readonly string[], since: number): number | undefined {
    let best: number | undefined;
    for (const k of keys) {
      const t = this.appeared.get(k);
      if (t !== undefined && t >= since && this.current.has(k) && (best === undefined || t < best)) best = t;
    }
    return best;
  }

  /** Endpoints in the last applied table. */
  get endpoints(): number {
    return this.current.size;
  }

  status(): DataPlaneStatus {
    return { listeners: [], endpointPorts: [], counters: {} };
  }

  async close(): Promise<void> {
    this.current = new Set();
  }
}
