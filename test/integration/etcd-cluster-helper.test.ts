import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EtcdCluster } from '../helpers/etcd.js';
import { freePort } from '../helpers/procs.js';

/**
 * The helper that starts real etcd members for the etcd tests. A CI run failed with "etcd member
 * m2 not healthy within 20000 ms" and nothing else: the member had most likely lost a port picked
 * free to another socket before it bound it. The helper now picks ports below the ephemeral
 * range, starts again on new ports when a member ends while starting, and says why a start
 * failed with the member's own log.
 */
describe('EtcdCluster (test helper)', () => {
  const servers: net.Server[] = [];
  let cluster: EtcdCluster | undefined;
  afterEach(async () => {
    cluster?.close();
    cluster = undefined;
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  const hold = async (): Promise<number> => {
    const port = await freePort();
    // Other members dial the taken peer port: hang up on them, so close() does not wait for them.
    const s = net.createServer((sock) => sock.destroy());
    await new Promise<void>((r) => s.listen(port, '127.0.0.1', r));
    servers.push(s);
    return port;
  };

  it('picks ports below the ephemeral range and the endpoint ports', async () => {
    const { readFileSync } = await import('node:fs');
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    for (let i = 0; i < 20; i++) {
      const p = await freePort();
      expect(p).toBeGreaterThanOrEqual(20_000);
      expect(p).toBeLessThan(Math.min(low, 30_000)); // and under the default endpoint ports
    }
  });

  it('starts again on other ports when a member cannot bind its own, and the cluster works', async () => {
    const taken = await hold();
    let picks = 0;
    // The first member's peer port is already taken: that member ends at once ("address already in use").
    const pickPort = async (): Promise<number> => (++picks === 2 ? taken : freePort());
    cluster = await EtcdCluster.start(3, { pickPort });
    expect(picks).toBeGreaterThan(6); // a second round of six ports
    expect(cluster.endpoints.join(',')).not.toContain(`:${taken}`);
    const put = await fetch(`${cluster.endpoints[2]}/v3/kv/put`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from('k').toString('base64'), value: Buffer.from('v').toString('base64') }),
    });
    expect(put.ok).toBe(true);
  }, 60_000);

  it('gives up after three starts that end at once, with the member log in the error', async () => {
    const taken = await hold();
    let picks = 0;
    const pickPort = async (): Promise<number> => (++picks % 2 === 0 ? taken : freePort());
    const err = await EtcdCluster.start(1, { pickPort }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toMatch(/etcd member m0 ended \(exit code \d+\) before it was healthy/);
    expect(msg).toContain('address already in use');
    expect(picks).toBe(6); // three attempts of two ports each
  }, 60_000);
});
