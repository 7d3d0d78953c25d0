import { OrchardError } from '../../protocol/errors.js';
import type { Clock } from '../../protocol/clock.js';
import type { Logger } from '../log.js';
import { AuthStore } from '../security/auth-store.js';
import { bootstrapPartsPrefix, joinParts, openBootstrap, parseManifest } from '../store/etcd/bootstrap.js';
import type { EtcdClient, KeyValue, Watch, WatchEvent } from '../store/etcd/etcd-client.js';
import { decodeStaged, parseStored, readStoreSnapshot, type QueuedOp, type StagedWrite, type StoreSnapshot } from '../store/etcd/etcd-store.js';
import { ReplicaStore } from '../store/replica-store.js';

/**
 * A standby hub's copy of its group's store and credentials, kept from etcd (issue 19: standbys
 * serve reads). The design of kube-apiserver's watch cache with consistent reads
 * (KEP-2340, "consistent reads from cache"):
 *
 * - **Load**: one range of the object space at one etcd revision (readStoreSnapshot: what a new
 *   leader loads), plus `bootstrap/auth.json` at that revision, decoded once into a ReplicaStore
 *   and a read-only AuthStore view.
 * - **Follow**: one watch of the whole group prefix from the next revision. Each watch batch
 *   (etcd never splits one revision's events) is applied in one synchronous step, so a reader sees
 *   whole etcd transactions — whole store transactions, since the leader never splits one across
 *   etcd transactions except through staging: staged writes are held aside and laid over the copy
 *   only when their `meta/commit` appears (as a new leader's load does), so a large store
 *   transaction is seen whole or not at all. A request never re-decodes objects: only changed keys
 *   are parsed, once, as they arrive.
 * - **Read barrier** (`fresh`): before a read, one linearizable (quorum) etcd read of
 *   `meta/revision` and `bootstrap/auth.json` — every store transaction of the leader writes
 *   `meta/revision`, every credential change rewrites `auth.json` — then wait until the watch has
 *   applied the revision of those writes. So a read on a standby sees every write the leader had
 *   acknowledged before the read began (the leader answers a write only once etcd has it), and a
 *   token revoked (acknowledged) before the read is refused: no staleness window. Without a quorum
 *   the barrier fails and the standby refuses to read (as the leader can then write nothing
 *   either). Serializable reads were rejected: a member cut off from the quorum would answer from
 *   its own past, and a revoked token would keep reading.
 * - A watch that ends (member lost, history compacted under it) is replaced by a fresh load after
 *   a second; readers keep the old copy meanwhile and the barrier makes them wait for the new one.
 * - **Invariant**: after every synchronous step, the copy — objects, store revision, staging keys,
 *   the commit record, the election key — is etcd's group prefix at revision `applied` exactly.
 *   `applied` is set by a load (its pinned revision) and advanced by the events applied, never by a
 *   watch response's header: when a watch catches up from far behind, etcd sends the events of at
 *   most 1,000 revisions per response with the header at its *current* revision (mvcc
 *   watchable_store.go, syncWatchers), so the header can run ahead of what was delivered.
 * - **Takeover** (`handoff`): when this hub wins the election, the new leader opens its store from
 *   this copy instead of loading etcd again, once the copy holds this hub's own election record
 *   (the leader key created at the revision it won at, with its id): see `handoff`.
 *
 * A value that does not parse (another hub version's record, a corrupt key) is logged and
 * skipped, never thrown: the standby keeps serving.
 */
export interface StoreMirrorOptions {
  client: Pick<EtcdClient, 'range' | 'txn' | 'watch'>;
  /** The group's key prefix, e.g. `/orchard/`. */
  prefix: string;
  /** The group's bootstrap key (HA secret): opens `bootstrap/auth.json`. */
  key: Buffer;
  clock: Clock;
  log: Logger;
  /** How long `fresh()` waits for the copy to catch up; default 5 s. */
  barrierTimeoutMs?: number;
  /** Wall clock for token expiry; default `new Date()`. */
  now?: () => Date;
  /** The election key (hub/main.ts); default `<prefix>leader`. */
  leaderKey?: string;
}

/** What `handoff` gives: the copy as a store snapshot, or why it cannot be proved current. */
export type Handoff = { snapshot: StoreSnapshot } | { reason: string };

