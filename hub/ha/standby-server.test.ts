import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../protocol/clock.js';
import { request } from '../../test/helpers/http.js';
import { FakeEtcd } from '../../test/helpers/fake-etcd.js';
import { buildApi } from '../api/server.js';
import { createLogger } from '../log.js';
import { Operations } from '../operations.js';
import { AuthStore } from '../security/auth-store.js';
import { LoginLimiter, sourceKey } from '../security/rate-limit.js';
import { bootstrapKey, sealBootstrap } from '../store/etcd/bootstrap.js';
import type { EtcdClient } from '../store/etcd/etcd-client.js';
import { EtcdStore } from '../store/etcd/etcd-store.js';
import { mockEvent, mockNode, mockPod } from '../store/store-contract.js';
import { StandbyServer, isStandbyRead } from './standby-server.js';
import { StoreMirror } from './store-mirror.js';

/**
 * A standby's read port against the leader's API over one (in-memory) etcd: the same bodies for
 * every object read, the same credential checks from the group's auth.json, ERR_NOT_LEADER for
 * everything else.
 */

const PREFIX = '/orchard/';
const KEY = bootstrapKey('standby-server-test-secret-01', PREFIX);
const log = createLogger('hub', 'silent');
const LEADER = { id: 'hub-a', epoch: 7, api: 'https://10.0.0.1:8443', mqtt: 'mqtts://10.0.0.1:8883' };

