import { randomBytes } from 'node:crypto';
import { OrchardError } from '../../../protocol/errors.js';
import type { AnyObject } from '../../../protocol/objects.js';
import { BaseStore } from '../base-store.js';
import type { StoreOptions } from '../store.js';
import { prefixEnd, type Compare, type EtcdClient, type KeyValue, type RangeResult, type TxnOp } from './etcd-client.js';

/**
 * The hub's store on etcd (issue 19): the same synchronous `Store` as SQLite — the whole state
 * in BaseStore's memory cache, reads never leave the process — with etcd as the durable,
 * replicated backend.
 *
 * Writes are **write-behind with a durability barrier**. A store transaction commits to the cache
 * at once (the Store contract is synchronous: controllers and the scheduler run in one event-loop
 * turn) and its writes join an ordered queue that one flusher sends to etcd as transactions.
 * `sync()` resolves once everything committed before the call is in etcd; the web API awaits it
 * before it answers a write, so an acknowledged write is replicated exactly as with SQLite's
 * synchronous commit. What is not yet flushed when a hub dies is what no client was told
 * succeeded (and controllers redo level-triggered work on the new leader).
 *
 * **Fencing.** When a `fence` is given (the election's compare on the leader key), every etcd
 * transaction carries it: a hub that lost leadership (paused, partitioned) has its writes refused
 * by etcd itself; the store then stops flushing for good and reports `onFenced` — the hub must
 * stop acting as leader and reload.
 *
 * Layout under `prefix` (default `/orchard/`): `objects/<Kind>/<name>` = the object's JSON,
 * `meta/revision` = the store revision (written in the same etcd transaction as its objects),
 * `meta/epoch` = the epoch of the leader whose transaction this was (with a fence: every
 * transaction writes it, so etcd's history tells which leader made each revision).
 * Store transactions are sent whole when they fit etcd's limits (`--max-txn-ops`, default 128;
 * `--max-request-bytes`, default 1.5 MiB), and consecutive small ones are merged (later writes to
 * a key win).
 *
 * **A store transaction too large for one etcd transaction** is made atomic with a redo log, so
 * a leader dying halfway can never leave a new leader loading half of it (review finding 9):
 *   1. its writes are *staged* under `staging/<id>/<n>` (invisible to a load), in as many etcd
 *      transactions as needed;
 *   2. one small transaction writes the commit record `meta/commit` = id: from here the store
 *      transaction counts as done;
 *   3. the staged writes are applied to their keys, each chunk deleting its staging keys in the
 *      same etcd transaction; then `meta/commit` is deleted.
 * A load (open) reads objects, staging and `meta/commit` at one revision: staged writes of the
 * committed id are laid over the objects (it completes them in etcd before serving), and staging
 * without a commit is deleted unseen. Every step is idempotent, so a retry after an etcd error
 * starts the sequence again from step 1 with the same id.
 */

export interface EtcdStoreOptions extends StoreOptions {
  client: EtcdClient;
  /** Key prefix; default `/orchard/`. */
  prefix?: string;
  /** The compare every write must carry (leader fencing); none = unfenced (a single hub). */
  fence?: () => Compare;
  /** Called once when etcd refused a write because the fence no longer holds. */
  onFenced?: (err: OrchardError) => void;
  /** Ops per etcd transaction (keep ≤ the cluster's --max-txn-ops); default 120. */
  maxOpsPerTxn?: number;
  /**
   * UTF-8 bytes of keys and values per etcd transaction, and the most one object may have; default
   * 1 MiB, which base64 in the JSON gateway makes ≈ 1.4 MB: under etcd's default
   * --max-request-bytes of 1.5 MiB.
   */
  maxBytesPerTxn?: number;
  /**
   * etcd transactions in flight at once (default 4). Chunks in flight never share a key, so etcd
   * applies every key's writes in their store order whatever order the chunks land in; etcd
   * batches concurrent proposals into one raft round and fsync (scripts/bench/etcd-store-write.ts).
   */
  maxInFlight?: number;
  /** Called when a flush failed and will be retried (etcd unreachable, no quorum). */
  onFlushError?: (err: unknown) => void;
  /** The leader epoch, written as `meta/epoch` with every transaction (the election's create revision plus the epoch base: epoch-base.ts). */
  epoch?: number;
  /**
   * How often the store compacts etcd's history (default 5 min, as kube-apiserver does; 0 = never,
   * e.g. when etcd runs with --auto-compaction-retention). Each pass compacts to the revision the
   * previous pass saw, so one interval of history is always kept. Without it every write stays in
   * etcd's backend forever and a busy fleet fills etcd's quota (2 GiB by default): etcd then
   * refuses every write (alarm NOSPACE) until an operator compacts and defragments.
   */
  compactEveryMs?: number;
  /** Called when a compaction pass failed (it is tried again at the next interval). */
  onCompactError?: (err: unknown) => void;
}

