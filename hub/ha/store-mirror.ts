import { OrchardError } from '../../protocol/errors.js';
import type { Clock } from '../../protocol/clock.js';
import type { Logger } from '../log.js';
import { AuthStore } from '../security/auth-store.js';
import { bootstrapPartsPrefix, joinParts, openBootstrap, parseManifest } from '../store/etcd/bootstrap.js';
import type { EtcdClient, KeyValue, Watch, WatchEvent } from '../store/etcd/etcd-client.js';
import { decodeStaged, parseStored, readStoreSnapshot, type QueuedOp } from '../store/etcd/etcd-store.js';
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
}

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
  /** Full loads done (tests, logs). */
  loads = 0;

  constructor(private readonly opts: StoreMirrorOptions) {
    this.objPrefix = `${opts.prefix}objects/`;
    this.stagePrefix = `${opts.prefix}staging/`;
    this.authKey = `${opts.prefix}bootstrap/auth.json`;
    this.authPartsPrefix = bootstrapPartsPrefix(opts.prefix, 'auth.json');
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

  private async resync(): Promise<void> {
    if (this.stopped) return;
    this.watch?.cancel();
    this.watch = undefined;
    const { client, prefix } = this.opts;
    try {
      const snap = await readStoreSnapshot(client, prefix);
      const auth = await client.range(this.authKey, { revision: snap.revision });
      // A large auth.json is a manifest naming parts (store/etcd/bootstrap.ts): keep them to join.
      const parts = await client.range(this.authPartsPrefix, { prefix: true, revision: snap.revision });
      this.authParts = new Map(parts.kvs.map((kv) => [kv.key, kv.value.toString('utf8')]));
      if (this.stopped) return;
      this.store.reset(snap.objects, snap.storeRevision);
      this.staged = new Map(snap.staged.filter((s) => s.op.key !== '').map((s) => [s.stageKey, s.op]));
      // Staged writes a load already laid over the objects stay: their keys are deleted as the leader applies them.
      const authKv = auth.kvs[0];
      this.authView = authKv === undefined ? undefined : (this.openAuth(authKv) ?? this.authView);
      this.loaded = true;
      this.loads++;
      this.advance(snap.revision);
      this.watch = client.watch(
        prefix,
        { prefix: true, startRevision: snap.revision + 1 },
        (events, revision) => this.apply(events, revision),
        (err) => {
          this.opts.log.debug('standby: the etcd watch of the store ended; reloading', { err });
          this.retryLater();
        },
      );
    } catch (err) {
      this.opts.log.warn('standby: cannot load the store from etcd; retrying', { err: OrchardError.from(err) });
      this.retryLater();
    }
  }

  private retryLater(): void {
    if (this.stopped || this.retry !== undefined) return;
    this.watch?.cancel();
    this.watch = undefined;
    this.retry = this.opts.clock.setTimeout(() => {
      this.retry = undefined;
      void this.resync();
    }, 1000);
  }

  /** One watch batch, applied in one synchronous step (class comment). */
  private apply(events: WatchEvent[], revision: number): void {
    if (this.stopped) return;
    const metaRevision = `${this.opts.prefix}meta/revision`;
    const metaCommit = `${this.opts.prefix}meta/commit`;
    let last = revision;
    for (const e of events) {
      const { key } = e.kv;
      last = Math.max(last, e.kv.modRevision);
      if (key.startsWith(this.objPrefix)) this.applyOp({ key, value: e.type === 'PUT' ? e.kv.value.toString('utf8') : undefined });
      else if (key === metaRevision) {
        if (e.type === 'PUT') this.applyOp({ key, value: e.kv.value.toString('utf8') });
      } else if (key.startsWith(this.stagePrefix)) {
        const op = e.type === 'PUT' ? decodeStaged(e.kv.value.toString('utf8')) : undefined;
        if (op === undefined) this.staged.delete(key);
        else this.staged.set(key, op);
      } else if (key === metaCommit && e.type === 'PUT') {
        // A large store transaction is committed from here on: its staged writes are its content.
        const mine = `${this.stagePrefix}${e.kv.value.toString('utf8')}/`;
        const keys = [...this.staged.keys()].filter((k) => k.startsWith(mine)).sort();
        for (const k of keys) this.applyOp(this.staged.get(k)!);
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
    if (op.value === undefined) {
      this.store.removeObject(kind ?? '', name);
      return;
    }
    try {
      this.store.putObject(parseStored(op.key, op.value, this.objPrefix));
    } catch (err) {
      this.opts.log.warn('standby: an object in etcd does not parse; not served', { key: op.key, err: OrchardError.from(err) });
    }
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
