import { OrchardError } from '../../protocol/errors.js';
import {
  prefixEnd,
  type Compare,
  type EtcdClient,
  type KeyValue,
  type RangeResult,
  type TxnOp,
  type TxnResult,
  type Watch,
  type WatchEvent,
} from '../../hub/store/etcd/etcd-client.js';

/**
 * An in-memory etcd for unit tests of what reads and writes the hub's key layout (EtcdStore as a
 * leader, StoreMirror as a standby): MVCC revisions (every put and delete of one `txn` share one
 * revision), ranges at a past revision, paging (`limit`, `more`), and watches that deliver each
 * revision's events in one batch, asynchronously, as etcd's gateway does. Compares are supported
 * for CREATE/MOD/VALUE with EQUAL; leases, auth and compaction are not.
 *
 * test/integration/fake-etcd-range.test.ts checks its ranges and paging against a real member.
 *
 * Test seams: `pauseWatches()` holds every delivery (a lagging watch) until `resumeWatches()`;
 * `endWatches()` ends every watch as a lost member would; `quorum = false` makes every call fail
 * as a cluster without quorum does.
 */
interface Version {
  key: string;
  value: Buffer | undefined;
  createRevision: number;
  modRevision: number;
  version: number;
}

interface FakeWatch {
  from: Buffer;
  to: Buffer;
  next: number;
  onEvents: (events: WatchEvent[], revision: number) => void;
  onEnd: (err: OrchardError) => void;
  cancelled: boolean;
}

export class FakeEtcd {
  private rev = 1;
  /** Every version ever written, in revision order. */
  private readonly log: Version[] = [];
  private readonly latest = new Map<string, Version>();
  private readonly watchers = new Set<FakeWatch>();
  private paused = false;
  quorum = true;
  /** Calls of txn (the read barrier is one per request). */
  txns = 0;

  get revision(): number {
    return this.rev;
  }