const web = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web, labels: { app: web } }
spec:
  replicas: 3
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: c, image: "orchard-test/busybox:1" }] }
`;

describe('a standby serves object reads like the leader', () => {
  const etcd = new FakeEtcd();
  const dir = mkdtempSync(join(tmpdir(), 'orchard-standby-reads-'));
  let store: EtcdStore;
  let auth: AuthStore;
  let api: FastifyInstance;
  let mirror: StoreMirror;
  let standby: StandbyServer;
  let base: string;
  const tokens = {} as Record<'admin' | 'viewer' | 'scrape', { token: string; id: string }>;

  beforeAll(async () => {
    store = await EtcdStore.open({ client: etcd as unknown as EtcdClient, prefix: PREFIX, compactEveryMs: 0 });
    auth = AuthStore.open(dir, {
      caFingerprint: 'b'.repeat(64),
      onPersist: (file, content) => store.putRaw(`${PREFIX}bootstrap/${file}`, sealBootstrap(KEY, file, content)),
    });
    for (const role of ['admin', 'viewer', 'scrape'] as const) tokens[role] = auth.createApiToken({ name: role, role });
    const ops = new Operations({ store, log, now: () => new Date() });
    const limiter = new LoginLimiter();
    api = await buildApi({
      store,
      ops,
      log,
      auth: {
        authenticate: (t) => auth.authenticateApiToken(t),
        limited: (source, identity) => !limiter.check(sourceKey(source), identity).allowed,
        failed: (source, identity) => void limiter.recordFailure(sourceKey(source), identity),
        caPem: () => undefined,
        join: () => {
          throw new Error('not in this test');
        },
        createJoinToken: () => {
          throw new Error('not in this test');
        },
        createApiToken: () => {
          throw new Error('not in this test');
        },
        listTokens: () => auth.listTokens(),
        revokeNode: () => undefined,
      },
      mqttPort: () => 8883,
      deleteNode: async () => undefined,
    });
    store.create(mockNode('n1'));
    ops.apply(web);
    store.transaction(() => {
      for (let i = 0; i < 3; i++) store.create(mockPod(`web-${i}`, { nodeName: i < 2 ? 'n1' : 'n2', owner: 'web', labels: { app: 'web' } }));
      store.create(mockPod('other', { labels: { app: 'other' } }));
    });
    store.create(mockEvent('ev-1'));
    store.create({
      apiVersion: 'orchard/v1',
      kind: 'Secret',
      metadata: { name: 'db', labels: {}, annotations: {} },
      type: 'Opaque',
      data: { password: 'enc:v1:abc' },
    });
    await store.sync();

    mirror = new StoreMirror({ client: etcd, prefix: PREFIX, key: KEY, clock: systemClock, log });
    await mirror.start();
    standby = await StandbyServer.start({ host: '127.0.0.1', port: 0, id: 'hub-b', members: { leader: () => LEADER }, reads: { mirror, log } });
    base = `http://127.0.0.1:${standby.port}`;
  });
  afterAll(async () => {
    await standby?.close();
    mirror?.stop();
    await api?.close();
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const fromLeader = async (path: string, token = tokens.viewer.token): Promise<{ status: number; body: unknown }> => {
    const r = await api.inject({ method: 'GET', url: path, headers: { authorization: `Bearer ${token}` } });
    return { status: r.statusCode, body: r.json() };
  };
  /** `null`: no credential at all. */
  const fromStandby = (path: string, token: string | null = tokens.viewer.token): ReturnType<typeof request> =>
    request(base, 'GET', path, token === null ? {} : { token });

  it.each([
    '/api/v1/pods',
    '/api/v1/pods?labelSelector=app%3Dweb',
    '/api/v1/pods?node=n1',
    '/api/v1/pods/web-1',
    '/api/v1/po/web-2',
    '/api/v1/deployments',
    '/api/v1/deployments/web',
    '/api/v1/nodes',
    '/api/v1/nodes/n1',
    '/api/v1/events',
    '/api/v1/secrets',
    '/api/v1/secrets/db',
    '/api/v1/services',
    '/api/v1/configmaps',
    '/api/v1/revisions',
    '/api/v1/whoami',
    '/api/v1/pods/nope',
    '/api/v1/pods?labelSelector=broken',
  ])('GET %s: the same status and body as the leader', async (path) => {
    const leader = await fromLeader(path);
    const r = await fromStandby(path);
    expect({ status: r.status, body: r.body }).toEqual(leader);
  });

  it('shows Secrets as the leader does: keys only', async () => {
    const r = await fromStandby('/api/v1/secrets/db');
    expect(r.status).toBe(200);
    expect(JSON.stringify(r.body)).not.toContain('enc:v1:abc');
  });

  it('checks the token and role as the leader does', async () => {
    const none = await fromStandby('/api/v1/pods', null);
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ code: 'ERR_UNAUTHENTICATED' });
    const wrong = await fromStandby('/api/v1/pods', `orc_${tokens.viewer.id}.wrongsecretwrongsecretwrongsecre`);
    expect(wrong.status).toBe(401);
    const scrape = await fromStandby('/api/v1/pods', tokens.scrape.token);
    expect({ status: scrape.status, body: scrape.body }).toEqual(await fromLeader('/api/v1/pods', tokens.scrape.token));
    expect(scrape.status).toBe(403);
  });

  it('refuses a token as soon as the leader has revoked it', async () => {
    const t = auth.createApiToken({ name: 'short', role: 'viewer' });
    await store.sync();
    expect((await fromStandby('/api/v1/pods', t.token)).status).toBe(200);
    auth.revokeApiToken(t.id);
    await store.sync(); // the leader answers the revocation once etcd has it
    expect((await fromStandby('/api/v1/pods', t.token)).status).toBe(401);
  });

  it('sees a write the leader acknowledged before the read', async () => {
    store.create(mockPod('fresh-one'));
    await store.sync();
    const r = await fromStandby('/api/v1/pods/fresh-one');
    expect(r.status).toBe(200);
  });

  it.each([
    ['POST', '/api/v1/apply'],
    ['DELETE', '/api/v1/pods/web-1'],
    ['POST', '/api/v1/deployments/web/scale'],
    ['GET', '/api/v1/tokens'],
    ['GET', '/api/v1/watch'],
    ['GET', '/api/v1/pods/web-1/logs'],
    ['GET', '/api/v1/metrics/pods'],
    ['GET', '/api/v1/deployments/web/rollout/status'],
    ['GET', '/api/v1/constructor'],
    ['GET', '/'],
  ])('%s %s: ERR_NOT_LEADER naming the leader, whatever the credential', async (method, path) => {
    for (const token of [undefined, tokens.admin.token]) {
      const r = await request(base, method, path, token === undefined ? {} : { token });
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ code: 'ERR_NOT_LEADER', details: { leader: LEADER.api, leaderId: LEADER.id, epoch: LEADER.epoch } });
    }
  });

  it('answers /healthz as before', async () => {
    const r = await request(base, 'GET', '/healthz');
    expect(r.body).toEqual({ ok: true, role: 'standby', id: 'hub-b', leader: LEADER });
  });

  it('sends the read to the leader when etcd cannot confirm its copy (no quorum)', async () => {
    etcd.quorum = false;
    try {
      const r = await fromStandby('/api/v1/pods');
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ code: 'ERR_NOT_LEADER', details: { leader: LEADER.api } });
      expect((r.body as { message: string }).message).toMatch(
        /confirms its copy is current: etcd did not confirm it \(ERR_[A-Z_]+; the hub's log has etcd's error\)/,
      );
      // No credential: refused as on the leader, without asking etcd.
      expect((await fromStandby('/api/v1/pods', null)).status).toBe(401);
    } finally {
      etcd.quorum = true;
    }
  });

  it('classifies reads before any credential', () => {
    expect(isStandbyRead('GET', '/api/v1/pods?labelSelector=a%3Db')).toBe(true);
    expect(isStandbyRead('GET', '/api/v1/Deployments/web')).toBe(true);
    expect(isStandbyRead('GET', '/api/v1/whoami')).toBe(true);
    expect(isStandbyRead('HEAD', '/api/v1/pods')).toBe(false);
    expect(isStandbyRead('GET', '/api/v1/pods/web/logs')).toBe(false);
    expect(isStandbyRead('GET', '/api/v1/%E0%A4%A')).toBe(false);
    expect(isStandbyRead('GET', '/api/v1/hasOwnProperty')).toBe(false);
  });
});

