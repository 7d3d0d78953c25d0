import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { NodeCondition } from '../../protocol/objects.js';
import type { Clock, Logger, TimerHandle } from '../clock.js';
import { silentLogger, systemClock } from '../clock.js';
import type { ContainerRuntime, RuntimeImage } from '../runtime/runtime.js';

/**
 * Image garbage collection under disk pressure. When free space (statfs of the engine's data
 * root, else the agent's data dir) drops below `thresholdPercent`, images the agent itself
 * pulled or ran (recorded in <dataDir>/images.json — it never touches images someone else put
 * on the device) and that nothing needs are removed, oldest first, until free space is back
 * above the threshold plus a margin. Never removed: images of desired pods, images in
 * `keep` (the hub's keepImages: current and previous revisions, so an undo works offline),
 * images any container on the engine uses. The node reports DiskPressure while free space
 * stays below the threshold.
 *
 * SD wear: images.json is written only when a new image is first seen.
 */

export const KNOWN_IMAGES_FILE = 'images.json';
/** Free this much above the threshold, so GC does not run again at the next tick. */
const MARGIN_PERCENT = 5;

/** `busybox` → `busybox:latest`, as the engine lists tags. */
export function normalizeRef(ref: string): string {
  if (ref.includes('@')) return ref;
  const last = ref.slice(ref.lastIndexOf('/') + 1);
  return last.includes(':') ? ref : `${ref}:latest`;
}

export interface GcChoice {
  /** Tags (refs) to remove, in order. */
  remove: string[];
  /** Bytes those removals are expected to free. */
  bytes: number;
}

/** Pure: which known, unneeded images to remove (oldest first) to free `needBytes`. */
export function chooseImagesToRemove(
  images: readonly RuntimeImage[],
  o: { known: ReadonlySet<string>; keep: ReadonlySet<string>; inUse: ReadonlySet<string>; needBytes: number },
): GcChoice {
  const remove: string[] = [];
  let bytes = 0;
  const sorted = [...images].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  for (const img of sorted) {
    if (bytes >= o.needBytes) break;
    const tags = img.tags.map(normalizeRef);
    if (o.inUse.has(img.id) || tags.some((t) => o.keep.has(t) || o.inUse.has(t))) continue;
    const ours = tags.filter((t) => o.known.has(t));
    if (ours.length === 0) continue;
    remove.push(...ours);
    // Only an image whose every tag is ours goes away (others keep the layers alive).
    if (ours.length === tags.length) bytes += img.sizeBytes;
  }
  return { remove, bytes };
}

export interface DiskSpace {
  path: string;
  totalBytes: number;
  freeBytes: number;
}

