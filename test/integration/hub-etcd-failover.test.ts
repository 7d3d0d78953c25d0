import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdClient } from '../../hub/store/etcd/etcd-client.js';
import { EtcdCluster } from '../helpers/etcd.js';
import { request, waitFor } from '../helpers/http.js';
import { ensureBuilt, freePort, orchard, readToken, type Proc } from '../helpers/procs.js';

/**
 * Hub processes on etcd (issue 19, first part): `orchard hub --store etcd://…` campaigns; the
 * leader serves, a standby keeps its ports closed, and a `kill -9` of the leader hands over to
 * the standby within the lease, with every acknowledged write there. The two hubs share one data
 * dir (CA, tokens, secrets key), as docs/design/ha.md says hubs must until that identity moves
 * into etcd.
 */

const TTL_S = 2;
const DEPLOYMENT = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 2
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: c, image: "orchard-test/busybox:1", command: ["sleep", "3600"] }] }
`;

describe('hub processes on etcd: leader, standby, failover', () => {
  let etcd: EtcdCluster;
  let client: EtcdClient;
  const dir = mkdtempSync(join(tmpdir(), 'orchard-hub-etcd-'));
  const hubs: Proc[] = [];
  beforeAll(async () => {
    ensureBuilt();
    etcd = await EtcdCluster.start(1);
    client = new EtcdClient({ endpoints: etcd.endpoints });
  }, 60_000);
  afterAll(async () => {
    for (const h of hubs) await h.kill9();
    client?.close();
    etcd?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const startHub = async (): Promise<{ proc: Proc; server: string }> => {
    const [http, mqtt] = [await freePort(), await freePort()];
    const proc = orchard([
      'hub',
      '--data-dir',
      dir,
      '--host',
      '127.0.0.1',
      '--http-port',
      String(http),
      '--mqtt-port',
      String(mqtt),
      '--no-cli-config',
      '--store',
      `etcd://${etcd.endpoints[0]!.replace('http://', '')}`,
      '--leader-ttl',
      `${TTL_S}s`,
    ]);
    hubs.push(proc);
    return { proc, server: `https://127.0.0.1:${http}` };
  };
  const ca = (): string => readFileSync(join(dir, 'ca.crt'), 'utf8');
  const healthy = async (server: string): Promise<boolean> => {
    try {
      return (await request(server, 'GET', '/healthz', { ca: ca(), timeoutMs: 1_000 })).status === 200;
    } catch {
      return false;
    }
  };

  it('the leader acknowledges a write only once etcd has it; a standby stays closed; kill -9 hands over within the lease', async () => {
    const a = await startHub();
    await waitFor('hub a serving', () => healthy(a.server), 30_000, 100).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${a.proc.output()}`);
    });
    const token = readToken(dir);
    const applied = await request(a.server, 'POST', '/api/v1/apply', { token, ca: ca(), body: DEPLOYMENT });
    expect(applied.status).toBe(200);
    // The durability barrier: the answer came after etcd had the object.
    const stored = await client.get('/orchard/objects/Deployment/web');
    expect(stored).toBeDefined();
    expect((JSON.parse(stored!.value.toString()) as { spec: { replicas: number } }).spec.replicas).toBe(2);
    const leaderA = (await client.get('/orchard/leader'))!;

    const b = await startHub();
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await healthy(b.server)).toBe(false); // standby: nothing listening
    expect(b.proc.output()).toMatch(/standby: another hub leads/);

    const killedAt = Date.now();
    await a.proc.kill9();
    await waitFor('hub b serving', () => healthy(b.server), 20_000, 100);
    const takeover = Date.now() - killedAt;
    // At most the lease (TTL) + loading the store + starting the hub; generous for a loaded box.
    expect(takeover).toBeLessThan(TTL_S * 1000 + 8_000);
    const leaderB = (await client.get('/orchard/leader'))!;
    expect(leaderB.createRevision).toBeGreaterThan(leaderA.createRevision);
    const got = await request(b.server, 'GET', '/api/v1/deployments/web', { token, ca: ca() });
    expect(got.status).toBe(200);
    expect((got.body as { spec: { replicas: number } }).spec.replicas).toBe(2);

    // A graceful stop revokes the lease: the next hub takes over without waiting for it to expire.
    const c = await startHub();
    await new Promise((r) => setTimeout(r, 500));
    const stoppedAt = Date.now();
    await b.proc.stop();
    await waitFor('hub c serving', () => healthy(c.server), 20_000, 100);
    expect(Date.now() - stoppedAt).toBeLessThan(TTL_S * 1000 + 6_000);
    const scaled = await request(c.server, 'POST', '/api/v1/deployments/web/scale', { token, ca: ca(), body: { replicas: 3 } });
    expect(scaled.status).toBe(200);
    const after = JSON.parse((await client.get('/orchard/objects/Deployment/web'))!.value.toString()) as { spec: { replicas: number } };
    expect(after.spec.replicas).toBe(3);
  }, 90_000);

  it('refuses a malformed --store with the flag named', () => {
    const r = orchard(['hub', '--store', 'etcd://nohost', '--data-dir', dir]);
    hubs.push(r);
    return waitFor('exit', () => r.child.exitCode !== null, 15_000).then(() => {
      expect(r.child.exitCode).not.toBe(0);
      expect(r.output()).toMatch(/--store/);
    });
  });
});