/** Pause before reloading after the store watch ended (review of the takeover change: with 1 s, a watch lost just before an election always cost the fast takeover). */
const WATCH_END_RELOAD_MS = 100;
export class StoreMirror {
  readonly store = new ReplicaStore();
  private authView: AuthStore | undefined;
  /** The etcd revision the copy has applied every event up to. */
  private applied = 0;
  private loaded = false;
  private stopped = false;
  private watch: Watch | undefined;
  private retry: ReturnType<Clock['setTimeout']> | undefined;
  /** Staging keys → their write, for large store transactions not yet committed or applied. */
  private staged = new Map<string, QueuedOp>();
  private waiters: { revision: number; resolve: () => void }[] = [];
  /** The quorum read in flight, and the one queued behind it (quorumTarget). */
  private currentRead: Promise<number> | undefined;
  private queuedRead: Promise<number> | undefined;
  private readonly objPrefix: string;
  private readonly stagePrefix: string;
  private readonly authKey: string;
  private readonly authPartsPrefix: string;
  /** The parts of a split auth.json, by key (all versions etcd holds). */
  private authParts = new Map<string, string>();
  /** `meta/commit` at `applied`: the large store transaction committed and not yet cleared. */
  private commit: string | undefined;
  /** The election key at `applied` (create revision and value), for `handoff`. */
  private leaderRecord: { createRevision: number; value: string } | undefined;
  /** Object keys whose value at `applied` does not parse (left out of the copy). */
  private readonly unparsed = new Set<string>();
  private readonly leaderKey: string;
  /** Numbers the loads: a batch of a watch that a later load replaced is never applied. */
  private generation = 0;
  /** Full loads done (tests, logs). */
  loads = 0;
  /** The load under way (resync), if any: a takeover waits for a first one rather than start a second. */
  private loading: Promise<void> | undefined;

  constructor(private readonly opts: StoreMirrorOptions) {
    this.objPrefix = `${opts.prefix}objects/`;
    this.stagePrefix = `${opts.prefix}staging/`;
    this.authKey = `${opts.prefix}bootstrap/auth.json`;
    this.authPartsPrefix = bootstrapPartsPrefix(opts.prefix, 'auth.json');
    this.leaderKey = opts.leaderKey ?? `${opts.prefix}leader`;
  }

