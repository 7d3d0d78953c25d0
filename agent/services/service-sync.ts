import type { ServiceCountersReport, ServiceIndexMessage, ServiceMessage } from '../../protocol/messages.js';
import type { Clock, Logger, TimerHandle } from '../clock.js';
import { parseServiceCidr, type ServiceCidr } from './service-cidr.js';
import { ServiceState } from './service-state.js';
import type { LocalPod } from './service-table.js';
import { ServiceTableCache } from './service-table-cache.js';
import type { ServiceDataPlane, ServiceTable } from './service-table-types.js';

/**
 * Wires the services for one Agent: hub messages → ServiceState (persisted) ─┐
 *                                   reconciler → this node's pods (LocalPod) ─┴▶ ServiceTableCache ──▶ dataPlane.apply
 *
 * Any change builds the whole table (incrementally: only the services that changed are rebuilt,
 * the rest keep their objects) and applies it after a short debounce (a burst of messages on
 * reconnect costs one apply); applies are single flight (a change during one waits, then the
 * newest table goes) and an unchanged table — the cache returns the same object — is not applied
 * again. Local changes need no hub: readiness turning on or off applies with the link down.
 * flush() applies at once and resolves once the newest table is applied (the reconciler awaits
 * it before any SIGTERM).
 */

export interface ServiceSyncOptions {
  node: string;
  dataDir: string;
  dataPlane: ServiceDataPlane;
  serviceCidr: string;
  advertiseAddress?: string;
  publishAddress: string;
  clock: Clock;
  logger: Logger;
  /** Debounce before an apply (default 5 ms). */
  debounceMs?: number;
  /**
   * services.json is written at most this often (default 10 s; the newest state, once the window
   * ends). Endpoint readiness changes all over the fleet during a rollout: writing on each one cost
   * every device an fsync per change (SD-card wear) and ≈ 1.1 ms of its CPU (services fleet bench).
   * stop() writes what is pending.
   */
  saveDelayMs?: number;
}

export class ServiceSync {
  readonly state: ServiceState;
  private readonly tables: ServiceTableCache;
  private readonly dataPlane: ServiceDataPlane;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private local: ReadonlyMap<string, LocalPod> = new Map();
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private pendingSave: Promise<unknown> = Promise.resolve();
  private saveTimer: TimerHandle | undefined;
  /** The table most recently applied (undefined before the first). */
  applied: ServiceTable | undefined;

  constructor(private readonly opts: ServiceSyncOptions) {
    const cidr: ServiceCidr = parseServiceCidr(opts.serviceCidr);
    this.tables = new ServiceTableCache({
      node: opts.node,
      serviceCidr: cidr,
      publishAddress: opts.publishAddress,
      ...(opts.advertiseAddress === undefined ? {} : { advertiseAddress: opts.advertiseAddress }),
    });
    this.dataPlane = opts.dataPlane;
    this.clock = opts.clock;
    this.log = opts.logger;
    this.debounceMs = opts.debounceMs ?? 5;
    this.state = new ServiceState(opts.dataDir, opts.logger);
  }

  /** Loads services.json and applies it (names and local endpoints before any hub contact). */
  async load(): Promise<void> {
    if (await this.state.load()) {
      const { services } = this.state.active();
      this.log.info('serving cached services', { services: services.length });
    }
    this.schedule();
  }

  onService(name: string, msg: ServiceMessage | undefined): void {
    if (this.state.onService(name, msg)) this.changed();
  }

  onIndex(msg: ServiceIndexMessage): void {
    if (this.state.onIndex(msg)) this.changed();
  }

  /** The reconciler's view of this node's pods (already deduplicated by the reconciler). */
  setLocal(pods: ReadonlyMap<string, LocalPod>): void {
    this.local = pods;
    this.schedule();
  }

  /** The table for the current state and local view: equal to buildServiceTable's, the same object while nothing changed. */
  table(): ServiceTable {
    return this.tables.build(this.state.active(), this.local);
  }

  /** The data plane's per-service counters (the usage heartbeat carries them to the hub). */
  counters(): ServiceCountersReport {
    return this.dataPlane.serviceCounters();
  }

  /** Applies now (no debounce); resolves once the newest table is applied. */
  flush(): Promise<void> {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    return this.kick();
  }

  /** Resolves when nothing is pending: debounce, apply and save (tests). */
  async idle(): Promise<void> {
    if (this.timer !== undefined) await this.flush();
    while (this.running !== undefined) await this.running;
    this.saveNow();
    await this.pendingSave.catch(() => {});
  }

  /** Stops applying and closes the data plane (listeners, name server; lo addresses stay). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
    this.saveNow();
    await this.pendingSave.catch(() => {});
    await this.dataPlane.close().catch((err: unknown) => this.log.warn('closing the service data plane failed', { error: String(err) }));
  }

  private changed(): void {
    this.schedule();
    if (this.saveTimer === undefined && !this.stopped) {
      this.saveTimer = this.clock.setTimeout(() => this.saveNow(), this.opts.saveDelayMs ?? 10_000);
    }
  }

  /** Writes services.json now if a save is pending (state.save() itself writes only changed content). */
  private saveNow(): void {
    if (this.saveTimer === undefined) return;
    this.clock.clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    this.pendingSave = this.pendingSave
      .then(() => this.state.save())
      .catch((err: unknown) => this.log.error('cannot persist services', { error: String(err) }));
  }

  private schedule(): void {
    if (this.stopped || this.timer !== undefined) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.kick();
    }, this.debounceMs);
  }

  private kick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    const run = this.loop().finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      await this.applyOnce();
    } while (this.again && !this.stopped);
  }

  private async applyOnce(): Promise<void> {
    let table: ServiceTable;
    try {
      table = this.table();
    } catch (err) {
      this.log.error('cannot build the service table', { error: err instanceof Error ? err.message : String(err) });
      return;
    }
    // The cache returns the very table it returned before when nothing in it changed (a local
    // round with the same view, a message with new stamps only): nothing to apply.
    if (table === this.applied) return;
    try {
      await this.dataPlane.apply(table);
      this.applied = table;
    } catch (err) {
      // The contract says apply never rejects; if it does, the next change tries the whole table again.
      this.log.error('service data plane apply failed', { error: err instanceof Error ? err.message : String(err) });
    }
  }
}
