import type { Clock } from '../../../protocol/clock.js';
import { OrchardError } from '../../../protocol/errors.js';
import type { Compare, EtcdClient, TxnOp, Watch } from './etcd-client.js';

/**
 * Leader election on etcd with fencing (issue 19), the recipe of etcd's own `concurrency`
 * package: every candidate holds a lease; the leader is whoever created the election key
 * (`create_revision == 0` → put, in one transaction), and the key dies with the leader's lease.
 *
 * - **Epoch**: the key's create revision. It only grows (etcd revisions never go back), so a new
 *   leader always has a larger epoch than every earlier one; agents compare epochs on desired
 *   sets and ignore older ones. A cluster restored from a snapshot goes back to the snapshot's
 *   revision: the hub adds the group's epoch base to what `onElected` gives (epoch-base.ts).
 * - **Fencing**: `fence()` is the compare every leader write must carry (`create_revision(key)
 *   == epoch`). A leader that was paused or partitioned past its lease finds its writes refused
 *   by etcd itself, whatever its own clock believes.
 * - **Local deadline**: the leader also stops on its own at `lastKeepAliveSent + ttl` without a
 *   successful renewal (measured from when the keep-alive was *sent*, so a slow answer never
 *   stretches it), so it stops acting before anyone else can have been elected.
 * - **Own key**: the leader watches its key and steps down when it is deleted, overwritten or
 *   re-created by someone else, even while its lease still renews (`watchOwnKey`).
 * - **Keep-alive period**: TTL/3, but at most 1 s. A dead leader is replaced after at most the
 *   TTL whatever the period; what the period sets is how long the event loop may stall before
 *   the deadline fires: TTL − period (5 s at the default 6 s TTL; 6.7 s at TTL/3 of 10 s). One
 *   small etcd request a second per hub is the cost.
 */

/** The leader lease's TTL by default (`orchard hub --leader-ttl`): docs/ha.md says why 6 s. */
export const DEFAULT_LEADER_TTL_S = 6;

/** How often a candidate renews its lease: TTL/3, at most 1 s, at least 200 ms. */
export function keepAlivePeriodMs(ttlSeconds: number): number {
  return Math.max(200, Math.min(1000, (ttlSeconds * 1000) / 3));
}

export interface ElectionOptions {
  client: EtcdClient;
  /** The election key, e.g. `/orchard/leader`. */
  key: string;
  /** This candidate's identity (the hub's advertised address); stored as the key's value. */
  id: string;
  /** Lease TTL in seconds (etcd's minimum is its election timeout, ≈ 1 s; default DEFAULT_LEADER_TTL_S). */
  ttlSeconds?: number;
  clock: Clock;
  /**
   * A key this candidate holds with its lease while it lives (campaigning or leading): the hub's
   * advertised addresses under `<prefix>hubs/<id>`, so the leader knows every hub and a standby
   * can name the leader's. Put in every campaign transaction; it goes with the lease.
   */
  member?: { key: string; value: string };
  onElected: (epoch: number) => void;
  onLost: (reason: string) => void;
}

export type ElectionState = 'idle' | 'campaigning' | 'leader' | 'stopped';

export class Election {
  private state: ElectionState = 'idle';
  private leaseId = '0';
  private epochValue = 0;
  private watch: Watch | undefined;
  private keepAliveTimer: ReturnType<Clock['setTimeout']> | undefined;
  private deadlineTimer: ReturnType<Clock['setTimeout']> | undefined;
  private retryTimer: ReturnType<Clock['setTimeout']> | undefined;
  private readonly ttl: number;
  private failing: { since: number; error: string } | undefined;

  constructor(private readonly opts: ElectionOptions) {
    this.ttl = opts.ttlSeconds ?? DEFAULT_LEADER_TTL_S;
  }

  get status(): ElectionState {
    return this.state;
  }

  /** The key's create revision while leader (the fence's); 0 otherwise. The hub's epoch adds the group's epoch base (epoch-base.ts). */
  get epoch(): number {
    return this.state === 'leader' ? this.epochValue : 0;
  }

  /**
   * Since when this candidate's lease requests (grant, campaign, keep-alive) have all failed, and
   * the last error, once that has lasted a whole TTL; undefined before, and once one succeeds. A
   * standby whose watches went quiet with etcd's quorum learns from this that it cannot reach
   * the group (standby-server.ts).
   */
  unreachable(): { since: number; error: string } | undefined {
    // One slow keep-alive is not an outage: only a whole TTL of failures is said.
    const f = this.failing;
    return f !== undefined && this.opts.clock.now() - f.since >= this.ttl * 1000 ? f : undefined;
  }

