/**
 * Standby reads benchmark (issue 19): what a standby hub pays per `GET /api/v1/pods` when it keeps a
 * decoded copy of the store (hub/ha/store-mirror.ts: decode once per change, from a watch), against
 * what re-reading etcd per request would cost (range + decode of every pod).
 *
 * Run: npx tsx scripts/bench/standby-reads.ts [--pods 100000] [--rounds 5] [--etcd 0] [--members 1]
 *
 * In-process, no network: N pods (two containers, env, ports, resources, a Running status with
 * container statuses: ≈ 1.5 KB of JSON each, as etcd stores them) are
 *   1. decoded as a load or a per-request range would (JSON.parse + key check + into the
 *      ReplicaStore cache with structural sharing): "decode all";
 *   2. listed from the copy as the standby's route does (Operations.list on the ReplicaStore):
 *      "list from copy";
 *   3. serialised as the response body (JSON.stringify of {items}; the leader pays the same):
 *      "serialise";
 *   4. one changed pod applied as a watch event does (parse + put): "apply 1 change".
 * With `--etcd N` (N pods, e.g. 10000) it also writes N pods to a real one-member etcd (Debian's
 * etcd-server) through EtcdStore and times readStoreSnapshot — the range over the JSON gateway
 * plus the decode, i.e. a re-read per request — and the standby's per-request read barrier
 * (StoreMirror.fresh: one quorum txn, the copy already current), median of 200, on `--members`
 * etcd members (1 or 3).
 * Prints a markdown table; times are the median of --rounds (wall clock, ms).
 */
import { performance } from 'node:perf_hooks';
import { API_VERSION } from '../../protocol/manifest.js';
import type { AnyObject, Pod } from '../../protocol/objects.js';
import { systemClock } from '../../protocol/clock.js';
import { StoreMirror } from '../../hub/ha/store-mirror.js';
import { createLogger } from '../../hub/log.js';
import { Operations } from '../../hub/operations.js';
import { EtcdClient } from '../../hub/store/etcd/etcd-client.js';
import { EtcdStore, parseStored, readStoreSnapshot } from '../../hub/store/etcd/etcd-store.js';
import { MemoryStore } from '../../hub/store/memory-store.js';
import { ReplicaStore } from '../../hub/store/replica-store.js';
import type { Store } from '../../hub/store/store.js';
import { EtcdCluster } from '../../test/helpers/etcd.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : def;
}
const PODS = Number(arg('pods', '100000'));
const ROUNDS = Number(arg('rounds', '5'));
const ETCD_PODS = Number(arg('etcd', '0'));
const MEMBERS = arg('members', '1') === '3' ? 3 : 1;
const PREFIX = '/orchard/';
const OBJ_PREFIX = `${PREFIX}objects/`;
const log = createLogger('bench', 'silent');

function pod(i: number): Parameters<Store['create']>[0] {
  const d = i % 1000;
  const app = `svc-${d}`;
  const node = `node-${String(i % 10000).padStart(5, '0')}`;
  const ts = new Date(Date.parse('2026-01-01T00:00:00.000Z') + i * 1000).toISOString();
  const spec = {
    nodeName: node,
    containers: [
      {
        name: 'app',
        image: `registry.example.internal/fleet/${app}:1.${d % 7}.${d % 13}`,
        imagePullPolicy: 'IfNotPresent',
        env: [
          { name: 'APP_NAME', value: app },
          { name: 'LOG_LEVEL', value: 'info' },
          { name: 'UPSTREAM_URL', value: `http://gateway.fleet.internal:9000/${app}` },
        ],
        envFrom: [],
        ports: [{ name: 'http', containerPort: 8080 }],
        resources: { requests: { cpu: '50m', memory: '32Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
        volumeMounts: [{ name: 'data', mountPath: '/data' }],
      },
      {
        name: 'log-shipper',
        image: 'registry.example.internal/fleet/fluent-bit:2.2.0',
        imagePullPolicy: 'IfNotPresent',
        env: [{ name: 'SERVICE', value: app }],
        envFrom: [],
        ports: [],
        resources: { requests: { cpu: '10m', memory: '16Mi' } },
        volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: true }],
      },
    ],
    restartPolicy: 'Always',
    network: 'bridge',
    terminationGracePeriodSeconds: 10,
    tolerations: [],
    volumes: [{ name: 'data', emptyDir: {} }],
    imagePullSecrets: [],
  };
  const cs = (name: string, n: number): unknown => ({
    name,
    state: 'running',
    ready: true,
    restartCount: n % 3,
    containerId: `${(i * 2654435761 + n).toString(16).padStart(12, '0')}`,
    startedAt: ts,
    image: name === 'app' ? `registry.example.internal/fleet/${app}:1.${d % 7}.${d % 13}` : 'registry.example.internal/fleet/fluent-bit:2.2.0',
  });
  return {
    apiVersion: API_VERSION,
    kind: 'Pod',
    metadata: {
      name: `${app}-${String(i).padStart(6, '0')}`,
      labels: { app, 'orchard.dev/deployment': app },
      annotations: { 'orchard.dev/template-hash': (d * 7919).toString(16) },
      ownerName: app,
    },
    spec,
    status: {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: ts }],
      containerStatuses: [cs('app', 0), cs('log-shipper', 1)],
      startTime: ts,
    },
  } as unknown as Parameters<Store['create']>[0];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}
