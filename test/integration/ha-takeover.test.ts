import { describe, expect, it } from 'vitest';
import { StoreMirror } from '../../hub/ha/store-mirror.js';
import { createLogger } from '../../hub/log.js';
import { bootstrapKey } from '../../hub/store/etcd/bootstrap.js';
import { Election } from '../../hub/store/etcd/election.js';
import { EtcdClient, type Watch } from '../../hub/store/etcd/etcd-client.js';
import { EtcdStore, readStoreSnapshot, revisionText } from '../../hub/store/etcd/etcd-store.js';
import { mockEvent, mockNode, mockPod } from '../../hub/store/store-contract.js';
import { systemClock } from '../../protocol/clock.js';
import { OrchardError } from '../../protocol/errors.js';
import type { AnyObject } from '../../protocol/objects.js';
import { waitFor } from '../helpers/http.js';
import { useEtcdCluster } from '../helpers/etcd-suite.js';

/**
 * A new leader takes over its standby copy of the store (issue 19, docs/ha.md "Takeover") on a
 * real etcd member, with the hub's own parts in one process: Election (as `orchard hub` campaigns),
 * StoreMirror (a standby's copy) and EtcdStore (the leader's store, fenced). What must hold: the
 * copy is taken only once it holds the revision this hub won at, and the store it opens equals
 * what etcd holds — objects, store revision, a dead leader's committed large transaction — so the
 * new leader never writes from an older state; when the copy cannot be proved current, the store
 * is loaded from etcd.
 */

const cluster = useEtcdCluster();
const log = createLogger('hub', 'silent');
let seq = 0;

/** The mirror's client: its watch deliveries can be held (a lagging watch), its watch ended, its ranges refused. */
class MirrorClient {
  held = false;
  refuseRanges = false;
  private queue: (() => void)[] = [];
  private last: { watch: Watch; onEnd: (err: OrchardError) => void } | undefined;

  constructor(private readonly real: EtcdClient) {}

  range: EtcdClient['range'] = (...args) => {
    if (this.refuseRanges) return Promise.reject(new OrchardError('ERR_STORE', 'etcd: no endpoint answered (test: member unreachable)'));
    return this.real.range(...args);
  };

  txn: EtcdClient['txn'] = (...args) => this.real.txn(...args);

  watch: EtcdClient['watch'] = (key, opts, onEvents, onEnd) => {
    const watch = this.real.watch(
      key,
      opts,
      (events, revision) => {
        if (this.held) this.queue.push(() => onEvents(events, revision));
        else onEvents(events, revision);
      },
      onEnd,
    );
    this.last = { watch, onEnd };
    return watch;
  };

  release(): void {
    this.held = false;
    for (const deliver of this.queue.splice(0)) deliver();
  }

  /** Ends the current watch as a lost member would. */
  endWatch(): void {
    const last = this.last;
    this.last = undefined;
    last?.watch.cancel();
    last?.onEnd(new OrchardError('ERR_STORE', 'etcd: watch stream ended (test)'));
  }
}

/** One hub of a group, in process: its election and, while it waits, its standby copy. */
class TestHub {
  readonly client = new EtcdClient({ endpoints: cluster.etcd.endpoints });
  readonly mirrorClient = new MirrorClient(this.client);
  readonly election: Election;
  readonly mirror: StoreMirror;
  wonAt: Promise<number>;

  constructor(
    readonly prefix: string,
    readonly id: string,
  ) {
    let won!: (rev: number) => void;
    this.wonAt = new Promise((resolve) => (won = resolve));
    this.election = new Election({
      client: this.client,
      key: `${prefix}leader`,
      id,
      ttlSeconds: 5,
      clock: systemClock,
      onElected: (rev) => won(rev),
      onLost: () => undefined,
    });
    this.mirror = new StoreMirror({ client: this.mirrorClient, prefix, key: bootstrapKey('takeover-test-secret-0123', prefix), clock: systemClock, log });
  }

  async start(): Promise<void> {
    this.election.start();
    await this.mirror.start();
  }

  /** The leader's store, fenced with this hub's election (as leadOnEtcd opens it). */
  open(wonAt: number, from?: Parameters<typeof EtcdStore.open>[1], client: EtcdClient = this.client): Promise<EtcdStore> {
    return EtcdStore.open({ client, prefix: this.prefix, fence: () => this.election.fence(), epoch: wonAt, compactEveryMs: 0, maxOpsPerTxn: 10 }, from);
  }

  async close(): Promise<void> {
    this.mirror.stop();
    await this.election.stop();
    this.client.close();
  }
}

