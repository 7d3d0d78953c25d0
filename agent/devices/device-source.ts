import { watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Clock, Logger, TimerHandle } from '../clock.js';
import { silentLogger, systemClock } from '../clock.js';
import type { DeviceClasses } from './device-classes.js';
import { splitPattern } from './device-classes.js';
import { discoverDevices, type FoundDevice } from './discovery.js';

/**
 * Where the agent's device list comes from (issue 18): `DeviceWatcher` on a real device tree,
 * `StaticDeviceSource` for hollow agents and tests. `onChange` fires only when the list changed.
 */
export interface DeviceSource {
  /** The classes looked for (reported as NodeInfo.deviceClasses, 0 when none found). */
  readonly classes: DeviceClasses;
  /** The latest list (empty before start). */
  current(): readonly FoundDevice[];
  /** First scan, then watching; resolves after the first scan. */
  start(onChange: (devices: readonly FoundDevice[]) => void): Promise<void>;
  stop(): void;
}

/** Rescans are never closer than this, whatever the flag says: discovery must stay cheap on a Pi. */
export const MIN_RESCAN_MS = 5_000;
export const DEFAULT_RESCAN_MS = 30_000;
/** A burst of /dev events (a USB hub with 4 ports) is one rescan. */
const DEBOUNCE_MS = 250;

export interface DeviceWatcherOptions {
  root: string;
  classes: DeviceClasses;
  /** Periodic rescan, the fallback when a watch misses an event or cannot be set (default 30 s, at least 5 s). */
  rescanMs?: number;
  clock?: Clock;
  logger?: Logger;
}

/**
 * Hot-plug without a restart: fs.watch (inotify) on each pattern directory under the root
 * (`/dev`) triggers a debounced rescan, and a periodic rescan catches what a watch misses (a
 * directory that did not exist yet, a filesystem without inotify). No disk writes; scans never
 * overlap.
 */
export class DeviceWatcher implements DeviceSource {
  readonly classes: DeviceClasses;
  private readonly root: string;
  private readonly rescanMs: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private devices: readonly FoundDevice[] = [];
  private json = '[]';
  private watchers: FSWatcher[] = [];
  private timer: TimerHandle | undefined;
  private debounce: TimerHandle | undefined;
  private scanning: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private onChange: (devices: readonly FoundDevice[]) => void = () => {};

  constructor(opts: DeviceWatcherOptions) {
    this.root = opts.root;
    this.classes = opts.classes;
    this.rescanMs = Math.max(MIN_RESCAN_MS, opts.rescanMs ?? DEFAULT_RESCAN_MS);
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silentLogger;
  }

  current(): readonly FoundDevice[] {
    return this.devices;
  }

  async start(onChange: (devices: readonly FoundDevice[]) => void): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.onChange = onChange;
    if (this.classes.length === 0) return;
    await this.scan();
    const dirs = new Set(this.classes.flatMap((c) => c.patterns.map((p) => splitPattern(p).dir)));
    for (const dir of dirs) {
      try {
        const w = watch(join(this.root, dir), { persistent: false }, () => this.soon());
        w.on('error', () => w.close());
        this.watchers.push(w);
      } catch (err) {
        this.log.debug('cannot watch device directory; periodic rescan only', { dir, error: err instanceof Error ? err.message : String(err) });
      }
    }
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    if (this.debounce !== undefined) this.clock.clearTimeout(this.debounce);
    this.timer = undefined;
    this.debounce = undefined;
  }

  /** Resolves when no scan is running (tests). */
  async idle(): Promise<void> {
    while (this.scanning !== undefined) await this.scanning;
  }

  /** A rescan now (single flight: one during a scan runs once more after it). */
  rescan(): Promise<void> {
    if (this.scanning !== undefined) {
      this.again = true;
      return this.scanning;
    }
    return this.scan();
  }

  private soon(): void {
    if (this.stopped || this.debounce !== undefined) return;
    this.debounce = this.clock.setTimeout(() => {
      this.debounce = undefined;
      void this.rescan();
    }, DEBOUNCE_MS);
  }

  private tick(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => {
      void this.rescan().finally(() => this.tick());
    }, this.rescanMs);
  }

  private scan(): Promise<void> {
    this.scanning = (async () => {
      do {
        this.again = false;
        try {
          const found = await discoverDevices(this.root, this.classes);
          const json = JSON.stringify(found);
          if (json !== this.json) {
            this.json = json;
            this.devices = found;
            if (!this.stopped) this.onChange(found);
          }
        } catch (err) {
          this.log.warn('device scan failed', { error: err instanceof Error ? err.message : String(err) });
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }
}

/** A fixed device list that tests (and hollow fleets) change by hand with `set()`. */
export class StaticDeviceSource implements DeviceSource {
  private devices: readonly FoundDevice[];
  private onChange: ((devices: readonly FoundDevice[]) => void) | undefined;

  constructor(
    devices: readonly FoundDevice[] = [],
    readonly classes: DeviceClasses = [],
  ) {
    this.devices = devices;
  }

  current(): readonly FoundDevice[] {
    return this.devices;
  }

  start(onChange: (devices: readonly FoundDevice[]) => void): Promise<void> {
    this.onChange = onChange;
    return Promise.resolve();
  }

  stop(): void {
    this.onChange = undefined;
  }

  /** Replaces the list (a plug or unplug) and tells the agent. */
  set(devices: readonly FoundDevice[]): void {
    this.devices = devices;
    this.onChange?.(devices);
  }
}
