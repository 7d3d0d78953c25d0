import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../protocol/clock.js';
import { OrchardError } from '../../protocol/errors.js';
import { FakeEtcd } from '../../test/helpers/fake-etcd.js';
import { createLogger } from '../log.js';
import { AuthStore } from '../security/auth-store.js';
import { type BootstrapShapes, bootstrapKey, identityMirror, sealBootstrap } from '../store/etcd/bootstrap.js';
import type { EtcdClient } from '../store/etcd/etcd-client.js';
import { EtcdStore, encodeStaged, readStoreSnapshot } from '../store/etcd/etcd-store.js';
import { mockEvent, mockNode, mockPod } from '../store/store-contract.js';
import { StoreMirror } from './store-mirror.js';

/**
 * A standby's copy of the store follows what a leader's EtcdStore writes, through the same key
 * layout, on an in-memory etcd: whole store transactions (large ones through staging included),
 * the read barrier, credentials, and reloads after a lost watch.
 */

const PREFIX = '/orchard/';
const KEY = bootstrapKey('store-mirror-test-secret-0123', PREFIX);
const log = createLogger('hub', 'silent');
const names = (objs: readonly { metadata: { name: string } }[]): string[] => objs.map((o) => o.metadata.name);

describe('StoreMirror', () => {
  let etcd: FakeEtcd;
  let leader: EtcdStore;
  let mirror: StoreMirror;
  let dir: string;

  const openLeader = (maxOpsPerTxn = 120): Promise<EtcdStore> =>
    EtcdStore.open({ client: etcd as unknown as EtcdClient, prefix: PREFIX, compactEveryMs: 0, maxOpsPerTxn });
  const startMirror = async (barrierTimeoutMs = 2_000): Promise<StoreMirror> => {
    const m = new StoreMirror({ client: etcd, prefix: PREFIX, key: KEY, clock: systemClock, log, barrierTimeoutMs });
    await m.start();
    return m;
  };
  /** The leader's credentials, as its identityMirror stores them in etcd. */
  const authStore = (): AuthStore =>
    AuthStore.open(dir, {
      caFingerprint: 'a'.repeat(64),
      onPersist: (file, content) => void etcd.put(`${PREFIX}bootstrap/${file}`, sealBootstrap(KEY, file, content)),
    });

  beforeEach(async () => {
    etcd = new FakeEtcd();
    dir = mkdtempSync(join(tmpdir(), 'orchard-mirror-'));
    leader = await openLeader();
  });
  afterEach(() => {
    mirror?.stop();
    leader.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads what etcd holds and follows each write, as the leader sees it', async () => {
    leader.create(mockNode('n1'));
    leader.transaction(() => {
      for (let i = 0; i < 5; i++) leader.create(mockPod(`web-${i}`, { nodeName: 'n1', owner: 'web' }));
    });
    await leader.sync();
    mirror = await startMirror();
    expect(mirror.store.list('Pod')).toEqual(leader.list('Pod'));
    expect(mirror.store.revision()).toBe(leader.revision());

    const p = leader.get('Pod', 'web-2')!;
    leader.update({ ...structuredClone(p), status: { ...p.status, phase: 'Running' } });
    leader.delete('Pod', 'web-4');
    leader.create(mockEvent('e1'));
    await leader.sync();
    await mirror.fresh();
    expect(mirror.store.list('Pod')).toEqual(leader.list('Pod'));
    expect(mirror.store.list('Pod', { nodeName: 'n1' })).toEqual(leader.list('Pod', { nodeName: 'n1' }));
    expect(mirror.store.list('Event')).toEqual(leader.list('Event'));
    expect(mirror.store.revision()).toBe(leader.revision());
    expect(mirror.loads).toBe(1);
  });

  it('refuses writes through the Store interface', async () => {
    mirror = await startMirror();
    const code = (fn: () => unknown): string => {
      try {
        fn();
        return 'no error';
      } catch (err) {
        return OrchardError.is(err) ? err.code : 'other';
      }
    };
    expect(code(() => mirror.store.create(mockNode('n9')))).toBe('ERR_NOT_LEADER');
    expect(code(() => mirror.store.delete('Node', 'n9'))).toBe('ERR_NOT_LEADER');
    expect(mirror.store.get('Node', 'n9')).toBeUndefined();
  });

  it('fresh() waits until the copy has every write etcd had when it was called', async () => {
    mirror = await startMirror();
    etcd.pauseWatches(); // a lagging watch
    leader.create(mockPod('late'));
    await leader.sync();
    let done = false;
    const barrier = mirror.fresh().then(() => (done = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    expect(mirror.store.get('Pod', 'late')).toBeUndefined();
    etcd.resumeWatches();
    await barrier;
    expect(mirror.store.get('Pod', 'late')?.metadata.name).toBe('late');
  });

  it('concurrent reads share quorum reads: one in flight and one queued, never one sent before the caller came', async () => {
    mirror = await startMirror();
    const before = etcd.txns;
    await Promise.all(Array.from({ length: 50 }, () => mirror.fresh()));
    expect(etcd.txns - before).toBeLessThanOrEqual(2);
    // A write acknowledged while a read is in flight is seen by a caller that came after it.
    const first = mirror.fresh();
    leader.create(mockPod('during'));
    await leader.sync();
    await mirror.fresh();
    await first;
    expect(mirror.store.get('Pod', 'during')?.metadata.name).toBe('during');
  });

  it('fresh() fails with ERR_TIMEOUT when the copy does not catch up, and with ERR_STORE without a quorum', async () => {
    mirror = await startMirror(100);
    etcd.pauseWatches();
    leader.create(mockPod('late'));
    await leader.sync();
    await expect(mirror.fresh()).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    etcd.resumeWatches();
    await mirror.fresh();
    etcd.quorum = false;
    await expect(mirror.fresh()).rejects.toMatchObject({ code: 'ERR_STORE' });
  });

  it('a store transaction too large for one etcd transaction is seen whole or not at all', async () => {
    leader.close();
    leader = await openLeader(4); // staging for anything over 4 keys
    mirror = await startMirror();
    const seen: number[] = [];
    // Sample the copy after every watch batch: never a part of the 12 pods.
    const sample = setInterval(() => seen.push(mirror.store.count('Pod')), 0);
    leader.transaction(() => {
      for (let i = 0; i < 12; i++) leader.create(mockPod(`big-${String(i).padStart(2, '0')}`));
    });
    await leader.sync();
    expect(leader.splitCommitted).toBe(1);
    await mirror.fresh();
    clearInterval(sample);
    expect(mirror.store.list('Pod')).toEqual(leader.list('Pod'));
    expect(seen.every((n) => n === 0 || n === 12)).toBe(true);
  });

  it('staged writes count from their commit record, whether loaded or watched', async () => {
    const json = (name: string, rv: number): string =>
      JSON.stringify({
        ...mockPod(name),
        metadata: { ...mockPod(name).metadata, uid: name, resourceVersion: rv, generation: 1, creationTimestamp: '2026-01-01T00:00:00.000Z' },
      });
    const stage = (id: string, n: number, name: string, rv: number): Promise<number> =>
      etcd.put(`${PREFIX}staging/${id}/${String(n).padStart(7, '0')}`, encodeStaged({ key: `${PREFIX}objects/Pod/${name}`, value: json(name, rv) }));
    // A dead leader's committed, unapplied transaction: a load lays it over the objects.
    await stage('dead-1', 0, 's1', 10);
    await stage('dead-1', 1, 's2', 10);
    await etcd.put(`${PREFIX}meta/commit`, 'dead-1');
    // An uncommitted one: never seen.
    await stage('dead-2', 0, 'never', 11);
    mirror = await startMirror();
    expect(names(mirror.store.list('Pod'))).toEqual(['s1', 's2']);
    // Watched: staged first (not seen), then the commit (all at once).
    await etcd.delete(`${PREFIX}meta/commit`);
    await stage('live-1', 0, 's3', 12);
    await stage('live-1', 1, 's4', 12);
    await mirror.fresh();
    await new Promise((r) => setTimeout(r, 20));
    expect(names(mirror.store.list('Pod'))).toEqual(['s1', 's2']);
    await etcd.put(`${PREFIX}meta/commit`, 'live-1');
    await etcd.put(`${PREFIX}meta/revision`, '12');
    await mirror.fresh();
    expect(names(mirror.store.list('Pod'))).toEqual(['s1', 's2', 's3', 's4']);
  });

  it("reads the group's credentials from etcd: a token revoked on the leader stops working at the next barrier", async () => {
    const auth = authStore();
    const { token, id } = auth.createApiToken({ name: 'reader', role: 'viewer' });
    mirror = await startMirror();
    expect(mirror.auth()?.authenticateApiToken(token)).toMatchObject({ id, role: 'viewer' });
    etcd.pauseWatches();
    auth.revokeApiToken(id);
    await new Promise((r) => setImmediate(r)); // the leader's put reaches etcd
    const barrier = mirror.fresh();
    expect(mirror.auth()?.authenticateApiToken(token)).toBeDefined(); // not yet applied…
    etcd.resumeWatches();
    await barrier;
    expect(mirror.auth()?.authenticateApiToken(token)).toBeUndefined(); // …but before the read
    expect(() => mirror.auth()?.createApiToken({ name: 'x', role: 'admin' })).toThrow(/leading hub/);
  });

  it("joins a split auth.json (the leader's identityMirror in parts: a 10,000-node file), loaded or watched", async () => {
    const shapes: BootstrapShapes = new Map();
    const put = identityMirror((w) => leader.putRawBatch(w), PREFIX, KEY, shapes);
    const auth = AuthStore.open(dir, { caFingerprint: 'a'.repeat(64), onPersist: put });
    const { token, id } = auth.createApiToken({ name: 'reader', role: 'viewer' });
    // Past one part: 10,000 node credentials in one write (≈ 2.3 MB sealed, as the fleet bench's).
    const creds = auth.issueNodeCredentials(Array.from({ length: 10_000 }, (_, i) => `node-${i}`));
    await leader.sync(5_000);
    expect(shapes.get('auth.json')?.parts).toBeGreaterThan(1);
    mirror = await startMirror();
    expect(mirror.auth()?.authenticateApiToken(token)).toMatchObject({ id, role: 'viewer' });
    expect(mirror.auth()?.authenticateNode('node-9999', creds.get('node-9999')!)).toBe(true);
    // A later change arrives through the watch: new parts, manifest, old parts deleted.
    auth.revokeApiToken(id);
    await leader.sync(5_000);
    await mirror.fresh();
    expect(mirror.auth()?.authenticateApiToken(token)).toBeUndefined();
    expect([...(await etcd.range(`${PREFIX}bootstrap/auth.json.parts/`, { prefix: true, keysOnly: true })).kvs].length).toBe(shapes.get('auth.json')!.parts);
  });

  it('reloads when its watch ends, and sees what changed meanwhile', async () => {
    leader.create(mockPod('a'));
    leader.create(mockPod('b'));
    await leader.sync();
    mirror = await startMirror();
    etcd.endWatches();
    leader.delete('Pod', 'a');
    leader.create(mockPod('c'));
    await leader.sync();
    await mirror.fresh();
    expect(names(mirror.store.list('Pod'))).toEqual(['b', 'c']);
    expect(mirror.loads).toBe(2);
  });

  it('skips an object that does not parse and serves the rest', async () => {
    leader.create(mockPod('good'));
    await leader.sync();
    mirror = await startMirror();
    await etcd.put(`${PREFIX}objects/Pod/bad`, '{not json');
    await etcd.put(`${PREFIX}meta/revision`, String(leader.revision()));
    await mirror.fresh();
    expect(names(mirror.store.list('Pod'))).toEqual(['good']);
  });

  it('advances by the events it applied, not by a watch header that runs ahead of them', async () => {
    // etcd, catching a watch up from far behind, sends ≤ 1,000 revisions of events per response
    // with the header at its current revision: the copy must not count what it has not applied.
    const watch = etcd.watch.bind(etcd);
    const ahead = {
      range: etcd.range.bind(etcd),
      txn: etcd.txn.bind(etcd),
      watch: ((key, opts, onEvents, onEnd) => watch(key, opts, (events, revision) => onEvents(events, revision + 1_000), onEnd)) as EtcdClient['watch'],
    };
    mirror = new StoreMirror({ client: ahead, prefix: PREFIX, key: KEY, clock: systemClock, log });
    await mirror.start();
    leader.create(mockPod('p1'));
    await leader.sync();
    await mirror.fresh();
    expect(mirror.revision).toBe(etcd.revision);
  });

  describe('handoff (takeover)', () => {
    const json = (name: string, rv: number): string =>
      JSON.stringify({
        ...mockPod(name),
        metadata: { ...mockPod(name).metadata, uid: name, resourceVersion: rv, generation: 1, creationTimestamp: '2026-01-01T00:00:00.000Z' },
      });
    const stage = (id: string, n: number, value: string): Promise<number> => etcd.put(`${PREFIX}staging/${id}/${String(n).padStart(7, '0')}`, value);
    const byName = (objs: readonly { kind: string; metadata: { name: string } }[]): string[] => objs.map((o) => `${o.kind}/${o.metadata.name}`).sort();

    it('gives the copy, once it holds this hub election, as the snapshot a load of etcd would read: objects, revision, staging, commit record', async () => {
      leader.create(mockNode('n1'));
      for (let i = 0; i < 3; i++) leader.create(mockPod(`p${i}`, { nodeName: 'n1' }));
      await leader.sync();
      mirror = await startMirror();
      // Watched after the load: a dead leader's committed large transaction, an uncommitted one, a staging key that does not decode.
      await stage('dead-1', 0, encodeStaged({ key: `${PREFIX}objects/Pod/s1`, value: json('s1', 10) }));
      await stage('dead-1', 1, encodeStaged({ key: `${PREFIX}objects/Pod/p0`, value: undefined }));
      await stage('dead-1', 2, encodeStaged({ key: `${PREFIX}meta/revision`, value: '00000000000000000010' }));
      await etcd.put(`${PREFIX}meta/commit`, 'dead-1');
      await stage('dead-2', 0, encodeStaged({ key: `${PREFIX}objects/Pod/never`, value: json('never', 11) }));
      await stage('junk', 0, 'not a staged write');
      const wonAt = await etcd.put(`${PREFIX}leader`, 'b');
      const handed = await mirror.handoff(wonAt, 'b', 2_000);
      if (!('snapshot' in handed)) throw new Error(handed.reason);
      const snap = handed.snapshot;
      const load = await readStoreSnapshot(etcd, PREFIX);
      expect(snap.revision).toBe(wonAt);
      expect(snap.frozen).toBe(true);
      expect(byName(snap.objects)).toEqual(byName(load.objects));
      expect(byName(snap.objects)).toEqual(['Node/n1', 'Pod/p1', 'Pod/p2', 'Pod/s1']);
      expect(snap.storeRevision).toBe(load.storeRevision);
      expect(snap.commit).toBe('dead-1');
      expect(snap.staged.map((w) => [w.stageKey, w.op])).toEqual(load.staged.map((w) => [w.stageKey, w.op]));
      expect(snap.committed.map((w) => w.stageKey)).toEqual(load.committed.map((w) => w.stageKey));
      expect(mirror.loads).toBe(1);
      // The store opened from it is the one a load opens (redo included).
      mirror.stop();
      leader.close();
      const fromCopy = await EtcdStore.open({ client: etcd as unknown as EtcdClient, prefix: PREFIX, compactEveryMs: 0 }, snap);
      expect(fromCopy.list('Pod')).toEqual(load.objects.filter((o) => o.kind === 'Pod'));
      expect(fromCopy.revision()).toBe(10);
      expect((await etcd.range(`${PREFIX}staging/`, { prefix: true })).count).toBe(0);
      fromCopy.close();
      leader = await openLeader();
    });

    it('waits for a first load still under way instead of sending the leader to a second full load (a hub restarted into a large group)', async () => {
      for (let i = 0; i < 5; i++) leader.create(mockPod(`p${i}`));
      await leader.sync();
      const wonAt = await etcd.put(`${PREFIX}leader`, 'b');
      // As runStandby at launch: the load starts, the election is won before it ends.
      const m = new StoreMirror({ client: etcd, prefix: PREFIX, key: KEY, clock: systemClock, log });
      mirror = m;
      const started = m.start();
      expect(m.ready).toBe(false);
      const handed = await m.handoff(wonAt, 'b', 100);
      await started;
      if (!('snapshot' in handed)) throw new Error(`no copy handed: ${handed.reason}`);
      expect(byName(handed.snapshot.objects)).toEqual(['Pod/p0', 'Pod/p1', 'Pod/p2', 'Pod/p3', 'Pod/p4']);
      expect(handed.snapshot.revision).toBeGreaterThanOrEqual(wonAt);
      expect(m.loads).toBe(1);
    });

    it('a first load that fails leaves the full load to the leader, with the reason', async () => {
      const wonAt = await etcd.put(`${PREFIX}leader`, 'b');
      const failing = {
        range: () => Promise.reject(new OrchardError('ERR_STORE', 'etcd unreachable')),
        txn: etcd.txn.bind(etcd),
        watch: etcd.watch.bind(etcd),
      } as unknown as Pick<EtcdClient, 'range' | 'txn' | 'watch'>;
      const m = new StoreMirror({ client: failing, prefix: PREFIX, key: KEY, clock: systemClock, log });
      mirror = m;
      const started = m.start();
      const handed = await m.handoff(wonAt, 'b', 100);
      await started;
      expect('reason' in handed && handed.reason).toMatch(/first load of the store had not finished/);
    });

    it('waits for a lagging watch to bring the election, and says why when it cannot: not shown in time, an object that does not parse, stopped', async () => {
      mirror = await startMirror();
      etcd.pauseWatches();
      leader.create(mockPod('p1'));
      await leader.sync();
      const wonAt = await etcd.put(`${PREFIX}leader`, 'b');
      const late = await mirror.handoff(wonAt, 'b', 100);
      expect('reason' in late && late.reason).toMatch(/did not show this hub's election/);
      const waiting = mirror.handoff(wonAt, 'b', 2_000);
      etcd.resumeWatches();
      const handed = await waiting;
      expect('snapshot' in handed && byName(handed.snapshot.objects)).toEqual(['Pod/p1']);
      await etcd.put(`${PREFIX}objects/Pod/bad`, '{not json');
      await mirror.fresh().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 20));
      const bad = await mirror.handoff(wonAt, 'b', 100);
      expect('reason' in bad && bad.reason).toMatch(/do not parse/);
      mirror.stop();
      const stopped = await mirror.handoff(wonAt, 'b', 100);
      expect('reason' in stopped && stopped.reason).toMatch(/stopped/);
    });
  });

  it('stop() cancels its watch', async () => {
    mirror = await startMirror();
    expect(etcd.watchCount).toBe(1);
    mirror.stop();
    expect(etcd.watchCount).toBe(0);
    expect(mirror.ready).toBe(false);
  });
});