export interface QueuedOp {
  key: string;
  /** undefined = delete. */
  value: string | undefined;
}

/** One committed store transaction (or raw put/delete) waiting for etcd, numbered in commit order. */
interface QueuedBatch {
  ops: QueuedOp[];
  seq: number;
}

/** One etcd transaction built from whole queued batches (merged: a key's last write wins). */
interface Chunk {
  ops: QueuedOp[];
  /** `meta/revision` as these batches leave it (padded), written only if higher than etcd's. */
  revision: string | undefined;
  keys: Set<string>;
  batches: QueuedBatch[];
  firstSeq: number;
}

/**
 * `meta/revision` as stored: zero-padded to 20 digits, so etcd's byte-wise VALUE compare orders
 * revisions numerically (a chunk landing after a later one must not lower it).
 */
export function revisionText(rev: number): string {
  return String(rev).padStart(20, '0');
}

/** A staged write: `P<key>\n<value>` or `D<key>` (keys never hold a newline; no JSON escaping, so no growth). */
export function encodeStaged(o: QueuedOp): string {
  return o.value === undefined ? `D${o.key}` : `P${o.key}\n${o.value}`;
}

export function decodeStaged(text: string): QueuedOp | undefined {
  if (text.startsWith('D')) return { key: text.slice(1), value: undefined };
  const nl = text.indexOf('\n');
  if (!text.startsWith('P') || nl < 0) return undefined;
  return { key: text.slice(1, nl), value: text.slice(nl + 1) };
}