/** Every object etcd holds under the prefix, and its store revision, read at one revision. */
async function etcdState(prefix: string): Promise<{ objects: AnyObject[]; storeRevision: number; staging: number; commit: string | undefined }> {
  const snap = await readStoreSnapshot(cluster.client, prefix);
  return { objects: sortObjects(snap.objects), storeRevision: snap.storeRevision, staging: snap.staged.length, commit: snap.commit };
}

function storeObjects(store: EtcdStore): AnyObject[] {
  return sortObjects((['Node', 'Pod', 'Event', 'Deployment'] as const).flatMap((k) => store.list(k) as AnyObject[]));
}

function sortObjects(objects: readonly AnyObject[]): AnyObject[] {
  const key = (o: AnyObject): string => `${o.kind}/${o.metadata.name}`;
  return [...objects].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

describe('a new leader takes over its standby copy of the store', () => {
  it('a copy behind etcd at takeover (writes its watch has not delivered) is taken only once it holds the revision won at, and the store ends equal to etcd', async () => {
    const prefix = `/takeover-${++seq}/`;
    const a = new TestHub(prefix, 'a');
    await a.start();
    const wonA = await a.wonAt;
    const storeA = await a.open(wonA);
    storeA.create(mockNode('n1'));
    storeA.transaction(() => {
      for (let i = 0; i < 5; i++) storeA.create(mockPod(`web-${i}`, { nodeName: 'n1', owner: 'web' }));
    });
    await storeA.sync(5_000);

    const b = new TestHub(prefix, 'b');
    await b.start();
    expect(b.election.status).toBe('campaigning');
    await waitFor('b holds the first writes', () => b.mirror.store.count('Pod') === 5, 5_000, 20);

    // The copy falls behind: its watch delivers nothing while the leader writes on.
    b.mirrorClient.held = true;
    const p2 = storeA.get('Pod', 'web-2')!;
    storeA.update({ ...structuredClone(p2), status: { ...p2.status, phase: 'Running' } });
    storeA.delete('Pod', 'web-4');
    storeA.create(mockPod('late', { nodeName: 'n1' }));
    storeA.create(mockEvent('e1'));
    await storeA.sync(5_000);
    const aRevision = storeA.revision();
    // A steps down (its lease revoked, as a graceful stop does; a kill -9 differs only in waiting for the lease).
    storeA.close();
    await a.close();
    const wonB = await b.wonAt;
    expect(wonB).toBeGreaterThan(wonA);
    expect(b.mirror.store.count('Pod')).toBe(5); // still the old copy

    let settled = false;
    const handing = b.mirror.handoff(wonB, 'b', 10_000).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false); // the copy has not shown b's election yet: no takeover from it
    b.mirrorClient.release();
    const handed = await handing;
    if (!('snapshot' in handed)) throw new Error(`expected the copy, got: ${handed.reason}`);
    expect(handed.snapshot.revision).toBeGreaterThanOrEqual(wonB);
    expect(b.mirror.loads).toBe(1); // the copy itself, not a reload
    b.mirror.stop();

    const storeB = await b.open(wonB, handed.snapshot);
    const etcd = await etcdState(prefix);
    expect(storeObjects(storeB)).toEqual(etcd.objects);
    expect(storeB.revision()).toBe(aRevision);
    expect(storeB.revision()).toBe(etcd.storeRevision);
    expect(storeB.get('Pod', 'web-2')?.status.phase).toBe('Running');
    expect(storeB.get('Pod', 'web-4')).toBeUndefined();

    // B writes from etcd's state, fenced: an update based on A's last version goes through.
    const p2b = storeB.get('Pod', 'web-2')!;
    storeB.update({ ...structuredClone(p2b), status: { ...p2b.status, phase: 'Succeeded' } });
    storeB.create(mockPod('after', { nodeName: 'n1' }));
    await storeB.sync(5_000);
    const after = await etcdState(prefix);
    expect(storeObjects(storeB)).toEqual(after.objects);
    expect(after.storeRevision).toBe(aRevision + 2);
    expect((await cluster.client.get(`${prefix}meta/epoch`))?.value.toString()).toBe(String(wonB));
    storeB.close();
    await b.close();
  }, 60_000);

  it('a leader dead after committing a large store transaction: the copy holds it whole, and the new leader completes it in etcd (fenced) before serving', async () => {
    const prefix = `/takeover-${++seq}/`;
    const a = new TestHub(prefix, 'a');
    await a.start();
    const wonA = await a.wonAt;
    // A's store writes through a client that goes dark right after the commit record.
    const dark = new EtcdClient({ endpoints: cluster.etcd.endpoints });
    const txn = dark.txn.bind(dark);
    let committed = false;
    dark.txn = async (...args: Parameters<EtcdClient['txn']>) => {
      if (committed) throw new Error('connection refused (leader A is gone)');
      const r = await txn(...args);
      if (JSON.stringify(args[1]).includes('meta/commit')) committed = true;
      return r;
    };
    const storeA = await a.open(wonA, undefined, dark);
    storeA.create(mockPod('before'));
    await storeA.sync(5_000);
    const b = new TestHub(prefix, 'b');
    await b.start();

    storeA.transaction(() => {
      for (let i = 0; i < 30; i++) storeA.create(mockPod(`y-${String(i).padStart(2, '0')}`));
      storeA.delete('Pod', 'before');
    });
    await expect(storeA.sync(1_500)).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    expect(committed).toBe(true);
    storeA.close();
    dark.close();
    const staged = await etcdState(prefix);
    expect(staged.commit).toBeDefined();
    expect(staged.staging).toBe(32); // 30 pods, a delete, the revision
    await a.close();
    const wonB = await b.wonAt;

    const handed = await b.mirror.handoff(wonB, 'b', 10_000);
    if (!('snapshot' in handed)) throw new Error(`expected the copy, got: ${handed.reason}`);
    expect(handed.snapshot.commit).toBe(staged.commit);
    expect(handed.snapshot.committed).toHaveLength(32);
    expect(b.mirror.loads).toBe(1);
    b.mirror.stop();
    const storeB = await b.open(wonB, handed.snapshot);
    expect(storeB.count('Pod')).toBe(30);
    expect(storeB.get('Pod', 'before')).toBeUndefined();
    expect(storeB.revision()).toBe(32);
    // etcd holds it plainly now, written under B's fence and epoch.
    const etcd = await etcdState(prefix);
    expect(etcd.staging).toBe(0);
    expect(etcd.commit).toBeUndefined();
    expect(storeObjects(storeB)).toEqual(etcd.objects);
    expect((await cluster.client.get(`${prefix}meta/revision`))?.value.toString()).toBe(revisionText(32));
    expect((await cluster.client.get(`${prefix}meta/epoch`))?.value.toString()).toBe(String(wonB));
    storeB.close();
    await b.close();
  }, 60_000);

  it('a copy that cannot be proved current (its watch ended, no reload got through) is not used: the store is loaded from etcd', async () => {
    const prefix = `/takeover-${++seq}/`;
    const a = new TestHub(prefix, 'a');
    await a.start();
    const wonA = await a.wonAt;
    const storeA = await a.open(wonA);
    storeA.create(mockPod('p1'));
    await storeA.sync(5_000);
    const b = new TestHub(prefix, 'b');
    await b.start();
    await waitFor('b holds p1', () => b.mirror.store.count('Pod') === 1, 5_000, 20);

    // B's watch ends and its reloads fail (the member it reaches is cut off); the leader writes on.
    b.mirrorClient.refuseRanges = true;
    b.mirrorClient.endWatch();
    storeA.create(mockPod('p2'));
    storeA.delete('Pod', 'p1');
    await storeA.sync(5_000);
    // ...and compacts its history past what the copy applied (a new watch from there would be refused).
    const now = (await cluster.client.range(`${prefix}meta/revision`)).revision;
    await cluster.client.compact(now);
    storeA.close();
    await a.close();
    const wonB = await b.wonAt;

    const handed = await b.mirror.handoff(wonB, 'b', 500);
    expect('reason' in handed && handed.reason).toMatch(/watch had ended/);
    b.mirror.stop();
    const storeB = await b.open(wonB, 'snapshot' in handed ? handed.snapshot : undefined);
    expect(storeB.list('Pod').map((p) => p.metadata.name)).toEqual(['p2']);
    expect(storeObjects(storeB)).toEqual((await etcdState(prefix)).objects);
    storeB.close();
    await b.close();
  }, 60_000);

  it('a copy that holds another election than the one this hub won (a stale or foreign record) is not used', async () => {
    const prefix = `/takeover-${++seq}/`;
    const b = new TestHub(prefix, 'b');
    await b.start();
    const wonB = await b.wonAt;
    await waitFor('the copy shows b leading', async () => (await b.mirror.handoff(wonB, 'b', 50).then((h) => 'snapshot' in h)) === true, 5_000, 50);
    // Asked for an election it did not win (another revision, or another id): the copy cannot prove it.
    const wrongRevision = await b.mirror.handoff(wonB + 1, 'b', 200);
    expect('reason' in wrongRevision && wrongRevision.reason).toMatch(/did not show this hub's election/);
    const wrongId = await b.mirror.handoff(wonB, 'c', 200);
    expect('reason' in wrongId && wrongId.reason).toMatch(/did not show this hub's election/);
    await b.close();
  }, 30_000);
});