describe('a standby that cannot read etcd (no quorum) says so', () => {
  const since = Date.parse('2026-12-06T03:00:00Z');
  const now = since + 42_000;
  const start = (leader: typeof LEADER | undefined) =>
    StandbyServer.start({
      host: '127.0.0.1',
      port: 0,
      id: 'hub-b',
      members: { leader: () => leader },
      unreadable: () => ({ since, error: 'etcd: no endpoint answered /v3/kv/range: request timed out' }),
      now: () => now,
    });

  it('in /healthz (degraded, since when; etcd’s own error stays in the log) and in every refused call', async () => {
    const s = await start(undefined);
    try {
      const base = `http://127.0.0.1:${s.port}`;
      const h = await request(base, 'GET', '/healthz');
      expect(h.status).toBe(200);
      expect(h.body).toEqual({
        ok: true,
        role: 'standby',
        id: 'hub-b',
        degraded: true,
        degradedReason: expect.stringMatching(/for 42 s \(is a quorum of its members up\? can this hub reach them\?\)/),
        degradedSince: '2026-12-06T03:00:00.000Z',
      });
      expect(JSON.stringify(h.body)).not.toMatch(/timed out/);
      const w = await request(base, 'POST', '/api/v1/apply', { body: 'kind: Deployment' });
      expect(w.status).toBe(503);
      expect(w.body).toMatchObject({
        code: 'ERR_NOT_LEADER',
        message: expect.stringMatching(/cannot reach the group: etcd has answered none of its requests for 42 s/),
      });
      expect((w.body as { message: string }).message).not.toMatch(/election is under way/);
      expect((w.body as { details?: object }).details).toEqual({});
    } finally {
      await s.close();
    }
  });

  it('names the last leader etcd named, and still points clients at it', async () => {
    const s = await start(LEADER);
    try {
      const w = await request(`http://127.0.0.1:${s.port}`, 'DELETE', '/api/v1/deployments/web');
      expect(w.status).toBe(503);
      expect(w.body).toMatchObject({
        code: 'ERR_NOT_LEADER',
        message: expect.stringMatching(/the last leader etcd named was https:\/\/10\.0\.0\.1:8443/),
        details: { leader: LEADER.api, leaderId: LEADER.id },
      });
    } finally {
      await s.close();
    }
  });
});