export class EtcdStore extends BaseStore {
  private readonly client: EtcdClient;
  private readonly prefix: string;
  private txnDepth = 0;
  /** Writes of the open store transaction. */
  private pendingOps: QueuedOp[] = [];
  /** Committed store transactions (and raw puts) not yet in etcd, oldest first, numbered in order. */
  private readonly queue: QueuedBatch[] = [];
  /** etcd transactions sent and not answered (key-disjoint). */
  private readonly inflight = new Set<Chunk>();
  /** Chunks etcd did not take, sent again (first) once nothing is in flight. */
  private failed: Chunk[] = [];
  /** A large store transaction is going through staging: nothing else is sent meanwhile. */
  private largeRunning = false;
  private queuedSeq = 0;
  private flushedSeq = 0;
  private fenced: OrchardError | undefined;
  private waiters: { seq: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private backoffMs = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Names this store's staged transactions apart from any other leader's. */
  private readonly stageId = randomBytes(6).toString('hex');
  /** Large store transactions committed through staging (tests, metrics). */
  splitCommitted = 0;
  private compactTimer: ReturnType<typeof setInterval> | undefined;
  /** The etcd revision the previous compaction pass saw (the next pass compacts to it). */
  private compactTo = 0;
  /** Compactions etcd did for this store (tests, the failover bench). */
  compactions = 0;
  /** Since when (ms) every flush has failed, and the last error; undefined while etcd takes writes. */
  private failing: { since: number; error: string } | undefined;

  private constructor(
    private readonly opts: EtcdStoreOptions,
    loaded: { objects: readonly AnyObject[]; revision: number; frozen: boolean },
  ) {
    super(opts);
    this.client = opts.client;
    this.prefix = opts.prefix ?? '/orchard/';
    // Frozen objects are another store's cache entries (a standby's copy): already admitted, and
    // immutable, so they are shared as they are (admit would write into them).
    for (const obj of loaded.objects) this.cache.put(loaded.frozen ? obj : this.cache.admit(obj));
    this.setLoadedRevision(loaded.revision);
    const every = opts.compactEveryMs ?? 300_000;
    if (every > 0) {
      this.compactTimer = setInterval(() => void this.compactPass(), every);
      this.compactTimer.unref();
    }
  }

  /** One compaction pass: compact to what the previous pass saw, remember the revision now. Never concurrent with itself (interval ≫ one call). */
  private async compactPass(): Promise<void> {
    if (this.fenced) return;
    try {
      const now = (await this.client.range(`${this.prefix}meta/revision`, { keysOnly: true })).revision;
      if (this.compactTo > 0 && (await this.client.compact(this.compactTo))) this.compactions++;
      this.compactTo = now;
    } catch (err) {
      this.opts.onCompactError?.(err);
    }
  }

  /**
   * Loads every object under the prefix (one consistent revision of etcd) and opens the store. A
   * large store transaction a dead leader committed but did not finish is completed first; one it
   * had not committed is dropped (see the class comment).
   *
   * `from`: the object space already read, at a revision the caller has proved current (a
   * standby's copy, StoreMirror.handoff: at or after the revision this hub won the election, so no
   * earlier leader can have written after it); it is opened exactly as a load at that revision
   * would be, redo of staged writes and the `meta/revision` check included.
   */
  static async open(opts: EtcdStoreOptions, from?: StoreSnapshot): Promise<EtcdStore> {
    const prefix = opts.prefix ?? '/orchard/';
    try {
      const snap = from ?? (await readStoreSnapshot(opts.client, prefix));
      const redo = snap.committed;
      const applied = new Set(redo);
      const orphans = snap.staged.filter((s) => !applied.has(s)).map((s) => s.stageKey);
      const store = new EtcdStore(opts, { objects: snap.objects, revision: snap.storeRevision, frozen: snap.frozen === true });
      if (snap.commit !== undefined || orphans.length > 0) await store.finishStaged(snap.commit, redo, orphans);
      // Chunks in flight write meta/revision only when it grows (a VALUE compare): that needs the
      // key present and padded. A new prefix, or one an older hub wrote unpadded, gets it now.
      const stored = (await opts.client.range(`${prefix}meta/revision`)).kvs[0]?.value.toString('utf8');
      if (stored === undefined || !/^\d{20}$/.test(stored) || Number(stored) < snap.storeRevision) {
        await store.send([{ put: { key: `${prefix}meta/revision`, value: revisionText(snap.storeRevision) } }]);
      }
      return store;
    } catch (err) {
      if (OrchardError.is(err) && err.message.startsWith('stored ')) throw err;
      if (OrchardError.is(err) && err.code === 'ERR_NOT_LEADER') throw err;
      throw new OrchardError('ERR_STORE', `cannot open the etcd store: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /** At open: completes a committed large transaction in etcd (fenced), drops uncommitted staging. */
  private async finishStaged(commit: string | undefined, redo: { stageKey: string; op: QueuedOp }[], orphans: string[]): Promise<void> {
    await this.applyStaged(redo);
    if (commit !== undefined) await this.send([{ delete: { key: `${this.prefix}meta/commit` } }]);
    const max = this.opts.maxOpsPerTxn ?? 120;
    for (let i = 0; i < orphans.length; i += max) await this.send(orphans.slice(i, i + max).map((key) => ({ delete: { key } })));
  }

  /** One fenced etcd transaction (with `meta/epoch` when an epoch is set); a refusal fences the store and throws. */
  private async send(ops: TxnOp[]): Promise<void> {
    const compare = this.opts.fence ? [this.opts.fence()] : [];
    const stamp: TxnOp[] = this.opts.epoch !== undefined ? [{ put: { key: `${this.prefix}meta/epoch`, value: String(this.opts.epoch) } }] : [];
    const r = await this.client.txn(compare, [...ops, ...stamp]);
    if (!r.succeeded) {
      const err = new OrchardError('ERR_NOT_LEADER', 'this hub lost leadership: etcd refused its write (fenced); it stops writing');
      this.fence(err);
      throw err;
    }
  }

  /** Step 3 of a large transaction: staged writes applied to their keys, each chunk removing its staging keys. */
  private async applyStaged(redo: { stageKey: string; op: QueuedOp }[]): Promise<void> {
    const maxOps = Math.max(1, Math.floor(this.opsPerTxn() / 2));
    const maxBytes = this.opts.maxBytesPerTxn ?? 1_048_576;
    for (let i = 0; i < redo.length;) {
      const ops: TxnOp[] = [];
      let bytes = 0;
      while (i < redo.length) {
        const { stageKey, op } = redo[i]!;
        const sz = opBytes(op) + Buffer.byteLength(stageKey);
        if (ops.length > 0 && (ops.length / 2 >= maxOps || bytes + sz > maxBytes)) break;
        ops.push(op.value === undefined ? { delete: { key: op.key } } : { put: { key: op.key, value: op.value } }, { delete: { key: stageKey } });
        bytes += sz;
        i++;
      }
      await this.send(ops);
    }
  }

  /**
   * Sends one store transaction too large for one etcd transaction, atomically (class comment):
   * stage, commit, apply, clear. Idempotent: after an error it is sent again from the start.
   */
  private async sendLarge(entry: { ops: QueuedOp[]; seq: number }): Promise<void> {
    // The last write of each key, in the order of last writes (as merging does).
    const last = new Map<string, QueuedOp>();
    for (const o of entry.ops) {
      last.delete(o.key);
      last.set(o.key, o);
    }
    const id = `${this.stageId}-${entry.seq}`;
    const redo = [...last.values()].map((op, n) => ({ stageKey: `${this.prefix}staging/${id}/${String(n).padStart(7, '0')}`, op }));
    const maxOps = this.opsPerTxn();
    const maxBytes = this.opts.maxBytesPerTxn ?? 1_048_576;
    for (let i = 0; i < redo.length;) {
      const ops: TxnOp[] = [];
      let bytes = 0;
      while (i < redo.length) {
        const { stageKey, op } = redo[i]!;
        const value = encodeStaged(op);
        const sz = Buffer.byteLength(stageKey) + Buffer.byteLength(value);
        if (ops.length > 0 && (ops.length >= maxOps || bytes + sz > maxBytes)) break;
        ops.push({ put: { key: stageKey, value } });
        bytes += sz;
        i++;
      }
      await this.send(ops);
    }
    await this.send([{ put: { key: `${this.prefix}meta/commit`, value: id } }]);
    this.splitCommitted++;
    await this.applyStaged(redo);
    await this.send([{ delete: { key: `${this.prefix}meta/commit` } }]);
  }

  /** Ops one etcd transaction may carry besides the `meta/epoch` stamp. */
  private opsPerTxn(): number {
    return Math.max(1, (this.opts.maxOpsPerTxn ?? 120) - (this.opts.epoch !== undefined ? 1 : 0));
  }

  /** A committed batch joins the queue. */
  private enqueue(ops: QueuedOp[]): void {
    this.queue.push({ ops, seq: ++this.queuedSeq });
  }

  writeMark(): number {
    return this.queuedSeq;
  }

  /**
   * Resolves when every write committed before this call (or up to `upTo`, a writeMark) is in etcd;
   * rejects once fenced or closed.
   */
  sync(timeoutMs?: number, upTo?: number): Promise<void> {
    if (this.fenced) return Promise.reject(this.fenced);
    const seq = upTo === undefined ? this.queuedSeq : Math.min(upTo, this.queuedSeq);
    if (this.flushedSeq >= seq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const w = { seq, resolve, reject };
      this.waiters.push(w);
      if (timeoutMs !== undefined) {
        const t = setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(
            new OrchardError(
              'ERR_TIMEOUT',
              `etcd did not confirm the write within ${timeoutMs} ms (is a quorum of members up?); it is applied on this hub ` +
                'and reaches etcd if etcd answers before this hub stops leading: its outcome is unknown',
            ),
          );
        }, timeoutMs);
        t.unref();
        const done = w.resolve;
        w.resolve = () => {
          clearTimeout(t);
          done();
        };
      }
    });
  }

  /**
   * Queues a put of a key outside the object space (the hub's encrypted identity files, see
   * bootstrap.ts) behind every write committed so far, fenced like them; `sync()` covers it.
   * A value larger than one etcd request takes is refused here (ERR_PAYLOAD_TOO_LARGE), as
   * persistPut refuses an object: queued, etcd would refuse it on every retry and every write
   * behind it would wait forever.
   */
  putRaw(key: string, value: string): void {
    if (this.fenced) throw this.fenced;
    if (!key.startsWith(this.prefix) || key.startsWith(`${this.prefix}objects/`)) {
      throw new OrchardError('ERR_INTERNAL', `putRaw: ${key} is not a key of this hub group outside its objects`);
    }
    const max = this.opts.maxBytesPerTxn ?? 1_048_576;
    const bytes = Buffer.byteLength(key) + Buffer.byteLength(value);
    if (bytes > max) {
      throw new OrchardError(
        'ERR_PAYLOAD_TOO_LARGE',
        `${key} would be ${bytes} bytes in etcd; one etcd request takes at most ${max} (--max-request-bytes): not written to etcd, so standby hubs do not get this change`,
        { details: { key, bytes, max } },
      );
    }
    this.enqueue([{ key, value }]);
    this.kick();
  }

  /**
   * Queues puts and deletes (value undefined) of keys outside the object space as ONE batch: they
   * reach etcd together, in one etcd transaction or, when larger, through the redo log (class
   * comment), so no reader of the store's keys sees half of them. Each value must fit one request.
   */
  putRawBatch(writes: readonly { key: string; value: string | undefined }[]): void {
    if (this.fenced) throw this.fenced;
    const max = this.opts.maxBytesPerTxn ?? 1_048_576;
    for (const w of writes) {
      if (!w.key.startsWith(this.prefix) || w.key.startsWith(`${this.prefix}objects/`)) {
        throw new OrchardError('ERR_INTERNAL', `putRawBatch: ${w.key} is not a key of this hub group outside its objects`);
      }
      if (w.value !== undefined && Buffer.byteLength(w.key) + Buffer.byteLength(w.value) > max) {
        throw new OrchardError('ERR_PAYLOAD_TOO_LARGE', `putRawBatch: ${w.key} is over ${max} bytes; etcd takes at most that in one request`);
      }
    }
    if (writes.length === 0) return;
    this.enqueue(writes.map((w) => ({ key: w.key, value: w.value })));
    this.kick();
  }

  /** Queues a delete of a key outside the object space (see putRaw), fenced and ordered like every write. */
  deleteRaw(key: string): void {
    if (this.fenced) throw this.fenced;
    if (!key.startsWith(this.prefix) || key.startsWith(`${this.prefix}objects/`)) {
      throw new OrchardError('ERR_INTERNAL', `deleteRaw: ${key} is not a key of this hub group outside its objects`);
    }
    this.enqueue([{ key, value: undefined }]);
    this.kick();
  }

  /**
   * Whether etcd takes this store's writes: undefined when it does (or nothing was written since
   * the last success), else since when every flush has failed (ms) and the last error. A quorum
   * lost, etcd's space quota full (NOSPACE): reads are still served from memory, writes wait.
   */
  get writesFailing(): { since: number; error: string; unflushed: number } | undefined {
    return this.failing === undefined ? undefined : { ...this.failing, unflushed: this.unflushed };
  }

  /** Writes committed to the cache but not yet confirmed by etcd. */
  get unflushed(): number {
    let n = this.queue.reduce((m, b) => m + b.ops.length, 0);
    for (const c of [...this.inflight, ...this.failed]) n += c.batches.reduce((m, b) => m + b.ops.length, 0);
    return n;
  }

  /** Flushes what is queued (bounded wait), then closes. */
  async closeAsync(timeoutMs = 5_000): Promise<void> {
    try {
      await this.sync(timeoutMs);
    } finally {
      this.close();
    }
  }

  // ---- backend hooks ----
  protected atomically<T>(fn: () => T): T {
    const mark = this.pendingOps.length;
    const outermost = this.txnDepth === 0;
    if (outermost && this.fenced) throw this.fenced;
    this.txnDepth++;
    try {
      const r = fn();
      if (outermost && this.pendingOps.length > 0) {
        const ops = this.pendingOps;
        this.pendingOps = [];
        // BaseStore writes the revision last in the outermost transaction: it is ops' last entry.
        this.enqueue(ops);
        this.kick();
      }
      return r;
    } catch (err) {
      this.pendingOps.length = mark;
      throw err;
    } finally {
      this.txnDepth--;
    }
  }

  protected persistPut(obj: AnyObject, json: string): void {
    // One object must fit one etcd request (the gateway sends it base64: 4/3 of its bytes); a larger
    // one would be refused by etcd on every retry and hold back every write queued behind it.
    const max = this.opts.maxBytesPerTxn ?? 1_048_576;
    const bytes = Buffer.byteLength(json);
    if (bytes > max) {
      throw new OrchardError(
        'ERR_PAYLOAD_TOO_LARGE',
        `${obj.kind} "${obj.metadata.name}" is ${bytes} bytes as JSON; the etcd store takes at most ${max} per object`,
      );
    }
    this.pendingOps.push({ key: this.objectKey(obj.kind, obj.metadata.name), value: json });
  }

  protected persistRemove(kind: string, name: string): void {
    this.pendingOps.push({ key: this.objectKey(kind, name), value: undefined });
  }

  protected persistRevision(rev: number): void {
    this.pendingOps.push({ key: `${this.prefix}meta/revision`, value: revisionText(rev) });
  }

  protected closeBackend(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.compactTimer) clearInterval(this.compactTimer);
    const err = new OrchardError('ERR_STORE', 'the store was closed before etcd confirmed the write');
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
  }

  private objectKey(kind: string, name: string): string {
    return `${this.prefix}objects/${kind}/${name}`;
  }

  /** Sends what can go now: whole batches from the head of the queue, up to maxInFlight chunks, never two sharing a key. */
  private kick(): void {
    if (this.fenced || this.retryTimer !== undefined || this.largeRunning) return;
    if (this.failed.length > 0) {
      if (this.inflight.size === 0) this.retryFailed();
      return;
    }
    const max = Math.max(1, this.opts.maxInFlight ?? 4);
    while (this.inflight.size < max && this.queue.length > 0) {
      const busy = new Set<string>();
      for (const c of this.inflight) for (const k of c.keys) busy.add(k);
      const chunk = this.nextChunk(busy);
      if (chunk === 'blocked') return;
      if (chunk === 'large') {
        if (this.inflight.size === 0) this.runLarge();
        return;
      }
      this.queue.splice(0, chunk.batches.length);
      this.inflight.add(chunk);
      this.sendChunk(chunk).then(
        () => {
          this.inflight.delete(chunk);
          this.backoffMs = 0;
          this.failing = undefined;
          this.settle();
          this.kick();
        },
        (err: unknown) => {
          this.inflight.delete(chunk);
          if (this.refused(err)) return;
          this.failed.push(chunk);
          this.noteFailure(err);
          this.kick();
        },
      );
    }
  }

  private async sendChunk(c: Chunk): Promise<void> {
    const ops: TxnOp[] = c.ops.map((o) => (o.value === undefined ? { delete: { key: o.key } } : { put: { key: o.key, value: o.value } }));
    if (c.revision !== undefined) {
      const key = this.revisionKey();
      ops.push({ txn: { compare: [{ key, target: 'VALUE', result: 'LESS', value: c.revision }], success: [{ put: { key, value: c.revision } }] } });
    }
    await this.send(ops);
  }

  /** A store transaction too large for one etcd transaction, alone on the wire (staging, see the class comment). */
  private runLarge(): void {
    const entry = this.queue[0]!;
    this.largeRunning = true;
    this.sendLarge(entry).then(
      () => {
        this.largeRunning = false;
        this.queue.shift();
        this.backoffMs = 0;
        this.failing = undefined;
        this.settle();
        this.kick();
      },
      (err: unknown) => {
        this.largeRunning = false;
        if (this.refused(err)) return;
        this.noteFailure(err);
        this.retryLater();
      },
    );
  }

  /** The failed chunks' batches back at the head of the queue, in order, after a back-off. */
  private retryFailed(): void {
    const failed = this.failed.sort((a, b) => a.firstSeq - b.firstSeq);
    this.failed = [];
    this.queue.unshift(...failed.flatMap((c) => c.batches));
    this.retryLater();
  }

  private retryLater(): void {
    this.backoffMs = Math.min(2_000, this.backoffMs === 0 ? 100 : this.backoffMs * 2);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, this.backoffMs);
    this.retryTimer.unref();
  }

  /** A flush failed (to be retried): /healthz reports the store degraded until one succeeds. */
  private noteFailure(err: unknown): void {
    const error = err instanceof Error ? err.message : String(err);
    this.failing = { since: this.failing?.since ?? Date.now(), error };
    this.opts.onFlushError?.(err);
  }

  /** True when etcd (or fence()) said this hub no longer leads: the store is fenced for good. */
  private refused(err: unknown): boolean {
    if (OrchardError.is(err) && err.code === 'ERR_NOT_LEADER') {
      this.fence(err);
      return true;
    }
    return this.fenced !== undefined;
  }

  /** Everything before the oldest write still queued, in flight or failed is in etcd. */
  private settle(): void {
    let low = this.queue[0]?.seq ?? Infinity;
    for (const c of this.inflight) low = Math.min(low, c.firstSeq);
    for (const c of this.failed) low = Math.min(low, c.firstSeq);
    this.confirm(low === Infinity ? this.queuedSeq : low - 1);
  }

  private revisionKey(): string {
    return `${this.prefix}meta/revision`;
  }

  /**
   * The next etcd transaction: whole queued store transactions from the head merged while they fit
   * (a key written twice keeps its last value) and touch no key of a chunk in flight (`busy`);
   * 'blocked' when the first one touches such a key, 'large' when the first one alone does not
   * fit (sent through staging). `meta/revision` is taken out of the ops (see sendChunk).
   */
  private nextChunk(busy: ReadonlySet<string>): Chunk | 'blocked' | 'large' {
    const maxOps = this.opsPerTxn() - 1; // one op is the nested meta/revision transaction
    const maxBytes = this.opts.maxBytesPerTxn ?? 1_048_576;
    const revKey = this.revisionKey();
    const merged = new Map<string, QueuedOp>();
    let bytes = 0;
    let revision: string | undefined;
    const batches: QueuedBatch[] = [];
    for (const b of this.queue) {
      const keys = new Set<string>();
      for (const o of b.ops) if (o.key !== revKey) keys.add(o.key);
      let conflict = false;
      for (const k of keys) if (busy.has(k)) conflict = true;
      if (conflict) return batches.length === 0 ? 'blocked' : this.chunkOf(merged, revision, batches);
      let newKeys = 0;
      for (const k of keys) if (!merged.has(k)) newKeys++;
      const bBytes = b.ops.reduce((n, o) => n + opBytes(o), 0);
      if (batches.length > 0 && (merged.size + newKeys > maxOps || bytes + bBytes > maxBytes)) break;
      // One store transaction larger than etcd takes at once (a single op always fits: persistPut
      // refuses a larger object).
      if (batches.length === 0 && b.ops.length > 1 && (keys.size > maxOps || bBytes > maxBytes)) return 'large';
      for (const o of b.ops) {
        if (o.key === revKey) {
          revision = o.value;
          continue;
        }
        merged.delete(o.key); // keep the order of last writes
        merged.set(o.key, o);
      }
      bytes += bBytes;
      batches.push(b);
    }
    return this.chunkOf(merged, revision, batches);
  }

  private chunkOf(merged: Map<string, QueuedOp>, revision: string | undefined, batches: QueuedBatch[]): Chunk {
    return { ops: [...merged.values()], revision, keys: new Set(merged.keys()), batches, firstSeq: batches[0]!.seq };
  }

  private confirm(seq: number): void {
    this.flushedSeq = Math.max(this.flushedSeq, seq);
    const ready = this.waiters.filter((w) => w.seq <= this.flushedSeq);
    this.waiters = this.waiters.filter((w) => w.seq > this.flushedSeq);
    for (const w of ready) w.resolve();
  }

  private fence(err: OrchardError): void {
    if (this.fenced) return;
    this.fenced = err;
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    this.opts.onFenced?.(err);
  }
}

/** One staged write of a large store transaction (see EtcdStore): its staging key and the write. */
export interface StagedWrite {
  stageKey: string;
  op: QueuedOp;
}

/**
 * The object space of a hub group as one etcd revision shows it: what EtcdStore.open loads, and
 * what a standby's StoreMirror (hub/ha/store-mirror.ts) starts from. `objects` already include the
 * staged writes of a committed large store transaction (`committed`), as they will be once a leader
 * completes it; `staged` is every staging key (committed or not) with its decoded write, in key
 * order. Objects are sorted by kind, then name (a Deployment's replicas arrive together and share
 * structure in the cache).
 */
export interface StoreSnapshot {
  /** The etcd revision everything was read at. */
  revision: number;
  /** The store's own revision (`meta/revision`, or the highest resourceVersion when larger). */
  storeRevision: number;
  objects: AnyObject[];
  commit: string | undefined;
  staged: StagedWrite[];
  committed: StagedWrite[];
  /** The objects are deep-frozen cache entries of another store (a standby's copy), not fresh parses. */
  frozen?: boolean;
}

/** Keys per range request when reading a whole prefix. */
const RANGE_PAGE = 2000;

export async function readStoreSnapshot(client: Pick<EtcdClient, 'range'>, prefix: string): Promise<StoreSnapshot> {
  const objPrefix = `${prefix}objects/`;
  const stagePrefix = `${prefix}staging/`;
  const first = await client.range(objPrefix, { prefix: true, limit: RANGE_PAGE });
  const pinned = first.revision;
  const byKey = new Map<string, string>();
  for (const kv of await rangeAll(client, objPrefix, pinned, first)) byKey.set(kv.key, kv.value.toString('utf8'));
  const meta = await client.range(`${prefix}meta/revision`, { revision: pinned });
  let metaRev = Number(meta.kvs[0]?.value.toString('utf8') ?? '0');
  const commit = (await client.range(`${prefix}meta/commit`, { revision: pinned })).kvs[0]?.value.toString('utf8');
  const staged: StagedWrite[] = [];
  const committed: StagedWrite[] = [];
  for (const kv of await rangeAll(client, stagePrefix, pinned)) {
    const op = decodeStaged(kv.value.toString('utf8'));
    if (op === undefined) {
      // Not a staged write of this format: never applied; open() deletes it with the orphans.
      staged.push({ stageKey: kv.key, op: { key: '', value: undefined } });
      continue;
    }
    const w = { stageKey: kv.key, op };
    staged.push(w);
    if (commit !== undefined && kv.key.startsWith(`${stagePrefix}${commit}/`)) committed.push(w);
  }
  // The committed large transaction, as it will be once completed: its writes win.
  for (const { op } of committed) {
    if (op.key === `${prefix}meta/revision` && op.value !== undefined) metaRev = Number(op.value);
    else if (op.key.startsWith(objPrefix)) {
      if (op.value === undefined) byKey.delete(op.key);
      else byKey.set(op.key, op.value);
    }
  }
  const objects: AnyObject[] = [];
  let maxRv = 0;
  for (const [key, json] of byKey) {
    const obj = parseStored(key, json, objPrefix);
    objects.push(obj);
    if (obj.metadata.resourceVersion > maxRv) maxRv = obj.metadata.resourceVersion;
  }
  objects.sort((a, b) => (a.kind === b.kind ? (a.metadata.name < b.metadata.name ? -1 : 1) : a.kind < b.kind ? -1 : 1));
  return { revision: pinned, storeRevision: Math.max(Number.isFinite(metaRev) ? metaRev : 0, maxRv), objects, commit, staged, committed };
}

/**
 * Every key under `prefix` at `revision`, page by page (`first` = the first page when already read).
 * Exported for the test that pages through the real etcd and test/helpers/fake-etcd.ts alike.
 */
export async function rangeAll(
  client: Pick<EtcdClient, 'range'>,
  prefix: string,
  revision: number,
  first?: RangeResult,
  pageSize = RANGE_PAGE,
): Promise<KeyValue[]> {
  const out: KeyValue[] = [];
  let page = first ?? (await client.range(prefix, { prefix: true, limit: pageSize, revision }));
  for (;;) {
    out.push(...page.kvs);
    if (!page.more || page.kvs.length === 0) return out;
    const after = `${page.kvs[page.kvs.length - 1]!.key}\u0000`;
    page = await client.range(after, { rangeEnd: prefixEnd(prefix), limit: pageSize, revision });
  }
}

/** What an op adds to an etcd request: key and value in UTF-8 bytes (not UTF-16 code units). */
function opBytes(o: QueuedOp): number {
  return Buffer.byteLength(o.key) + (o.value === undefined ? 0 : Buffer.byteLength(o.value));
}

/** The object stored under `key` (`<objPrefix><Kind>/<name>`); ERR_STORE when it is not JSON or names another object. */
export function parseStored(key: string, json: string, objPrefix: string): AnyObject {
  const [kind, ...rest] = key.slice(objPrefix.length).split('/');
  const name = rest.join('/');
  let obj: AnyObject;
  try {
    obj = JSON.parse(json) as AnyObject;
  } catch (err) {
    throw new OrchardError('ERR_STORE', `stored ${kind} "${name}" is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (obj?.kind !== kind || obj.metadata?.name !== name) {
    throw new OrchardError('ERR_STORE', `stored ${kind} "${name}" holds an object named ${String(obj?.kind)}/${String(obj?.metadata?.name)}`);
  }
  return obj;
}