export async function diskSpace(path: string): Promise<DiskSpace> {
  const s = await fsp.statfs(path);
  return { path, totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
}

export interface ImageGcOptions {
  runtime: ContainerRuntime;
  dataDir: string;
  /** Percent of the disk that must stay free (0 disables GC and DiskPressure). */
  thresholdPercent: number;
  intervalMs?: number;
  clock?: Clock;
  logger?: Logger;
  /** Called when DiskPressure changes (the agent re-sends its status). */
  onPressureChange?: () => void;
  /** Injected for tests. */
  measure?: () => Promise<DiskSpace>;
}

export class ImageGc {
  private readonly known = new Set<string>();
  private keep = new Set<string>();
  private desired = new Set<string>();
  private loaded = false;
  private saving: Promise<void> = Promise.resolve();
  private pressure: NodeCondition | undefined;
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  private readonly clock: Clock;
  private readonly log: Logger;
  /** Images removed by this instance (tests, metrics). */
  removed: string[] = [];

  constructor(private readonly o: ImageGcOptions) {
    this.clock = o.clock ?? systemClock;
    this.log = o.logger ?? silentLogger;
  }

  /** What must stay: the hub's keepImages plus the desired pods' images (which become known). */
  setDesired(images: readonly string[], keep: readonly string[] | undefined): void {
    this.desired = new Set(images.map(normalizeRef));
    if (keep !== undefined) this.keep = new Set(keep.map(normalizeRef));
    const fresh = [...this.desired].filter((i) => !this.known.has(i));
    // GC off: nothing will ever be collected, so nothing needs recording (no disk writes).
    if (fresh.length === 0 || this.o.thresholdPercent <= 0) return;
    for (const i of fresh) this.known.add(i);
    // Serialized: one write at a time, each with the latest set.
    this.saving = this.saving.then(() => this.saveKnown());
  }

  /** Resolves when images.json has been written (tests). */
  flushed(): Promise<void> {
    return this.saving;
  }

  /** The DiskPressure condition to report; undefined when GC is disabled or not measured yet. */
  conditions(): NodeCondition[] {
    return this.pressure === undefined ? [] : [this.pressure];
  }

  start(): void {
    if (this.o.thresholdPercent <= 0 || !this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    await this.running;
    await this.saving;
  }

  /** One check (and collection when needed). Never throws. */
  async check(): Promise<void> {
    try {
      await this.loadKnown();
      let space = await this.measure();
      const threshold = (this.o.thresholdPercent / 100) * space.totalBytes;
      if (space.freeBytes < threshold) {
        const need = threshold + (MARGIN_PERCENT / 100) * space.totalBytes - space.freeBytes;
        await this.collect(need);
        space = await this.measure();
      }
      this.setPressure(space.freeBytes < threshold, space);
    } catch (err) {
      this.log.warn('image gc check failed', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  private async collect(needBytes: number): Promise<void> {
    const { runtime } = this.o;
    if (runtime.listImages === undefined || runtime.removeImage === undefined) return;
    const images = await runtime.listImages();
    const inUse = new Set([...((await runtime.imagesInUse?.()) ?? [])].map(normalizeRef));
    const keep = new Set([...this.keep, ...this.desired]);
    const choice = chooseImagesToRemove(images, { known: this.known, keep, inUse, needBytes });
    for (const ref of choice.remove) {
      try {
        await runtime.removeImage(ref);
        this.removed.push(ref);
        this.log.info('image gc removed image', { image: ref });
      } catch (err) {
        this.log.warn('image gc could not remove image', { image: ref, error: err instanceof Error ? err.message : String(err) });
      }
    }
  }

  private async measure(): Promise<DiskSpace> {
    if (this.o.measure !== undefined) return this.o.measure();
    const root = await this.o.runtime.dataRoot?.();
    if (root !== undefined) {
      try {
        return await diskSpace(root);
      } catch {
        // Not visible from here (another mount namespace, no permission): the agent's disk will do.
      }
    }
    return diskSpace(this.o.dataDir);
  }

  private setPressure(under: boolean, space: DiskSpace): void {
    const status = under ? 'True' : 'False';
    if (this.pressure?.status === status) return;
    const pct = space.totalBytes > 0 ? ((100 * space.freeBytes) / space.totalBytes).toFixed(1) : '?';
    this.pressure = under
      ? {
          type: 'DiskPressure',
          status,
          reason: 'LowDiskSpace',
          message: `${pct}% free on ${space.path} (threshold ${this.o.thresholdPercent}%) after removing unused images`,
        }
      : { type: 'DiskPressure', status, reason: 'EnoughDiskSpace', message: `${pct}% free on ${space.path}` };
    if (under) this.log.warn('disk pressure', { path: space.path, freePercent: pct });
    try {
      this.o.onPressureChange?.();
    } catch (err) {
      this.log.error('onPressureChange failed', { error: String(err) });
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => {
      this.running = this.check().finally(() => {
        this.running = undefined;
        this.schedule(this.o.intervalMs ?? 60_000);
      });
    }, ms);
  }

  private async loadKnown(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    try {
      const list = JSON.parse(await fsp.readFile(join(this.o.dataDir, KNOWN_IMAGES_FILE), 'utf8')) as unknown;
      if (Array.isArray(list)) for (const i of list) if (typeof i === 'string') this.known.add(i);
    } catch {
      // None yet (or unreadable): images seen from now on are known.
    }
  }

  private async saveKnown(): Promise<void> {
    await this.loadKnown();
    const file = join(this.o.dataDir, KNOWN_IMAGES_FILE);
    try {
      await fsp.mkdir(this.o.dataDir, { recursive: true });
      await fsp.writeFile(`${file}.tmp`, JSON.stringify([...this.known].sort()));
      await fsp.rename(`${file}.tmp`, file);
    } catch (err) {
      this.log.warn('cannot record known images', { error: String(err) });
    }
  }
}
