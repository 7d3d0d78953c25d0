import type { Logger } from '../log.js';
import { parseImageReference } from './image-reference.js';
import { fetchImagePlatforms, type PlatformLookup, type RegistryClientOptions } from './registry-client.js';

/**
 * Which platforms an image reference has, cached. The scheduler is pure, so the scheduling
 * controller first `resolve()`s the images of a batch (async, never throws), then reads
 * `known()` synchronously while it schedules. Unknown (no registry in the reference,
 * registry unreachable, auth required, odd manifest) is cached too, shorter, and means "do
 * not filter" — placement must not stop because a registry is down.
 *
 * Tags move, so tag lookups expire after `ttlMs`; digests are immutable and stay until
 * evicted. At most `maxEntries` references are kept (oldest dropped first).
 */

export interface ImagePlatformSource {
  /** Known platforms of `image`, or undefined when unknown or not resolved yet. */
  known(image: string): readonly string[] | undefined;
  /** Resolves every image not cached (or expired); resolves when done; never rejects. */
  resolve(images: Iterable<string>): Promise<void>;
  /** True when some image of `images` would need a registry round trip. */
  needsResolve(images: Iterable<string>): boolean;
}

export interface ResolverOptions extends RegistryClientOptions {
  log?: Logger;
  now?: () => number;
  /** Tag lookups stay fresh this long (default 5 min). */
  ttlMs?: number;
  /** Unknown results are retried after this long (default 30 s). */
  unknownTtlMs?: number;
  maxEntries?: number;
  /** Lookups in flight at once (default 4). */
  concurrency?: number;
  /** Injected lookup (tests); default asks the registry. */
  lookup?: (image: string) => Promise<PlatformLookup>;
}

interface Entry {
  platforms: readonly string[] | undefined;
  expiresAt: number;
}

export class ImagePlatformResolver implements ImagePlatformSource {
  private readonly cache = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly now: () => number;
  /** Registry lookups made (tests, metrics). */
  lookups = 0;

  constructor(private readonly opts: ResolverOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  known(image: string): readonly string[] | undefined {
    return this.cache.get(image)?.platforms;
  }

  needsResolve(images: Iterable<string>): boolean {
    const t = this.now();
    for (const img of images) {
      const e = this.cache.get(img);
      if (e === undefined || e.expiresAt <= t) return true;
    }
    return false;
  }

  async resolve(images: Iterable<string>): Promise<void> {
    const t = this.now();
    const todo = [...new Set(images)].filter((img) => {
      const e = this.cache.get(img);
      return e === undefined || e.expiresAt <= t;
    });
    const limit = Math.max(1, this.opts.concurrency ?? 4);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const img = todo[next++]!;
        await this.resolveOne(img);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, todo.length) }, worker));
  }

  private resolveOne(image: string): Promise<void> {
    const running = this.inFlight.get(image);
    if (running !== undefined) return running;
    const p = this.lookup(image)
      .catch((err: unknown): PlatformLookup => ({ kind: 'unknown', reason: err instanceof Error ? err.message : String(err) }))
      .then((r) => this.store(image, r))
      .finally(() => this.inFlight.delete(image));
    this.inFlight.set(image, p);
    return p;
  }

  private async lookup(image: string): Promise<PlatformLookup> {
    if (this.opts.lookup !== undefined) {
      this.lookups++;
      return this.opts.lookup(image);
    }
    const ref = parseImageReference(image);
    if (ref === undefined) return { kind: 'unknown', reason: 'not a valid image reference' };
    if (ref.registry === undefined) return { kind: 'unknown', reason: 'no registry host in the image reference' };
    this.lookups++;
    return fetchImagePlatforms(ref, this.opts);
  }

  private store(image: string, r: PlatformLookup): void {
    const t = this.now();
    const isDigest = image.includes('@');
    const entry: Entry =
      r.kind === 'known'
        ? { platforms: r.platforms, expiresAt: isDigest ? Number.POSITIVE_INFINITY : t + (this.opts.ttlMs ?? 300_000) }
        : { platforms: undefined, expiresAt: t + (this.opts.unknownTtlMs ?? 30_000) };
    // A refusal (address policy, cross-host redirect) is worth an operator's attention: either an
    // image names a place the hub must not reach, or a local registry needs --registry-allow.
    if (r.kind === 'unknown' && r.refused) this.opts.log?.warn('image platform lookup refused; not filtering by platform', { image, reason: r.reason });
    else if (r.kind === 'unknown') this.opts.log?.debug('image platforms unknown; not filtering by them', { image, reason: r.reason });
    this.cache.delete(image);
    this.cache.set(image, entry);
    const max = this.opts.maxEntries ?? 1000;
    while (this.cache.size > max) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }
}
