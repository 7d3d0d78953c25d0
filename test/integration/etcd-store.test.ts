import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BootstrapShapes, bootstrapKey, downloadIdentity, identityMirror } from '../../hub/store/etcd/bootstrap.js';
import { EtcdClient } from '../../hub/store/etcd/etcd-client.js';
import { EtcdStore, revisionText } from '../../hub/store/etcd/etcd-store.js';
import { mockPod, storeContract } from '../../hub/store/store-contract.js';
import { OrchardError } from '../../protocol/errors.js';
import { useEtcdCluster } from '../helpers/etcd-suite.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * The etcd store (issue 19) against a real etcd member: the whole Store contract (the same suite
 * SQLite and memory pass, reopen included), then what only a remote, fenced backend has.
 */

const cluster = useEtcdCluster();
let seq = 0;

storeContract('EtcdStore', async (opts) => {
  const prefix = `/contract-${++seq}/`;
  let store = await EtcdStore.open({ ...opts, client: cluster.client, prefix });
  return {
    store,
    reopen: async () => {
      await store.closeAsync();
      store = await EtcdStore.open({ ...opts, client: cluster.client, prefix });
      return store;
    },
    cleanup: async () => {
      store.close();
      await cluster.client.delete(prefix, { prefix: true });
    },
  };
});