  async range(key: string, opts: { prefix?: boolean; rangeEnd?: Buffer; limit?: number; revision?: number; keysOnly?: boolean } = {}): Promise<RangeResult> {
    this.check();
    return this.rangeSync(key, opts);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.range(key)).kvs[0];
  }

  async put(key: string, value: Buffer | string): Promise<number> {
    return (await this.txn([], [{ put: { key, value } }])).revision;
  }

  async delete(key: string, opts: { prefix?: boolean } = {}): Promise<number> {
    return (await this.txn([], [{ delete: { key, ...opts } }])).revision;
  }

  async txn(compare: readonly Compare[], success: readonly TxnOp[], failure: readonly TxnOp[] = []): Promise<TxnResult> {
    this.check();
    this.txns++;
    const ok = this.holds(compare);
    const ops = ok ? success : failure;
    const revision = this.rev + 1;
    const ranges: (RangeResult | undefined)[] = [];
    if (this.applyOps(ops, revision, ranges)) {
      this.rev = revision;
      this.deliverSoon();
    }
    return { succeeded: ok, revision: this.rev, ranges };
  }

  private holds(compare: readonly Compare[]): boolean {
    return compare.every((c) => {
      const v = this.latest.get(c.key);
      const live = v?.value !== undefined ? v : undefined;
      const want = c.result ?? 'EQUAL';
      let cmp: number;
      if (c.target === 'VALUE') {
        // etcd: a VALUE compare on a missing key is false.
        if (live === undefined) return false;
        cmp = Buffer.compare(live.value!, Buffer.from(c.value));
      } else if (c.target === 'CREATE') cmp = (live?.createRevision ?? 0) - c.createRevision;
      else if (c.target === 'MOD') cmp = (live?.modRevision ?? 0) - c.modRevision;
      else cmp = (live?.version ?? 0) - c.version;
      return want === 'EQUAL' ? cmp === 0 : want === 'NOT_EQUAL' ? cmp !== 0 : want === 'LESS' ? cmp < 0 : cmp > 0;
    });
  }

  /**
   * Applies ops (nested transactions included) at `revision`; true when any wrote. As in etcd, a
   * range after a write of the same transaction sees it and names the transaction's revision
   * (test/integration/fake-etcd-range.test.ts checks this against a real member).
   */
  private applyOps(ops: readonly TxnOp[], revision: number, ranges: (RangeResult | undefined)[], txn = { wrote: false }): boolean {
    let wrote = false;
    for (const op of ops) {
      if ('range' in op) {
        const at = txn.wrote ? revision : this.rev;
        ranges.push(this.rangeSync(op.range.key, { prefix: op.range.prefix ?? false, revision: at }, at));
        continue;
      }
      ranges.push(undefined);
      if ('txn' in op) {
        const branch = this.holds(op.txn.compare) ? op.txn.success : (op.txn.failure ?? []);
        if (this.applyOps(branch, revision, [], txn)) wrote = true;
        continue;
      }
      wrote = true;
      txn.wrote = true;
      if ('put' in op) {
        const prev = this.latest.get(op.put.key);
        const value = Buffer.from(op.put.value);
        this.record({
          key: op.put.key,
          value,
          createRevision: prev?.value !== undefined ? prev.createRevision : revision,
          modRevision: revision,
          version: (prev?.value !== undefined ? prev.version : 0) + 1,
        });
      } else {
        const keys = op.delete.prefix
          ? [...this.latest.values()].filter((v) => v.value !== undefined && v.key.startsWith(op.delete.key)).map((v) => v.key)
          : [op.delete.key];
        for (const k of keys) {
          const prev = this.latest.get(k);
          if (prev?.value === undefined) continue;
          this.record({ key: k, value: undefined, createRevision: 0, modRevision: revision, version: 0 });
        }
      }
    }
    return wrote;
  }

  /** EtcdClient.watch, typed from it: the fake cannot drift from the client's signature. */
  watch(...[key, opts, onEvents, onEnd]: Parameters<EtcdClient['watch']>): Watch {
    const w: FakeWatch = {
      from: Buffer.from(key),
      to: opts.prefix ? prefixEnd(key) : Buffer.concat([Buffer.from(key), Buffer.from([0])]),
      next: opts.startRevision ?? this.rev + 1,
      onEvents,
      onEnd,
      cancelled: false,
    };
    this.watchers.add(w);
    this.deliverSoon();
    return {
      ready: Promise.resolve(),
      cancel: () => {
        w.cancelled = true;
        this.watchers.delete(w);
      },
    };
  }

  pauseWatches(): void {
    this.paused = true;
  }

  resumeWatches(): void {
    this.paused = false;
    this.deliverSoon();
  }

  endWatches(): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      w.cancelled = true;
      w.onEnd(new OrchardError('ERR_STORE', 'etcd: watch stream ended (fake)'));
    }
  }

  /** Live watches (tests check that stop() cancels). */
  get watchCount(): number {
    return this.watchers.size;
  }

  private check(): void {
    if (!this.quorum) throw new OrchardError('ERR_STORE', 'etcd: no endpoint answered: etcdserver: request timed out (fake: no quorum)');
  }

  private record(v: Version): void {
    this.log.push(v);
    this.latest.set(v.key, v);
  }

  /** `headerRevision`: the revision the answer names (the store's, or a writing transaction's). */
  private rangeSync(
    key: string,
    opts: { prefix?: boolean; rangeEnd?: Buffer; limit?: number; revision?: number; keysOnly?: boolean },
    headerRevision = this.rev,
  ): RangeResult {
    const at = opts.revision ?? this.rev;
    const from = Buffer.from(key);
    const to = opts.rangeEnd ?? (opts.prefix ? prefixEnd(key) : undefined);
    const state = new Map<string, Version>();
    for (const v of this.log) {
      if (v.modRevision > at) break;
      state.set(v.key, v);
    }
    const hits = [...state.values()]
      .filter((v) => v.value !== undefined && inRange(Buffer.from(v.key), from, to))
      .sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    const limited = opts.limit ? hits.slice(0, opts.limit) : hits;
    return {
      revision: headerRevision,
      kvs: limited.map((v) => toKv(v, opts.keysOnly ?? false)),
      count: hits.length,
      more: limited.length < hits.length,
    };
  }

  private deliverSoon(): void {
    setImmediate(() => this.deliver());
  }

  private deliver(): void {
    if (this.paused) return;
    for (const w of [...this.watchers]) {
      while (!w.cancelled && w.next <= this.rev) {
        const rev = w.next;
        const events: WatchEvent[] = this.log
          .filter((v) => v.modRevision === rev && inRange(Buffer.from(v.key), w.from, w.to))
          .map((v) => ({ type: v.value === undefined ? 'DELETE' : 'PUT', kv: toKv(v, false) }));
        w.next = rev + 1;
        if (events.length > 0) w.onEvents(events, rev);
      }
    }
  }
}

function inRange(k: Buffer, from: Buffer, to: Buffer | undefined): boolean {
  if (to === undefined) return k.equals(from);
  return Buffer.compare(k, from) >= 0 && (to.length === 1 && to[0] === 0 ? true : Buffer.compare(k, to) < 0);
}

function toKv(v: Version, keysOnly: boolean): KeyValue {
  return {
    key: v.key,
    value: keysOnly || v.value === undefined ? Buffer.alloc(0) : Buffer.from(v.value),
    createRevision: v.createRevision,
    modRevision: v.modRevision,
    version: v.version,
    lease: '0',
  };
}