  private failed(err: unknown): void {
    this.failing = { since: this.failing?.since ?? this.opts.clock.now(), error: err instanceof Error ? err.message : String(err) };
  }

  /** The compare a leader's write must carry; throws ERR_NOT_LEADER when this candidate does not lead. */
  fence(): Compare {
    if (this.state !== 'leader') throw new OrchardError('ERR_NOT_LEADER', 'this hub is not the leader: the write was refused');
    return { key: this.opts.key, target: 'CREATE', createRevision: this.epochValue };
  }

  /** Who leads now (the key's value), or undefined; any candidate may ask. */
  async leader(): Promise<{ id: string; epoch: number } | undefined> {
    const kv = await this.opts.client.get(this.opts.key);
    return kv === undefined ? undefined : { id: kv.value.toString('utf8'), epoch: kv.createRevision };
  }

  /** Starts campaigning; keeps doing so (after every loss) until stop(). */
  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'campaigning';
    void this.campaign();
  }

  /** Stops campaigning and gives up leadership at once (revokes the lease: the key goes with it). */
  async stop(): Promise<void> {
    const was = this.state;
    this.state = 'stopped';
    this.clearTimers();
    this.watch?.cancel();
    this.watch = undefined;
    if (this.leaseId !== '0') {
      const id = this.leaseId;
      this.leaseId = '0';
      await this.opts.client.leaseRevoke(id).catch(() => undefined);
    }
    if (was === 'leader') this.opts.onLost('stopped');
  }

  private async campaign(): Promise<void> {
    if (this.state !== 'campaigning') return;
    try {
      if (this.leaseId === '0') this.leaseId = (await this.opts.client.leaseGrant(this.ttl)).id;
      const sentAt = this.opts.clock.now();
      const m = this.opts.member;
      const member: TxnOp[] = m === undefined ? [] : [{ put: { key: m.key, value: m.value, lease: this.leaseId } }];
      const r = await this.opts.client.txn(
        [{ key: this.opts.key, target: 'CREATE', createRevision: 0 }],
        [{ put: { key: this.opts.key, value: this.opts.id, lease: this.leaseId } }, ...member],
        [{ range: { key: this.opts.key } }, ...member],
      );
      this.failing = undefined;
      if (this.state !== 'campaigning') return;
      if (r.succeeded) {
        this.lead(r.revision, sentAt, r.revision);
        return;
      }
      const holder = r.ranges[0]?.kvs[0];
      if (holder !== undefined && holder.lease === this.leaseId) {
        // Our own key from before (a lost answer): we are the leader.
        this.lead(holder.createRevision, sentAt, r.revision);
        return;
      }
      // Someone else leads: keep our lease alive and wait for their key to go.
      this.scheduleKeepAlive();
      this.watch = this.opts.client.watch(
        this.opts.key,
        { startRevision: r.revision + 1 },
        (events) => {
          if (events.some((e) => e.type === 'DELETE')) {
            this.watch?.cancel();
            this.watch = undefined;
            void this.campaign();
          }
        },
        () => {
          this.watch = undefined;
          this.retryLater();
        },
      );
    } catch (err) {
      this.failed(err);
      this.retryLater();
    }
  }

  /**
   * A leader watches its own key: deleted (an operator's `etcdctl del` to force a failover, a
   * lease revoked by hand) or put anew by another candidate, leadership is gone although this
   * lease still renews. Without the watch it would learn only at its next fenced write, and an
   * idle leader might write nothing for long while its broker still hands agents desired sets.
   * A watch that ends is replaced after a check of the key (so a change meanwhile is seen).
   */
  private watchOwnKey(fromRevision: number): void {
    const epoch = this.epochValue;
    const lease = this.leaseId;
    const mine = (): boolean => this.state === 'leader' && this.epochValue === epoch;
    const gone = (why: string): void => {
      if (mine()) this.lose(why);
    };
    /** Why the key is no longer this leader's, or undefined while it is. */
    const lostBecause = (kv: { createRevision: number; lease: string } | undefined): string | undefined =>
      kv === undefined
        ? 'the leader key was deleted in etcd'
        : kv.createRevision !== epoch
          ? 'another candidate holds the leader key'
          : kv.lease !== lease
            ? "the leader key was overwritten in etcd (not under this leader's lease)"
            : undefined;
    const w = this.opts.client.watch(
      this.opts.key,
      { startRevision: fromRevision },
      (events) => {
        for (const e of events) {
          const why = lostBecause(e.type === 'DELETE' ? undefined : e.kv);
          if (why !== undefined) return gone(why);
        }
      },
      () => {
        if (this.watch === w) this.watch = undefined;
        if (!mine()) return;
        this.retryTimer = this.opts.clock.setTimeout(() => {
          this.retryTimer = undefined;
          if (!mine()) return;
          this.opts.client.range(this.opts.key).then(
            (r) => {
              if (!mine()) return;
              const why = lostBecause(r.kvs[0]);
              if (why !== undefined) gone(why);
              else this.watchOwnKey(r.revision + 1);
            },
            // etcd unreachable: the lease deadline decides; look again later (if still leading).
            () => {
              if (mine()) this.watchOwnKey(fromRevision);
            },
          );
        }, 1000);
      },
    );
    this.watch = w;
  }

  /** Leads from now with `epoch` (the key's create revision), the campaign's keep-alive sent at `sentAt`, etcd at `revision`. */
  private lead(epoch: number, sentAt: number, revision: number): void {
    this.epochValue = epoch;
    this.state = 'leader';
    this.armDeadline(sentAt);
    this.scheduleKeepAlive();
    this.watchOwnKey(revision + 1);
    this.opts.onElected(epoch);
  }

  private retryLater(): void {
    if (this.state !== 'campaigning') return;
    this.retryTimer = this.opts.clock.setTimeout(() => void this.campaign(), 500 + Math.floor(Math.random() * 500));
  }

  private scheduleKeepAlive(delayMs = keepAlivePeriodMs(this.ttl)): void {
    if (this.keepAliveTimer !== undefined) this.opts.clock.clearTimeout(this.keepAliveTimer);
    this.keepAliveTimer = this.opts.clock.setTimeout(() => void this.keepAlive(), delayMs);
  }

  private async keepAlive(): Promise<void> {
    this.keepAliveTimer = undefined;
    if (this.state !== 'leader' && this.state !== 'campaigning') return;
    const id = this.leaseId;
    const sentAt = this.opts.clock.now();
    let ttl = -1;
    try {
      // Bounded well inside the TTL: one request hanging on a busy member must not use up the
      // lease (the default 5 s request timeout is most of a 6 s lease); a failure is retried soon.
      ttl = await this.opts.client.leaseKeepAlive(id, Math.max(1_000, Math.floor((this.ttl * 1000) / 3)));
    } catch (err) {
      // Unreachable now: the deadline decides; try again soon.
      this.failed(err);
    }
    if (id !== this.leaseId || (this.state !== 'leader' && this.state !== 'campaigning')) return;
    if (ttl === 0) {
      // The lease is gone (expired while we were paused or cut off): so is leadership.
      this.leaseId = '0';
      if (this.state === 'leader') this.lose('lease expired');
      else {
        this.watch?.cancel();
        this.watch = undefined;
        void this.campaign();
      }
      return;
    }
    if (ttl > 0) this.failing = undefined;
    if (ttl > 0 && this.state === 'leader') this.armDeadline(sentAt);
    // A keep-alive that failed (etcd slow or unreachable, or its request timed out) is tried again
    // in 500 ms, not a whole period later, so several tries fit before the local deadline.
    this.scheduleKeepAlive(ttl < 0 ? Math.min(500, keepAlivePeriodMs(this.ttl)) : undefined);
  }

  private armDeadline(sentAt: number): void {
    if (this.deadlineTimer !== undefined) this.opts.clock.clearTimeout(this.deadlineTimer);
    const left = sentAt + this.ttl * 1000 - this.opts.clock.now();
    this.deadlineTimer = this.opts.clock.setTimeout(() => this.lose('lease not renewed in time'), Math.max(0, left));
  }

  private lose(reason: string): void {
    if (this.state !== 'leader') return;
    this.state = 'campaigning';
    this.epochValue = 0;
    this.clearTimers();
    this.watch?.cancel();
    this.watch = undefined;
    this.opts.onLost(reason);
    // A fresh lease: the old one may still be alive on the server if only we lost touch.
    const old = this.leaseId;
    this.leaseId = '0';
    if (old !== '0') void this.opts.client.leaseRevoke(old).catch(() => undefined);
    this.retryLater();
  }

  private clearTimers(): void {
    for (const t of [this.keepAliveTimer, this.deadlineTimer, this.retryTimer]) if (t !== undefined) this.opts.clock.clearTimeout(t);
    this.keepAliveTimer = this.deadlineTimer = this.retryTimer = undefined;
  }
}