describe('EtcdStore, what a remote backend adds', () => {
  it('sync() resolves once etcd holds every write committed before it; another reader sees them', async () => {
    const prefix = `/sync-${++seq}/`;
    const store = await EtcdStore.open({ client: cluster.client, prefix });
    store.create(mockPod('a'));
    store.transaction(() => {
      store.create(mockPod('b'));
      store.delete('Pod', 'a');
    });
    expect(store.unflushed).toBeGreaterThan(0);
    await store.sync(5_000);
    expect(store.unflushed).toBe(0);
    const keys = (await cluster.client.range(`${prefix}objects/`, { prefix: true })).kvs.map((k) => k.key);
    expect(keys).toEqual([`${prefix}objects/Pod/b`]);
    expect((await cluster.client.get(`${prefix}meta/revision`))?.value.toString()).toBe(revisionText(3));
    await store.closeAsync();
  });

  it("compacts etcd's history at its interval, keeping one interval of it and every object's latest value", async () => {
    const prefix = `/compact-${++seq}/`;
    const store = await EtcdStore.open({ client: cluster.client, prefix, compactEveryMs: 300 });
    const pod = mockPod('c');
    store.create(pod);
    await store.sync(5_000);
    const first = (await cluster.client.range(`${prefix}objects/Pod/c`)).kvs[0]!.modRevision;
    for (let i = 0; i < 20; i++) store.update({ ...store.get('Pod', 'c')!, status: { ...pod.status, message: `write ${i}` } });
    await store.sync(5_000);
    // Two passes: the first notes the revision, the second compacts to it.
    const deadline = Date.now() + 10_000;
    while (store.compactions === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(store.compactions).toBeGreaterThan(0);
    await expect(cluster.client.range(`${prefix}objects/Pod/c`, { revision: first })).rejects.toThrow(/compacted/);
    const latest = JSON.parse((await cluster.client.get(`${prefix}objects/Pod/c`))!.value.toString()) as { status: { message?: string } };
    expect(latest.status.message).toBe('write 19');
    await store.closeAsync();
    const reopened = await EtcdStore.open({ client: cluster.client, prefix, compactEveryMs: 0 });
    expect(reopened.get('Pod', 'c')?.status.message).toBe('write 19');
    reopened.close();
  });

  it('splits a store transaction larger than etcd takes at once, and a reopen sees all of it', async () => {
    const prefix = `/big-${++seq}/`;
    const store = await EtcdStore.open({ client: cluster.client, prefix, maxOpsPerTxn: 20 });
    store.transaction(() => {
      for (let i = 0; i < 95; i++) store.create(mockPod(`p${String(i).padStart(3, '0')}`));
    });
    for (let i = 0; i < 30; i++) store.create(mockPod(`q${i}`)); // 30 small ones merge
    await store.closeAsync();
    const again = await EtcdStore.open({ client: cluster.client, prefix });
    expect(again.count('Pod')).toBe(125);
    expect(again.revision()).toBe(125);
    again.close();
  });

  it('a store transaction split over several etcd transactions is all-or-nothing for the next leader: fenced halfway it leaves nothing visible, dead after its commit it is completed (review finding 9)', async () => {
    const prefix = `/split-${++seq}/`;
    const leaderKey = `${prefix}leader`;
    await cluster.client.put(leaderKey, 'a');
    const epochA = (await cluster.client.get(leaderKey))!.createRevision;
    // A client of its own whose transactions the test can interfere with.
    const c = new EtcdClient({ endpoints: cluster.etcd.endpoints });
    const txn = c.txn.bind(c);
    let sent = 0;
    let afterTxn: (n: number) => Promise<void> = async () => undefined;
    c.txn = async (...args: Parameters<EtcdClient['txn']>) => {
      const r = await txn(...args);
      await afterTxn(++sent);
      return r;
    };
    const fenceA = () => ({ key: leaderKey, target: 'CREATE' as const, createRevision: epochA });
    const a = await EtcdStore.open({ client: c, prefix, maxOpsPerTxn: 10, fence: fenceA, epoch: epochA });
    a.create(mockPod('before'));
    await a.sync(5_000);
    const big = (tag: string) =>
      a.transaction(() => {
        for (let i = 0; i < 30; i++) a.create(mockPod(`${tag}-${String(i).padStart(2, '0')}`));
        a.delete('Pod', 'before');
      });

    // 1. Leader A loses leadership after its first etcd transaction of a 31-write store transaction.
    sent = 0;
    afterTxn = async (n) => {
      if (n === 1) {
        await cluster.client.delete(leaderKey);
        await cluster.client.put(leaderKey, 'b');
      }
    };
    big('x');
    await expect(a.sync(10_000)).rejects.toMatchObject({ code: 'ERR_NOT_LEADER' });
    expect(sent).toBe(2); // one went through, the next was refused
    // Before the fix the first part's pods were plain objects a new leader loaded.
    expect((await cluster.client.range(`${prefix}objects/`, { prefix: true, keysOnly: true })).kvs.map((k) => k.key)).toEqual([`${prefix}objects/Pod/before`]);
    const epochB = (await cluster.client.get(leaderKey))!.createRevision;
    const fenceB = () => ({ key: leaderKey, target: 'CREATE' as const, createRevision: epochB });
    const b = await EtcdStore.open({ client: cluster.client, prefix, maxOpsPerTxn: 10, fence: fenceB, epoch: epochB });
    expect(b.list('Pod').map((p) => p.metadata.name)).toEqual(['before']);
    expect(b.revision()).toBe(1);
    // The dead leader's staging was removed by the new one.
    expect((await cluster.client.range(`${prefix}staging/`, { prefix: true, keysOnly: true })).count).toBe(0);
    b.close();
    a.close();

    // 2. Leader C dies (etcd unreachable for it, then gone) right after its commit record: the next leader completes it.
    const c2 = new EtcdClient({ endpoints: cluster.etcd.endpoints });
    const txn2 = c2.txn.bind(c2);
    let committed = false;
    c2.txn = async (...args: Parameters<EtcdClient['txn']>) => {
      if (committed) throw new Error('connection refused (leader C is gone)');
      const r = await txn2(...args);
      if (JSON.stringify(args[1]).includes('meta/commit')) committed = true;
      return r;
    };
    const cStore = await EtcdStore.open({ client: c2, prefix, maxOpsPerTxn: 10, fence: fenceB, epoch: epochB });
    cStore.transaction(() => {
      for (let i = 0; i < 30; i++) cStore.create(mockPod(`y-${String(i).padStart(2, '0')}`));
      cStore.delete('Pod', 'before');
    });
    await expect(cStore.sync(1_500)).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    expect(committed).toBe(true);
    cStore.close();
    // Nothing applied yet in etcd: the objects are still the old ones, the writes are staged.
    expect((await cluster.client.range(`${prefix}objects/`, { prefix: true, keysOnly: true })).count).toBe(1);
    expect((await cluster.client.range(`${prefix}staging/`, { prefix: true, keysOnly: true })).count).toBe(32); // 30 pods, a delete, the revision
    const d = await EtcdStore.open({ client: cluster.client, prefix, maxOpsPerTxn: 10, fence: fenceB, epoch: epochB });
    expect(d.count('Pod')).toBe(30);
    expect(d.get('Pod', 'before')).toBeUndefined();
    expect(d.revision()).toBe(32);
    // ...and etcd now holds it plainly: no staging, no commit record, every write stamped with B's epoch.
    expect((await cluster.client.range(`${prefix}objects/`, { prefix: true, keysOnly: true })).count).toBe(30);
    expect((await cluster.client.range(`${prefix}staging/`, { prefix: true, keysOnly: true })).count).toBe(0);
    expect(await cluster.client.get(`${prefix}meta/commit`)).toBeUndefined();
    expect((await cluster.client.get(`${prefix}meta/epoch`))?.value.toString()).toBe(String(epochB));
    expect((await cluster.client.get(`${prefix}meta/revision`))?.value.toString()).toBe(revisionText(32));
    // A large transaction without interference goes through staging and lands whole.
    d.transaction(() => {
      for (let i = 0; i < 25; i++) d.delete('Pod', `y-${String(i).padStart(2, '0')}`);
    });
    await d.sync(10_000);
    expect(d.splitCommitted).toBe(1);
    d.close();
    const e = await EtcdStore.open({ client: cluster.client, prefix });
    expect(e.count('Pod')).toBe(5);
    e.close();
    c.close();
    c2.close();
  }, 60_000);

  it('sends several etcd transactions at once, never two sharing a key: landing out of order and one failing, etcd ends equal to the store, meta/revision at the last revision', async () => {
    const prefix = `/inflight-${++seq}/`;
    const slow = new EtcdClient({ endpoints: cluster.etcd.endpoints });
    const real = slow.txn.bind(slow);
    const inflight: Set<string>[] = [];
    let most = 0;
    let shared = 0;
    let calls = 0;
    let rnd = 7;
    const random = (): number => (rnd = (rnd * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    slow.txn = async (compare, success, failure) => {
      const keys = new Set(success.flatMap((o) => ('put' in o ? [o.put.key] : 'delete' in o ? [o.delete.key] : [])).filter((k) => k.includes('/objects/')));
      for (const other of inflight) for (const k of keys) if (other.has(k)) shared++;
      inflight.push(keys);
      most = Math.max(most, inflight.length);
      try {
        await new Promise((r) => setTimeout(r, Math.floor(random() * 40)));
        if (++calls === 6) throw new OrchardError('ERR_STORE', 'etcd: injected failure');
        return await real(compare, success, failure);
      } finally {
        inflight.splice(inflight.indexOf(keys), 1);
      }
    };
    const flushErrors: unknown[] = [];
    const store = await EtcdStore.open({ client: slow, prefix, maxOpsPerTxn: 10, maxInFlight: 4, onFlushError: (e) => flushErrors.push(e) });
    try {
      for (let i = 0; i < 120; i++) store.create(mockPod(`p-${i}`));
      for (const round of [1, 2])
        for (let i = 0; i < 120; i++) {
          const p = structuredClone(store.get('Pod', `p-${i}`)!);
          p.status.message = `round ${round}`;
          store.update(p);
        }
      for (let i = 0; i < 120; i += 7) store.delete('Pod', `p-${i}`);
      await store.sync(30_000);
      expect(most).toBeGreaterThan(1);
      expect(shared).toBe(0);
      expect(flushErrors).toHaveLength(1);
      const inEtcd = new Map(
        (await cluster.client.range(`${prefix}objects/`, { prefix: true })).kvs.map((kv) => [kv.key, JSON.parse(kv.value.toString()) as unknown]),
      );
      const inStore = new Map(store.list('Pod').map((p) => [`${prefix}objects/Pod/${p.metadata.name}`, JSON.parse(JSON.stringify(p)) as unknown]));
      expect(inEtcd).toEqual(inStore);
      expect((await cluster.client.get(`${prefix}meta/revision`))?.value.toString()).toBe(revisionText(store.revision()));
      const rev = store.revision();
      const pods = store.count('Pod');
      store.close();
      const again = await EtcdStore.open({ client: cluster.client, prefix });
      expect(again.revision()).toBe(rev);
      expect(again.list('Pod').map((p) => p.status.message)).toEqual(Array.from({ length: pods }, () => 'round 2'));
      again.close();
    } finally {
      store.close();
      slow.close();
    }
  }, 60_000);

  it('pads meta/revision an older hub wrote plainly, so its byte-wise compare orders revisions', async () => {
    const prefix = `/legacy-${++seq}/`;
    const first = await EtcdStore.open({ client: cluster.client, prefix });
    for (let i = 0; i < 12; i++) first.create(mockPod(`q-${i}`));
    await first.closeAsync();
    await cluster.client.put(`${prefix}meta/revision`, '12');
    const store = await EtcdStore.open({ client: cluster.client, prefix });
    expect((await cluster.client.get(`${prefix}meta/revision`))?.value.toString()).toBe(revisionText(12));
    store.create(mockPod('q-12'));
    await store.sync(5_000);
    expect((await cluster.client.get(`${prefix}meta/revision`))?.value.toString()).toBe(revisionText(13));
    store.close();
  });

  it("an identity file over etcd's request limit goes in parts through the store's queue, downloads byte for byte, and does not hold back later writes (10,000-node auth.json)", async () => {
    const prefix = `/identity-${++seq}/`;
    const key = bootstrapKey('a-group-secret-of-length', prefix);
    const store = await EtcdStore.open({ client: cluster.client, prefix });
    const dir = mkdtempSync(join(tmpdir(), 'orchard-identity-'));
    try {
      const shapes: BootstrapShapes = new Map();
      const mirror = identityMirror((w) => store.putRawBatch(w), prefix, key, shapes);
      // ≈ 2.6 MB of credentials, as auth.json holds for 10,000 nodes; sealed it is larger still.
      const nodes = Array.from({ length: 10_000 }, (_, i) => ({ node: `node-${i}`, secretHash: 'ab'.repeat(32), issuedAt: '2026-12-03T00:00:00.000Z' }));
      const big = JSON.stringify({ version: 1, nodes });
      mirror('auth.json', big);
      store.create(mockPod('after-identity'));
      await store.sync(20_000);
      expect((await cluster.client.get(`${prefix}objects/Pod/after-identity`)) !== undefined).toBe(true);
      const oldSha = shapes.get('auth.json')!.sha256;
      expect((await cluster.client.range(`${prefix}bootstrap/auth.json.parts/`, { prefix: true, keysOnly: true })).count).toBeGreaterThan(1);
      const downloaded = new Map() as BootstrapShapes;
      expect(await downloadIdentity(cluster.client, prefix, dir, key, downloaded)).toEqual(['auth.json']);
      expect(readFileSync(join(dir, 'auth.json'), 'utf8')).toBe(big);
      expect(downloaded.get('auth.json')?.sha256).toBe(oldSha);
      // Back to a small file: one key again, and the old parts are gone.
      mirror('auth.json', '{"version":1}');
      await store.sync(10_000);
      expect((await cluster.client.range(`${prefix}bootstrap/auth.json.parts/`, { prefix: true, keysOnly: true })).count).toBe(0);
      writeFileSync(join(dir, 'auth.json'), 'stale');
      await downloadIdentity(cluster.client, prefix, dir, key);
      expect(readFileSync(join(dir, 'auth.json'), 'utf8')).toBe('{"version":1}');
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('sync up to a writeMark waits for the writes up to it, not for a later one etcd has not taken', async () => {
    const prefix = `/mark-${++seq}/`;
    const gated = new EtcdClient({ endpoints: cluster.etcd.endpoints });
    const real = gated.txn.bind(gated);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    gated.txn = async (compare, success, failure) => {
      if (success.some((o) => 'put' in o && o.put.key.endsWith('/held'))) await gate;
      return real(compare, success, failure);
    };
    const store = await EtcdStore.open({ client: gated, prefix });
    try {
      store.create(mockPod('first'));
      const mark = store.writeMark();
      store.create(mockPod('held'));
      await store.sync(5_000, mark);
      await expect(store.sync(300)).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
      release();
      await store.sync(5_000);
      expect((await cluster.client.range(`${prefix}objects/`, { prefix: true, keysOnly: true })).count).toBe(2);
    } finally {
      store.close();
      gated.close();
    }
  });

  it('pages through more objects than one range returns', async () => {
    const prefix = `/page-${++seq}/`;
    const store = await EtcdStore.open({ client: cluster.client, prefix });
    for (let b = 0; b < 5; b++)
      store.transaction(() => {
        for (let i = 0; i < 500; i++) store.create(mockPod(`p${b}-${i}`));
      });
    await store.closeAsync(20_000);
    const again = await EtcdStore.open({ client: cluster.client, prefix });
    expect(again.count('Pod')).toBe(2_500);
    again.close();
  }, 60_000);

  it('counts UTF-8 bytes: two objects that fit etcd alone are not merged past its request limit, and one too large is refused at write time (review finding 2)', async () => {
    const prefix = `/bytes-${++seq}/`;
    const store = await EtcdStore.open({ client: cluster.client, prefix });
    const big = (name: string, chars: number) => {
      const p = mockPod(name);
      return { ...p, metadata: { ...p.metadata, annotations: { blob: '€'.repeat(chars) } } };
    };
    // 600 KB each in UTF-8 (200k UTF-16 units): merged they would pass 1.5 MiB once base64'd.
    store.create(big('a', 200_000));
    store.create(big('b', 200_000));
    await store.sync(10_000);
    expect((await cluster.client.range(`${prefix}objects/`, { prefix: true, keysOnly: true })).count).toBe(2);
    expect(() => store.create(big('c', 400_000))).toThrow(/at most 1048576 per object/);
    expect(store.get('Pod', 'c')).toBeUndefined();
    store.create(mockPod('after'));
    await store.sync(5_000);
    await store.closeAsync();
  }, 30_000);

  it('a fenced store stops writing: etcd refuses the write, onFenced fires, later writes and sync fail', async () => {
    const prefix = `/fence-${++seq}/`;
    const leaderKey = `${prefix}leader`;
    await cluster.client.put(leaderKey, 'me');
    const epoch = (await cluster.client.get(leaderKey))!.createRevision;
    const fencedErrors: OrchardError[] = [];
    const store = await EtcdStore.open({
      client: cluster.client,
      prefix,
      fence: () => ({ key: leaderKey, target: 'CREATE', createRevision: epoch }),
      onFenced: (e) => fencedErrors.push(e),
    });
    store.create(mockPod('while-leader'));
    await store.sync(5_000);
    // Another hub takes over: the key is re-created, so its create revision moves on.
    await cluster.client.delete(leaderKey);
    await cluster.client.put(leaderKey, 'other');
    store.create(mockPod('after-losing'));
    await expect(store.sync(5_000)).rejects.toMatchObject({ code: 'ERR_NOT_LEADER', message: expect.stringMatching(/lost leadership/) });
    expect(fencedErrors).toHaveLength(1);
    expect(() => store.create(mockPod('refused'))).toThrow(/lost leadership/);
    const keys = (await cluster.client.range(`${prefix}objects/`, { prefix: true })).kvs.map((k) => k.key);
    expect(keys).toEqual([`${prefix}objects/Pod/while-leader`]);
    store.close();
  });

  it('queues writes while etcd is unreachable, times a sync out clearly, and flushes them in order when it is back', async () => {
    const prefix = `/outage-${++seq}/`;
    const u = new URL(cluster.etcd.endpoints[0]!);
    const proxy = await TcpProxy.start({ host: u.hostname, port: Number(u.port) });
    const viaProxy = new EtcdClient({ endpoints: [`http://127.0.0.1:${proxy.port}`], timeoutMs: 500 });
    const flushErrors: unknown[] = [];
    const store = await EtcdStore.open({ client: viaProxy, prefix, onFlushError: (e) => flushErrors.push(e) });
    try {
      await proxy.cut();
      store.create(mockPod('x'));
      const p = structuredClone(store.create(mockPod('y')));
      p.status.phase = 'Running';
      store.update(p);
      await expect(store.sync(1_500)).rejects.toMatchObject({ code: 'ERR_TIMEOUT', message: expect.stringMatching(/did not confirm/) });
      expect(flushErrors.length).toBeGreaterThan(0);
      await proxy.restore();
      await store.sync(10_000);
      const y = JSON.parse((await cluster.client.get(`${prefix}objects/Pod/y`))!.value.toString()) as { status: { phase: string } };
      expect(y.status.phase).toBe('Running');
      expect((await cluster.client.get(`${prefix}meta/revision`))?.value.toString()).toBe(revisionText(3));
    } finally {
      store.close();
      viaProxy.close();
      await proxy.close();
    }
  }, 30_000);
});
