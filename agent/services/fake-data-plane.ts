import type { ServiceCountersReport } from '../../protocol/messages.js';
import type { DataPlaneStatus, ServiceDataPlane, ServiceTable } from './service-table-types.js';

/** A recording ServiceDataPlane for tests: every applied table, in order; optionally slow or paused applies. */
export class FakeDataPlane implements ServiceDataPlane {
  readonly applied: ServiceTable[] = [];
  closed = false;
  /** Called at the start of every apply (tests record ordering against engine calls). */
  onApply: ((table: ServiceTable) => void) | undefined;
  /** When set, apply waits for it before recording (tests of single flight and ordering). */
  gate: Promise<void> | undefined;
  /** What serviceCounters() answers (tests set it: a proxy that replayed). */
  counters: ServiceCountersReport = {};

  get last(): ServiceTable | undefined {
    return this.applied[this.applied.length - 1];
  }

  async apply(table: ServiceTable): Promise<void> {
    this.onApply?.(table);
    if (this.gate !== undefined) await this.gate;
    this.applied.push(structuredClone(table));
  }

  status(): DataPlaneStatus {
    const t = this.last;
    return {
      listeners: [...(t?.listeners ?? []), ...(t?.publish ?? [])].map((l) => ({
        key: l.key,
        address: l.address,
        port: l.port,
        protocol: l.protocol,
        bound: true,
        endpoints: l.endpoints.length,
      })),
      endpointPorts: (t?.endpointPorts ?? []).map((p) => ({ key: p.key, listening: p.ready })),
      counters: {},
    };
  }

  serviceCounters(): ServiceCountersReport {
    return structuredClone(this.counters);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
