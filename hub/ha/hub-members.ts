import { HubEndpointSchema, type HubEndpoint, type HubListMessage } from '../../protocol/hubs.js';
import type { Clock } from '../../protocol/clock.js';
import type { EtcdClient, KeyValue, Watch } from '../store/etcd/etcd-client.js';
import type { Logger } from '../log.js';
import { epochBaseKey, parseEpochBase } from '../store/etcd/epoch-base.js';

/**
 * Every hub of an etcd group and which one leads, as etcd says (issue 19). Each candidate keeps
 * `<prefix>hubs/<id>` = its advertised addresses (HubEndpoint JSON) alive with its election lease
 * (Election's `member`), and the leader key's value is the leader's id, so:
 * - the leader publishes `list()` to agents (retained `orchard/v1/hubs`, and the join answer);
 * - a standby names `leader()` in its `/healthz` and ERR_NOT_LEADER answers.
 *
 * A leader's epoch is the leader key's create revision plus the group's epoch base (raised after
 * a restore from a backup: store/etcd/epoch-base.ts), so the base key is read and watched too.
 *
 * One range of each at start, then a watch of each from the revision after; a watch that ends
 * (member lost, compaction) is replaced by a fresh range + watch after a second. Values that do
 * not parse are ignored (another hub version's record), never thrown.
 */
export interface HubMembersOptions {
  client: EtcdClient;
  /** The group's key prefix, e.g. `/orchard/`. */
  prefix: string;
  clock: Clock;
  log: Logger;
}

export function memberKey(prefix: string, id: string): string {
  return `${prefix}hubs/${encodeURIComponent(id)}`;
}

export class HubMembers {
  private readonly members = new Map<string, HubEndpoint>();
  /** The leader key: its value (the leader's id) and create revision. */
  private leaderKv: { id: string; term: number } | undefined;
  private epochBase = 0;
  private watches: Watch[] = [];
  private stopped = false;
  private retry: ReturnType<Clock['setTimeout']> | undefined;
  private readonly listeners = new Set<() => void>();
  private lastSignature = '';
  /** Since when every read of the hub list has failed, and etcd's last error; undefined once one worked. */
  private failing: { since: number; error: string } | undefined;

  constructor(private readonly opts: HubMembersOptions) {}

  /** Resolves after the first read (or its failure: the watch loop then keeps trying). */
  async start(): Promise<void> {
    await this.resync();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry !== undefined) this.opts.clock.clearTimeout(this.retry);
    for (const w of this.watches) w.cancel();
    this.watches = [];
  }

  /** Called after every change of the list or the leader; returns the unsubscribe. */
  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** The leader's id, epoch and (when its record is known) addresses. */
  leader(): ({ id: string; epoch: number } & Partial<HubEndpoint>) | undefined {
    const l = this.leaderKv;
    if (l === undefined) return undefined;
    return { ...this.members.get(l.id), id: l.id, epoch: this.epochBase + l.term };
  }

  /**
   * Since when (ms) etcd has not answered this hub's reads of the group, and its last error;
   * undefined while they work. A standby that started while etcd has no quorum knows no leader,
   * and says why with this instead of "an election is under way" (docs/ha.md "Quorum lost").
   */
  unreadable(): { since: number; error: string } | undefined {
    return this.failing;
  }

  /** The hub list agents get: every live hub, the leader first, then by id; undefined before any is known. */
  list(): HubListMessage | undefined {
    const l = this.leaderKv;
    if (l === undefined || !this.members.has(l.id)) return undefined;
    const hubs = [...this.members.values()].sort((a, b) => (a.id === l.id ? -1 : b.id === l.id ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { leader: l.id, epoch: this.epochBase + l.term, hubs };
  }

  private async resync(): Promise<void> {
    if (this.stopped) return;
    for (const w of this.watches) w.cancel();
    this.watches = [];
    const { client, prefix } = this.opts;
    try {
      const all = await client.range(`${prefix}hubs/`, { prefix: true });
      // At the members' revision, so no change falls between these reads and the watches.
      const at = { revision: all.revision };
      const leader = (await client.range(`${prefix}leader`, at)).kvs[0];
      const base = (await client.range(epochBaseKey(prefix), at)).kvs[0];
      if (this.stopped) return;
      this.failing = undefined;
      this.members.clear();
      for (const kv of all.kvs) this.putMember(kv);
      this.leaderKv = leader === undefined ? undefined : { id: leader.value.toString('utf8'), term: leader.createRevision };
      this.epochBase = parseEpochBase(base?.value);
      this.changed();
      const from = Math.max(all.revision, 0) + 1;
      const onEnd = (): void => this.retryLater();
      this.watches.push(
        client.watch(
          `${prefix}hubs/`,
          { prefix: true, startRevision: from },
          (events) => {
            for (const e of events) {
              if (e.type === 'PUT') this.putMember(e.kv);
              else this.members.delete(decodeURIComponent(e.kv.key.slice(`${prefix}hubs/`.length)));
            }
            this.changed();
          },
          onEnd,
        ),
        client.watch(
          `${prefix}leader`,
          { startRevision: from },
          (events) => {
            for (const e of events) {
              this.leaderKv = e.type === 'PUT' ? { id: e.kv.value.toString('utf8'), term: e.kv.createRevision } : undefined;
            }
            this.changed();
          },
          onEnd,
        ),
        client.watch(
          epochBaseKey(prefix),
          { startRevision: from },
          (events) => {
            for (const e of events) this.epochBase = e.type === 'PUT' ? parseEpochBase(e.kv.value) : 0;
            this.changed();
          },
          onEnd,
        ),
      );
    } catch (err) {
      this.opts.log.debug('cannot read the hub list from etcd; retrying', { err });
      this.failing = { since: this.failing?.since ?? this.opts.clock.now(), error: err instanceof Error ? err.message : String(err) };
      this.retryLater();
    }
  }

  private retryLater(): void {
    if (this.stopped || this.retry !== undefined) return;
    this.retry = this.opts.clock.setTimeout(() => {
      this.retry = undefined;
      void this.resync();
    }, 1000);
  }

  private putMember(kv: KeyValue): void {
    let raw: unknown;
    try {
      raw = JSON.parse(kv.value.toString('utf8'));
    } catch {
      return;
    }
    const r = HubEndpointSchema.safeParse(raw);
    if (r.success) this.members.set(r.data.id, r.data);
  }

  private changed(): void {
    // Watches deliver the same state more than once (resyncs, our own re-puts): tell only real changes.
    const sig = JSON.stringify([this.leaderKv, this.epochBase, [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : 1))]);
    if (sig === this.lastSignature) return;
    this.lastSignature = sig;
    for (const cb of this.listeners) {
      try {
        cb();
      } catch (err) {
        this.opts.log.error('hub list listener failed', { err });
      }
    }
  }
}
