import { OrchardError } from '../../protocol/errors.js';
import type { ImagePullProgress } from '../../protocol/objects.js';
import type { Clock, Logger, TimerHandle } from '../clock.js';
import { silentLogger, systemClock } from '../clock.js';
import type { ContainerRuntime, PullPolicy, RegistryAuth } from '../runtime/runtime.js';
import { PullTracker } from './pull-progress.js';

/**
 * Image pulls that never hold up a reconcile pass. `ensure()` answers quickly: `present` (the
 * engine has the image), `pulling` (a pull runs in the background — the caller skips that
 * container for now), or `failed` (the last pull failed; reported once, then the caller's
 * back-off decides when to ask again, which starts a new pull).
 *
 * This is what makes "pull before kill" work on slow links: the hub starts the new pod beside
 * the old one, the old one keeps serving while its replacement's image downloads, and the new
 * container is created only once the image is present.
 *
 * Concurrency: one pull per image at a time (pods sharing an image share the pull); pulls of
 * different images run in parallel. `onSettled` fires when a pull ends (the reconciler runs a
 * pass); `onProgress` at most every `progressEveryMs` while bytes move (the reconciler
 * republishes the observed set with the progress).
 */

export type EnsureResult = { state: 'present' } | { state: 'pulling'; progress: ImagePullProgress } | { state: 'failed'; error: OrchardError };

export interface ImagePullerOptions {
  runtime: ContainerRuntime;
  clock?: Clock;
  logger?: Logger;
  onSettled?: (image: string) => void;
  onProgress?: () => void;
  /** How long ensure() waits for a pull to finish before answering `pulling` (default 1.5 s). */
  quickWaitMs?: number;
  progressEveryMs?: number;
}

interface Pull {
  tracker: PullTracker;
  done: Promise<void>;
  error?: OrchardError;
  finished: boolean;
}

export class ImagePuller {
  private readonly runtime: ContainerRuntime;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly pulls = new Map<string, Pull>();
  private readonly opts: ImagePullerOptions;
  private lastProgress = 0;
  private progressTimer: TimerHandle | undefined;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(opts: ImagePullerOptions) {
    this.opts = opts;
    this.runtime = opts.runtime;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silentLogger;
  }

  /** Never throws; see the class comment for the three answers. */
  async ensure(image: string, policy: PullPolicy, auth?: RegistryAuth): Promise<EnsureResult> {
    let pull = this.pulls.get(image);
    if (pull?.finished) {
      this.pulls.delete(image);
      if (pull.error !== undefined) return { state: 'failed', error: pull.error };
      pull = undefined; // pulled fine: check presence again (GC may have removed it since)
    }
    if (pull === undefined) pull = this.start(image, policy, auth);
    const settled = await this.within(pull.done, this.opts.quickWaitMs ?? 1500);
    if (!settled) return { state: 'pulling', progress: pull.tracker.summary() };
    this.pulls.delete(image);
    return pull.error === undefined ? { state: 'present' } : { state: 'failed', error: pull.error };
  }

  isPulling(image: string): boolean {
    const p = this.pulls.get(image);
    return p !== undefined && !p.finished;
  }

  /** Progress of every pull in flight, by image. */
  progress(): Map<string, ImagePullProgress> {
    const out = new Map<string, ImagePullProgress>();
    for (const [image, p] of this.pulls) if (!p.finished) out.set(image, p.tracker.summary());
    return out;
  }

  /** Aborts pulls in flight (agent shutdown). */
  stop(): void {
    this.stopped = true;
    this.abort.abort();
    if (this.progressTimer !== undefined) this.clock.clearTimeout(this.progressTimer);
  }

  private start(image: string, policy: PullPolicy, auth: RegistryAuth | undefined): Pull {
    const tracker = new PullTracker(image);
    const pull: Pull = { tracker, finished: false, done: Promise.resolve() };
    const opts =
      auth === undefined
        ? { onProgress: (e: Parameters<PullTracker['add']>[0]) => tracker.add(e) && this.progressed() }
        : { auth, onProgress: (e: Parameters<PullTracker['add']>[0]) => tracker.add(e) && this.progressed() };
    const started = this.clock.now();
    pull.done = this.runtime.ensureImage(image, policy, this.abort.signal, opts).then(
      () => {
        pull.finished = true;
        const ms = this.clock.now() - started;
        if (ms > 1000) this.log.info('image pulled', { ms, ...tracker.summary() });
        this.settled(image);
      },
      (err: unknown) => {
        pull.finished = true;
        pull.error = OrchardError.from(err, 'ERR_IMAGE_PULL');
        if (!this.stopped) this.log.warn('image pull failed', { image, error: pull.error.message });
        this.settled(image);
      },
    );
    this.pulls.set(image, pull);
    return pull;
  }

  private settled(image: string): void {
    if (this.stopped) return;
    try {
      this.opts.onSettled?.(image);
    } catch (err) {
      this.log.error('onSettled failed', { error: String(err) });
    }
  }

  /** Throttled: bytes arrive many times a second; the hub needs a glance, not a stream. */
  private progressed(): void {
    if (this.stopped || this.opts.onProgress === undefined || this.progressTimer !== undefined) return;
    const every = this.opts.progressEveryMs ?? 1000;
    const wait = Math.max(0, this.lastProgress + every - this.clock.now());
    this.progressTimer = this.clock.setTimeout(() => {
      this.progressTimer = undefined;
      this.lastProgress = this.clock.now();
      if (!this.stopped) this.opts.onProgress?.();
    }, wait);
  }

  private within(p: Promise<void>, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      let done = false;
      const t = this.clock.setTimeout(() => {
        if (!done) resolve(false);
        done = true;
      }, ms);
      void p.then(() => {
        if (done) return;
        done = true;
        this.clock.clearTimeout(t);
        resolve(true);
      });
    });
  }
}
