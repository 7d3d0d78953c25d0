import type { ImagePullProgress } from '../../protocol/objects.js';
import type { PullEvent } from '../runtime/runtime.js';

/**
 * Pure: folds the engine's pull progress events (one JSON line per layer step, as `docker
 * pull` prints them) into layer and byte totals for the observed set.
 *
 * Events carry a layer id for layer steps ("Pulling fs layer", "Waiting", "Downloading"
 * with current/total bytes, "Download complete", "Extracting", "Pull complete", "Already
 * exists"); events without an id, or whose id is the tag itself ("Pulling from x"), are about
 * the image and are ignored.
 */

interface Layer {
  total: number;
  current: number;
  done: boolean;
}

const DONE = new Set(['Pull complete', 'Already exists']);
const LAYER_STEPS = /^(Pulling fs layer|Waiting|Downloading|Verifying Checksum|Download complete|Extracting|Pull complete|Already exists|Retrying)/;

export class PullTracker {
  private readonly layers = new Map<string, Layer>();

  constructor(readonly image: string) {}

  /** Returns true when the summary changed. */
  add(e: PullEvent): boolean {
    if (e.id === undefined || !LAYER_STEPS.test(e.status)) return false;
    const before = JSON.stringify(this.summary());
    const l = this.layers.get(e.id) ?? { total: 0, current: 0, done: false };
    if (e.status.startsWith('Downloading')) {
      if (e.total !== undefined && e.total > 0) l.total = e.total;
      if (e.current !== undefined) l.current = Math.min(e.current, l.total || e.current);
    } else if (e.status.startsWith('Download complete') || e.status.startsWith('Verifying Checksum')) {
      l.current = l.total;
    } else if (DONE.has(e.status)) {
      l.done = true;
      l.current = l.total;
    }
    this.layers.set(e.id, l);
    return JSON.stringify(this.summary()) !== before;
  }

  summary(): ImagePullProgress {
    let bytesDone = 0;
    let bytesTotal = 0;
    let layersDone = 0;
    for (const l of this.layers.values()) {
      bytesTotal += l.total;
      bytesDone += l.done ? l.total : l.current;
      if (l.done) layersDone++;
    }
    return { image: this.image, layersDone, layersTotal: this.layers.size, bytesDone, bytesTotal };
  }
}
