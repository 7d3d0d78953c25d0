import type { ServiceCountersReport } from '../../../protocol/messages.js';
import type { DataPlaneStatus, ServiceDataPlane, ServiceTable, TableListener } from '../../../agent/services/service-table-types.js';

/**
 * The services fleet bench's data plane (scripts/bench/services-fleet.ts): opens nothing, only
 * notes when each endpoint first appeared in an applied table. A remote endpoint is known to a
 * node's table by `address:endpointPort` (the table carries no pod uid for it); the pod's own node
 * knows it as a ready endpoint port, keyed `uid:<pod uid>`. Both come from the Service status.
 *
 * Like the real data plane (agent/services/proxy.ts), it skips listeners it already holds by
 * identity (the agent's ServiceTableCache keeps unchanged services' listener objects), so an
 * apply costs the changed services, not the whole table.
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
  /** Key → how many listeners / endpoint ports of the last applied table hold it. */
  private readonly current = new Map<string, number>();
  private held = new Set<TableListener>();
  private heldLocal: string[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  async apply(table: ServiceTable): Promise<void> {
    const t = this.now();
    this.applies++;
    this.lastApplyAt = t;
    // Adds before drops: an endpoint moving to a new listener object of its service stays present.
    const next = new Set(table.listeners);
    for (const l of next) if (!this.held.has(l)) for (const e of l.endpoints) this.add(e.id, t);
    const local = table.endpointPorts.filter((p) => p.ready).map((p) => `uid:${p.uid}`);
    for (const k of local) this.add(k, t);
    for (const l of this.held) if (!next.has(l)) for (const e of l.endpoints) this.drop(e.id);
    for (const k of this.heldLocal) this.drop(k);
    this.held = next;
    this.heldLocal = local;
  }

  private add(key: string, t: number): void {
    const n = this.current.get(key) ?? 0;
    if (n === 0) this.appeared.set(key, t);
    this.current.set(key, n + 1);
  }

  private drop(key: string): void {
    const n = (this.current.get(key) ?? 0) - 1;
    if (n <= 0) this.current.delete(key);
    else this.current.set(key, n);
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

  serviceCounters(): ServiceCountersReport {
    return {};
  }

  async close(): Promise<void> {
    this.current.clear();
    this.held = new Set();
    this.heldLocal = [];
  }
}
