/**
 * How fast the etcd store's write-behind queue drains (issue 19): a 3-member etcd cluster
 * (test/helpers/etcd.ts, etcd's raft timings), an EtcdStore, K pods created one store transaction
 * each (as controllers write), then each updated once; the time until sync() resolves, i.e. until
 * etcd holds them all. The flusher sends up to 4 key-disjoint etcd transactions at once (≤ 120 ops
 * each; ETCD_MAX_IN_FLIGHT=1 for the old one-at-a-time behaviour), so this is
 * what an API write queued behind a burst of controller writes waits for.
 *
 * Run: npx tsx scripts/bench/etcd-store-write.ts [K=3000]
 */
import { loadavg } from 'node:os';
import { EtcdClient } from '../../hub/store/etcd/etcd-client.js';
import { EtcdStore } from '../../hub/store/etcd/etcd-store.js';
import { mockPod } from '../../hub/store/store-contract.js';
import { EtcdCluster } from '../../test/helpers/etcd.js';

const K = Number(process.argv[2] ?? 3000);
const etcd = await EtcdCluster.start(3, { heartbeatMs: 100, electionMs: 1000 });
process.on('exit', () => etcd.close());
const client = new EtcdClient({ endpoints: etcd.endpoints });
try {
  const store = await EtcdStore.open({ client, prefix: '/w/', compactEveryMs: 0, maxInFlight: Number(process.env.ETCD_MAX_IN_FLIGHT ?? 4) });
  let txns = 0;
  const txn = client.txn.bind(client);
  client.txn = (...a) => (txns++, txn(...a));
  for (const phase of ['create', 'update'] as const) {
    const load = loadavg()[0] ?? 0;
    txns = 0;
    const t0 = performance.now();
    for (let i = 0; i < K; i++) {
      if (phase === 'create') store.create(mockPod(`p-${i}`));
      else store.update({ ...store.get('Pod', `p-${i}`)!, status: { ...store.get('Pod', `p-${i}`)!.status, message: 'x' } });
    }
    const queued = performance.now() - t0;
    await store.sync(600_000);
    const ms = performance.now() - t0;
    console.log(
      `${phase}: ${K} store transactions (${queued.toFixed(0)} ms to queue) in etcd after ${ms.toFixed(0)} ms = ` +
        `${Math.round((K / ms) * 1000)} writes/s, ${txns} etcd transactions (${(ms / txns).toFixed(1)} ms each); load ${load.toFixed(1)}`,
    );
  }
  const st = await etcd.status();
  console.log(`etcd: ${st.map((m) => `${m.name} db ${(m.dbSize / 2 ** 20).toFixed(1)} MiB rev ${m.revision}`).join('; ')}`);
  store.close();
} finally {
  client.close();
  etcd.close();
}
