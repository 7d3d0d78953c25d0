/**
 * Leader epochs on hub → agent messages (issue 19, docs/design/ha.md "Epochs"). A hub group on
 * etcd stamps its desired sets, service messages and upgrade commands with the leader's epoch,
 * which grows with every new leader. The agent keeps the highest epoch it has seen and drops a
 * message from an older one: that is a deposed leader (paused, partitioned) still talking after
 * another hub took over, and what it sends may be older than what the agent already runs.
 *
 * - A message without an epoch (a single hub on SQLite, an older hub) is taken: there is no
 *   leader to fence, and the generation rule applies as before.
 * - Within one epoch the generation rule is unchanged.
 * Pure: no I/O, no clock. The agent persists `highest` (cache.ts) when `raised` says it changed.
 */
export type EpochVerdict =
  /** Take it; `raised` = the highest epoch seen grew (persist it). */
  | { take: true; raised: boolean }
  /** From an older epoch than `highest`: drop it. */
  | { take: false; highest: number };

export class EpochGate {
  private top: number;
  /** Messages dropped as stale (tests, metrics). */
  stale = 0;

  constructor(initial = 0) {
    this.top = Number.isSafeInteger(initial) && initial > 0 ? initial : 0;
  }

  /** The highest epoch seen so far (0 = none). */
  get highest(): number {
    return this.top;
  }

  /** Judges a message carrying `epoch` (undefined = none) and remembers a newer epoch. */
  check(epoch: number | undefined): EpochVerdict {
    if (epoch === undefined) return { take: true, raised: false };
    if (epoch < this.top) {
      this.stale++;
      return { take: false, highest: this.top };
    }
    if (epoch === this.top) return { take: true, raised: false };
    this.top = epoch;
    return { take: true, raised: true };
  }
}