  /** Resolves after the first load (or its failure: it is retried every second until stop). */
  async start(): Promise<void> {
    await this.resync();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry !== undefined) this.opts.clock.clearTimeout(this.retry);
    this.watch?.cancel();
    this.watch = undefined;
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
    this.store.close();
  }

  /** Whether a first load has completed (before that the standby serves no read). */
  get ready(): boolean {
    return this.loaded && !this.stopped;
  }

  /** The etcd revision applied so far. */
  get revision(): number {
    return this.applied;
  }

  /** The group's credentials as of the last applied revision; undefined before the leader stored them. */
  auth(): AuthStore | undefined {
    return this.authView;
  }

  /**
   * The read barrier (class comment): resolves once the copy holds every object and credential
   * write etcd had committed when it was called. ERR_STORE when etcd has no quorum (from the
   * client), ERR_TIMEOUT when the copy does not catch up in time.
   */
  async fresh(): Promise<void> {
    const target = await this.quorumTarget();
    if (this.loaded && this.applied >= target) return;
    const timeoutMs = this.opts.barrierTimeoutMs ?? 5_000;
    await new Promise<void>((resolve, reject) => {
      const timer = this.opts.clock.setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          new OrchardError(
            'ERR_TIMEOUT',
            `this standby's copy of the store did not catch up with etcd within ${timeoutMs} ms (at revision ${this.applied}, etcd at ${target}); retry, or ask the leader`,
          ),
        );
      }, timeoutMs);
      const waiter = {
        revision: target,
        resolve: () => {
          this.opts.clock.clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
    if (this.stopped) throw new OrchardError('ERR_NOT_LEADER', 'this standby stopped serving reads (it is taking over or shutting down)');
  }

  /**
   * The revision the copy must reach: the mod revision of `meta/revision` and `auth.json` as a
   * quorum read sees them. Concurrent callers share reads, so a standby sends etcd at most one
   * such read at a time (plus one queued) however many requests arrive — but never one that was
   * sent before the caller arrived: it could miss a write acknowledged in between.
   */
  private quorumTarget(): Promise<number> {
    if (this.queuedRead !== undefined) return this.queuedRead;
    if (this.currentRead === undefined) return this.sendRead();
    const queued = this.currentRead.then(
      () => this.sendRead(),
      () => this.sendRead(),
    );
    this.queuedRead = queued;
    return queued;
  }

  private sendRead(): Promise<number> {
    this.queuedRead = undefined;
    const read = (async (): Promise<number> => {
      const r = await this.opts.client.txn([], [{ range: { key: `${this.opts.prefix}meta/revision` } }, { range: { key: this.authKey } }]);
      let target = 0;
      for (const range of r.ranges) for (const kv of range?.kvs ?? []) target = Math.max(target, kv.modRevision);
      return target;
    })();
    this.currentRead = read;
    const clear = (): void => {
      if (this.currentRead === read) this.currentRead = undefined;
    };
    void read.then(clear, clear);
    return read;
  }

  /** A load (first or reload) under way, and what it resolves. */
  private resync(): Promise<void> {
    const p = this.load();
    this.loading = p;
    const clear = (): void => {
      if (this.loading === p) this.loading = undefined;
    };
    void p.then(clear, clear);
    return p;
  }

  private async load(): Promise<void> {
    if (this.stopped) return;
    this.watch?.cancel();
    this.watch = undefined;
    const gen = ++this.generation;
    const { client, prefix } = this.opts;
    const startedAt = this.opts.clock.now();
    try {
      const snap = await readStoreSnapshot(client, prefix);
      const [auth, parts, leader] = await Promise.all([
        client.range(this.authKey, { revision: snap.revision }),
        // A large auth.json is a manifest naming parts (store/etcd/bootstrap.ts): keep them to join.
        client.range(this.authPartsPrefix, { prefix: true, revision: snap.revision }),
        client.range(this.leaderKey, { revision: snap.revision }),
      ]);
      if (this.stopped || gen !== this.generation) return;
      this.authParts = new Map(parts.kvs.map((kv) => [kv.key, kv.value.toString('utf8')]));
      this.store.reset(snap.objects, snap.storeRevision);
      // Every staging key, those that do not decode included (key ''): a new leader deletes them.
      // Staged writes a load already laid over the objects stay: their keys are deleted as the leader applies them.
      this.staged = new Map(snap.staged.map((s) => [s.stageKey, s.op]));
      this.commit = snap.commit;
      this.unparsed.clear();
      const lkv = leader.kvs[0];
      this.leaderRecord = lkv === undefined ? undefined : { createRevision: lkv.createRevision, value: lkv.value.toString('utf8') };
      const authKv = auth.kvs[0];
      this.authView = authKv === undefined ? undefined : (this.openAuth(authKv) ?? this.authView);
      this.loaded = true;
      this.loads++;
      this.opts.log.info('standby: copy of the store loaded from etcd', {
        objects: snap.objects.length,
        etcdRevision: snap.revision,
        ms: this.opts.clock.now() - startedAt,
        load: this.loads,
      });
      // The copy is etcd at the load's revision now (class comment), whatever was applied before.
      this.applied = snap.revision;
      this.advance(snap.revision);
      this.watch = client.watch(
        prefix,
        { prefix: true, startRevision: snap.revision + 1 },
        (events, revision) => {
          if (gen === this.generation) this.apply(events, revision);
        },
        (err) => {
          if (gen !== this.generation) return;
          this.opts.log.debug('standby: the etcd watch of the store ended; reloading', { err });
          // Soon: a takeover waits ≤ STANDBY_COPY_WAIT_MS (1 s) for the copy, and a reload after a
          // 1 s pause could never make it (etcd just answered, so this is no hammering).
          this.retryLater(WATCH_END_RELOAD_MS);
        },
      );
    } catch (err) {
      this.opts.log.warn('standby: cannot load the store from etcd; retrying', { err: OrchardError.from(err) });
      this.retryLater();
    }
  }

  /** A failed load is tried again after 1 s; a watch that ended, after WATCH_END_RELOAD_MS. */
  private retryLater(delayMs = 1000): void {
    if (this.stopped || this.retry !== undefined) return;
    this.watch?.cancel();
    this.watch = undefined;
    this.retry = this.opts.clock.setTimeout(() => {
      this.retry = undefined;
      void this.resync();
    }, delayMs);
  }

  /**
   * One watch batch, applied in one synchronous step (class comment). `applied` advances to the
   * batch's last event, not to the response header's revision (class comment: it can run ahead).
   */
  private apply(events: WatchEvent[], _headerRevision: number): void {
    if (this.stopped) return;
    const metaRevision = `${this.opts.prefix}meta/revision`;
    const metaCommit = `${this.opts.prefix}meta/commit`;
    let last = 0;
    for (const e of events) {
      const { key } = e.kv;
      last = Math.max(last, e.kv.modRevision);
      if (key.startsWith(this.objPrefix)) this.applyOp({ key, value: e.type === 'PUT' ? e.kv.value.toString('utf8') : undefined });
      else if (key === metaRevision) {
        if (e.type === 'PUT') this.applyOp({ key, value: e.kv.value.toString('utf8') });
      } else if (key.startsWith(this.stagePrefix)) {
        // One that does not decode is kept as an orphan (key ''): never applied, deleted by a new leader.
        const op = e.type === 'PUT' ? (decodeStaged(e.kv.value.toString('utf8')) ?? { key: '', value: undefined }) : undefined;
        if (op === undefined) this.staged.delete(key);
        else this.staged.set(key, op);
      } else if (key === metaCommit) {
        if (e.type !== 'PUT') {
          this.commit = undefined;
          continue;
        }
        // A large store transaction is committed from here on: its staged writes are its content.
        this.commit = e.kv.value.toString('utf8');
        const mine = `${this.stagePrefix}${this.commit}/`;
        const keys = [...this.staged.keys()].filter((k) => k.startsWith(mine)).sort();
        for (const k of keys) this.applyOp(this.staged.get(k)!);
      } else if (key === this.leaderKey) {
        this.leaderRecord = e.type === 'PUT' ? { createRevision: e.kv.createRevision, value: e.kv.value.toString('utf8') } : undefined;
      } else if (key.startsWith(this.authPartsPrefix)) {
        // Parts come before the manifest that names them (one batch, in order).
        if (e.type === 'PUT') this.authParts.set(key, e.kv.value.toString('utf8'));
        else this.authParts.delete(key);
      } else if (key === this.authKey) {
        if (e.type === 'PUT') this.authView = this.openAuth(e.kv) ?? this.authView;
        else this.authView = undefined;
      }
    }
    this.advance(last);
  }

  /** A write to an object key or `meta/revision`, as the leader made it. */
  private applyOp(op: QueuedOp): void {
    if (op.key === `${this.opts.prefix}meta/revision`) {
      const rev = Number(op.value);
      if (Number.isFinite(rev) && rev > this.store.revision()) this.store.setRevision(rev);
      return;
    }
    if (!op.key.startsWith(this.objPrefix)) return;
    const [kind, ...rest] = op.key.slice(this.objPrefix.length).split('/');
    const name = rest.join('/');
    this.unparsed.delete(op.key);
    if (op.value === undefined) {
      this.store.removeObject(kind ?? '', name);
      return;
    }
    try {
      this.store.putObject(parseStored(op.key, op.value, this.objPrefix));
    } catch (err) {
      // The previous version must not stay served as if current.
      this.store.removeObject(kind ?? '', name);
      this.unparsed.add(op.key);
      this.opts.log.warn('standby: an object in etcd does not parse; not served', { key: op.key, err: OrchardError.from(err) });
    }
  }

  /**
   * The copy for this hub's store once it won the election at etcd revision `wonAt` as `id`
   * (hub/main.ts, leadOnEtcd), instead of a second full load (docs/ha.md "Takeover").
   *
   * Why it is safe: every write of an earlier leader carries its fence (the leader key's create
   * revision), and that key was gone before this hub created its own at `wonAt`; so every write
   * an earlier leader landed has a revision below `wonAt`, and from `wonAt` on only this hub can
   * write the object space, which it does only through the store opened from what this returns.
   * The object space at any revision ≥ `wonAt` before that store's first write is therefore what
   * etcd holds when the store opens. The copy is etcd's prefix at `applied` (class comment); it
   * is taken once it holds this hub's own election record (the leader key with create revision
   * `wonAt` and value `id`): that proves `applied ≥ wonAt` on the history this hub won in, whether
   * the record came from the watch (etcd delivers every event before it, and never splits a
   * revision) or from a reload after it.
   *
   * Waits for a first load under way to end (it started before the win: sooner done than a new
   * load, which would compete with it), then up to `timeoutMs` for the watch to bring that
   * record; resolves `{ reason }` instead when the copy cannot be proved current: its first load
   * failed (a retry pending), the watch ended (compacted past,
   * member lost) and no reload has caught up, the record not seen in time, an object that does
   * not parse (a full load refuses it loudly; the copy only skipped it), or stopped. The caller
   * then loads the store from etcd. Never throws. The copy stays served until `stop()`.
   */
  async handoff(wonAt: number, id: string, timeoutMs: number): Promise<Handoff> {
    const proved = (): boolean => this.loaded && !this.stopped && this.leaderRecord?.createRevision === wonAt && this.leaderRecord.value === id;
    // A first load under way started before this hub won (a standby starts it at launch), so it
    // ends before a load started now would; and a second full load beside it competes with it
    // for etcd and this event loop (issue 19: a restarted hub at 10,000 nodes / 100,000 pods led
    // 43.8 s after the kill with a 15 s lease). So wait for it; a failed one leaves the full load.
    if (!this.loaded && !this.stopped && this.loading !== undefined) await this.loading;
    if (!this.loaded && !this.stopped) return { reason: "the standby's first load of the store had not finished (it failed; retrying)" };
    // Waiters wake when `applied` reaches `wonAt` (advance); past it, waiting would not help.
    if (!proved() && !this.stopped && this.applied < wonAt) {
      await new Promise<void>((resolve) => {
        const timer = this.opts.clock.setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve();
        }, timeoutMs);
        const waiter = {
          revision: wonAt,
          resolve: () => {
            this.opts.clock.clearTimeout(timer);
            resolve();
          },
        };
        this.waiters.push(waiter);
      });
    }
    // From here to the return, synchronous: the copy is read at one revision.
    if (this.stopped) return { reason: 'the standby copy was stopped' };
    if (!this.loaded) return { reason: "the standby's first load of the store had not finished" };
    if (!proved()) {
      const why = this.watch === undefined ? 'its etcd watch had ended and no reload had caught up' : `its watch was at etcd revision ${this.applied}`;
      return { reason: `the standby copy did not show this hub's election (revision ${wonAt}) within ${timeoutMs} ms: ${why}` };
    }
    if (this.unparsed.size > 0) return { reason: `${this.unparsed.size} object(s) in etcd do not parse (the copy left them out)` };
    return { snapshot: this.snapshot() };
  }

  /** The copy as EtcdStore.open takes it: what readStoreSnapshot would read at `applied`. */
  private snapshot(): StoreSnapshot {
    const objects = this.store.objects();
    // As readStoreSnapshot: never below an object's resourceVersion, so fresh ones never repeat one.
    let storeRevision = this.store.revision();
    for (const o of objects) if (o.metadata.resourceVersion > storeRevision) storeRevision = o.metadata.resourceVersion;
    const staged: StagedWrite[] = [...this.staged].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([stageKey, op]) => ({ stageKey, op }));
    const mine = this.commit === undefined ? undefined : `${this.stagePrefix}${this.commit}/`;
    const committed = mine === undefined ? [] : staged.filter((w) => w.stageKey.startsWith(mine) && w.op.key !== '');
    return { revision: this.applied, storeRevision, objects, commit: this.commit, staged, committed, frozen: true };
  }

  private openAuth(kv: KeyValue): AuthStore | undefined {
    try {
      const text = kv.value.toString('utf8');
      const manifest = parseManifest(text);
      const sealed = manifest === undefined ? text : joinParts(this.opts.prefix, 'auth.json', manifest, this.authParts);
      if (sealed === undefined)
        throw new OrchardError('ERR_STORE', `etcd's bootstrap/auth.json names ${manifest!.parts} part(s) this standby does not have whole`);
      return AuthStore.view(openBootstrap(this.opts.key, 'auth.json', sealed), this.opts.now ? { now: this.opts.now } : {});
    } catch (err) {
      this.opts.log.error("standby: cannot open the group's auth.json from etcd; keeping the last one", { err: OrchardError.from(err) });
      return undefined;
    }
  }

  private advance(revision: number): void {
    if (revision > this.applied) this.applied = revision;
    if (this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => w.revision <= this.applied);
    this.waiters = this.waiters.filter((w) => w.revision > this.applied);
    for (const w of ready) w.resolve();
  }
}