function time(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}
const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(3));

async function main(): Promise<void> {
  // The values etcd would hold: the store's own JSON of each pod.
  const src = new MemoryStore();
  src.transaction(() => {
    for (let i = 0; i < PODS; i++) src.create(pod(i));
  });
  const stored: { key: string; json: string }[] = src.list('Pod').map((p) => ({ key: `${OBJ_PREFIX}Pod/${p.metadata.name}`, json: JSON.stringify(p) }));
  const bytes = stored.reduce((n, s) => n + Buffer.byteLength(s.json), 0);
  src.close();

  const replica = new ReplicaStore();
  const decode: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    decode.push(
      time(() => {
        const objects: AnyObject[] = stored.map((s) => parseStored(s.key, s.json, OBJ_PREFIX));
        replica.reset(objects, PODS);
      }),
    );
  }
  const ops = new Operations({ store: replica, log, now: () => new Date() });
  const list: number[] = [];
  const serialise: number[] = [];
  let body = '';
  for (let r = 0; r < ROUNDS; r++) {
    let items: { items: AnyObject[] } = { items: [] };
    list.push(time(() => (items = ops.list('pods'))));
    serialise.push(time(() => (body = JSON.stringify(items))));
  }
  const one: number[] = [];
  for (let r = 0; r < ROUNDS * 20; r++) {
    const s = stored[(r * 7919) % stored.length]!;
    const changed = JSON.parse(s.json) as Pod;
    changed.status.phase = r % 2 === 0 ? 'Running' : 'Failed';
    const json = JSON.stringify(changed);
    one.push(time(() => replica.putObject(parseStored(s.key, json, OBJ_PREFIX))));
  }

  const rows: [string, string][] = [
    [`decode all ${PODS} pods (load, or a re-read per request)`, ms(median(decode))],
    ['list from copy (Operations.list on the ReplicaStore)', ms(median(list))],
    ['serialise the response (JSON.stringify; the leader pays it too)', ms(median(serialise))],
    ['apply 1 change from the watch (parse + put)', ms(median(one))],
  ];

  if (ETCD_PODS > 0) {
    const etcd = await EtcdCluster.start(MEMBERS);
    const client = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 30_000 });
    try {
      const leader = await EtcdStore.open({ client, prefix: PREFIX, compactEveryMs: 0 });
      for (let i = 0; i < ETCD_PODS; i += 100) {
        leader.transaction(() => {
          for (let j = i; j < Math.min(ETCD_PODS, i + 100); j++) leader.create(pod(j));
        });
      }
      await leader.sync(600_000);
      leader.close();
      const reread: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const t = performance.now();
        await readStoreSnapshot(client, PREFIX);
        reread.push(performance.now() - t);
      }
      rows.push([`range + decode of ${ETCD_PODS} pods from a ${MEMBERS}-member etcd (readStoreSnapshot)`, ms(median(reread))]);
      const mirror = new StoreMirror({ client, prefix: PREFIX, key: Buffer.alloc(32), clock: systemClock, log });
      await mirror.start();
      const barrier: number[] = [];
      for (let r = 0; r < 200; r++) {
        const t = performance.now();
        await mirror.fresh();
        barrier.push(performance.now() - t);
      }
      mirror.stop();
      rows.push([`read barrier per request (one quorum txn; ${MEMBERS}-member etcd)`, ms(median(barrier))]);
    } finally {
      client.close();
      etcd.close();
    }
  }

  console.log(
    `\nstandby reads: ${PODS} pods, ${(bytes / PODS).toFixed(0)} B of JSON each, response ${(Buffer.byteLength(body) / 2 ** 20).toFixed(1)} MiB; median of ${ROUNDS}\n`,
  );
  console.log('| step | ms |');
  console.log('|---|---:|');
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
}

await main();
