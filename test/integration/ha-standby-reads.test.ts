import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { request, waitFor, type HttpResult } from '../helpers/http.js';
import { useHubGroup, type GroupHub } from '../helpers/hub-group.js';
import { orchardRun } from '../helpers/procs.js';

/**
 * Reads on a standby hub (issue 19), all real processes: three etcd members, two hubs. The standby
 * answers the object reads from etcd with the leader's bodies, checks tokens as the leader does,
 * refuses writes with ERR_NOT_LEADER, serves `orchard get` directly, and goes on reading after a
 * `kill -9` of the leader, before it has taken over (a long leader TTL keeps that window open).
 */

const TTL_S = 12;
const manifest = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web, labels: { app: web } }
spec:
  replicas: 3
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: c, image: "orchard-test/busybox:1", command: ["sleep", "3600"] }] }
---
apiVersion: orchard/v1
kind: ConfigMap
metadata: { name: settings }
data: { mode: fast }
`;

describe('a standby hub serves reads from etcd', () => {
  const group = useHubGroup({ tmpPrefix: 'orchard-standby-reads-', secret: 'standby-reads-secret-0123456789', ttlSeconds: TTL_S });
  const root = group.root;

  it('same bodies as the leader, same auth, writes refused, and reads go on with the leader killed', async () => {
    const a = await group.startHub('a');
    const { ca, caFile, token } = await group.firstLeader(a, { timeoutMs: 40_000 });
    const b = await group.startHub('b');
    await group.waitRole(b, 'standby', ca, { timeoutMs: 40_000 });

    /** `t = null`: no credential. */
    const get = (h: GroupHub, path: string, t: string | null = token): Promise<HttpResult> =>
      request(h.server, 'GET', path, { ca, ...(t !== null ? { token: t } : {}) });
    const applied = await request(a.server, 'POST', '/api/v1/apply', { token, ca, body: manifest });
    expect(applied.status).toBe(200);
    // An acknowledged write is on the standby at once (its read waits for what etcd had).
    const ackRead = await get(b, '/api/v1/deployments/web');
    expect(ackRead.status).toBe(200);
    expect((ackRead.body as { spec: { replicas: number } }).spec.replicas).toBe(3);
    await waitFor('3 pods on the leader', async () => ((await get(a, '/api/v1/pods')).body as { items: unknown[] }).items.length === 3, 20_000);
    const firstPod = ((await get(a, '/api/v1/pods')).body as { items: { metadata: { name: string } }[] }).items[0]!.metadata.name;

    // The same bodies: the standby's read, between two equal leader reads. The leader answers from
    // its memory, which holds its controllers' writes a few milliseconds before etcd has them (they
    // are acknowledged to nobody), so the standby may show the state just before: try again then.
    for (const path of [
      '/api/v1/pods',
      `/api/v1/pods/${firstPod}`,
      '/api/v1/deployments',
      '/api/v1/deployments/web',
      '/api/v1/configmaps/settings',
      '/api/v1/nodes',
      '/api/v1/whoami',
    ]) {
      let last: { leader: HttpResult; standby: HttpResult } | undefined;
      let same = false;
      for (let attempt = 0; attempt < 50 && !same; attempt++) {
        if (attempt > 0) await new Promise((r) => setTimeout(r, 100));
        const before = await get(a, path);
        const standby = await get(b, path);
        const after = await get(a, path);
        expect(before.status, path).toBe(200);
        expect(standby.status, path).toBe(200);
        last = { leader: before, standby };
        same = before.text === after.text && standby.text === before.text;
      }
      if (!same) expect(last!.standby.body, path).toEqual(last!.leader.body);
    }

    // Auth as on the leader; writes and other calls go to the leader.
    const anonymous = await get(b, '/api/v1/pods', null);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).toMatchObject({ code: 'ERR_UNAUTHENTICATED' });
    const write = await request(b.server, 'POST', '/api/v1/apply', { token, ca, body: manifest });
    expect(write.status).toBe(503);
    expect(write.body).toMatchObject({ code: 'ERR_NOT_LEADER', details: { leader: a.server } });

    // The CLI given only the standby: answered there.
    const cliEnv = { ORCHARD_TOKEN: token, ORCHARD_CONFIG: join(root, 'no-config') };
    const cli = orchardRun(['get', 'pods', '--server', b.server, '--ca', caFile], cliEnv);
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(firstPod);

    // kill -9 the leader: the standby reads on, before it has taken over.
    const last = (await get(a, '/api/v1/pods')).body as { items: { metadata: { name: string } }[] };
    await a.proc.kill9();
    const killedAt = Date.now();
    const during = await get(b, '/api/v1/pods');
    const readMs = Date.now() - killedAt;
    expect(await group.role(b, ca)).toBe('standby');
    expect(during.status).toBe(200);
    expect((during.body as typeof last).items.map((p) => p.metadata.name)).toEqual(last.items.map((p) => p.metadata.name));
    const cliDuring = orchardRun(['get', 'deployments', '--server', b.server, '--ca', caFile], cliEnv);
    expect(cliDuring.code).toBe(0);
    expect(cliDuring.stdout).toContain('web');
    expect(await group.role(b, ca)).toBe('standby');

    // Then it takes over and serves the same objects as the leader.
    await group.waitRole(b, 'leader', ca, { timeoutMs: 40_000, intervalMs: 100 });
    const takeoverMs = Date.now() - killedAt;
    const after = await get(b, '/api/v1/pods');
    expect((after.body as typeof last).items.map((p) => p.metadata.name)).toEqual(last.items.map((p) => p.metadata.name));
    console.log(
      `ha-standby-reads: standby answered GET /api/v1/pods ${readMs} ms after kill -9 of the leader; took over after ${takeoverMs} ms (TTL ${TTL_S} s)`,
    );
  }, 180_000);
});
