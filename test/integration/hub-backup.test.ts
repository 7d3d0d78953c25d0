import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdCluster } from '../helpers/etcd.js';
import { request, waitFor } from '../helpers/http.js';
import { ensureBuilt, freePort, orchard, orchardRun, readToken, type Proc } from '../helpers/procs.js';

/**
 * `orchard hub backup` / `restore` (issue 19) round trips through real hub processes: SQLite
 * (backup taken while the hub runs) and etcd (etcd's snapshot, restored with etcdctl into a new
 * member). The restored hub answers the old admin token and an API token made before the backup.
 */

const DEPLOYMENT = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: kept }
spec:
  replicas: 1
  template:
    metadata: { labels: { app: kept } }
    spec: { containers: [{ name: c, image: "orchard-test/busybox:1", command: ["sleep", "3600"] }] }
`;

const root = mkdtempSync(join(tmpdir(), 'orchard-backup-'));
const procs: Proc[] = [];
afterAll(async () => {
  for (const p of procs) await p.kill9();
  rmSync(root, { recursive: true, force: true });
});
beforeAll(() => ensureBuilt(), 120_000);

async function startHub(dataDir: string, extra: string[] = [], env: Record<string, string> = {}): Promise<{ proc: Proc; server: string; ca: () => string }> {
  const [http, mqtt] = [await freePort(), await freePort()];
  const proc = orchard(
    ['hub', '--data-dir', dataDir, '--host', '127.0.0.1', '--http-port', String(http), '--mqtt-port', String(mqtt), '--no-cli-config', ...extra],
    env,
  );
  procs.push(proc);
  const server = `https://127.0.0.1:${http}`;
  const ca = (): string => readFileSync(join(dataDir, 'ca.crt'), 'utf8');
  await waitFor(
    `hub on ${dataDir}`,
    async () => {
      try {
        // A hub on etcd answers /healthz as a standby too (role: standby) until it leads.
        const r = await request(server, 'GET', '/healthz', { ca: ca(), timeoutMs: 1_000 });
        return r.status === 200 && (r.body as { role?: string }).role !== 'standby';
      } catch {
        return false;
      }
    },
    60_000,
    100,
  ).catch((e: unknown) => {
    throw new Error(`${String(e)}\n${proc.output()}`);
  });
  return { proc, server, ca };
}

async function leaderEpoch(server: string, ca: string): Promise<number> {
  const r = await request(server, 'GET', '/healthz', { ca });
  const epoch = (r.body as { leader?: { epoch?: number } }).leader?.epoch;
  if (typeof epoch !== 'number') throw new Error(`no leader epoch in /healthz: ${JSON.stringify(r.body)}`);
  return epoch;
}

describe('hub backup and restore, SQLite', () => {
  it('backs up a running hub and restores it on a new data dir: objects, admin token and API tokens come back', async () => {
    const a = join(root, 'a');
    const hub = await startHub(a);
    const admin = readToken(a);
    expect((await request(hub.server, 'POST', '/api/v1/apply', { token: admin, ca: hub.ca(), body: DEPLOYMENT })).status).toBe(200);
    const created = await request(hub.server, 'POST', '/api/v1/tokens', { token: admin, ca: hub.ca(), body: { type: 'api', role: 'viewer' } });
    expect(created.status).toBe(200);
    const viewer = (created.body as { token: string }).token;

    const out = join(root, 'backup-a');
    const b = orchardRun(['hub', 'backup', '--data-dir', a, '--out', out]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/backup of the sqlite hub/);
    const manifest = JSON.parse(readFileSync(join(out, 'backup.json'), 'utf8')) as { files: Record<string, string> };
    expect(Object.keys(manifest.files).sort()).toEqual(expect.arrayContaining(['auth.json', 'ca.crt', 'ca.key', 'orchard.db', 'secrets.key']));
    await hub.proc.stop();

    const c = join(root, 'c');
    const r = orchardRun(['hub', 'restore', '--from', out, '--data-dir', c]);
    expect(r.code, r.stderr).toBe(0);
    const restored = await startHub(c);
    expect(restored.ca()).toBe(hub.ca());
    const got = await request(restored.server, 'GET', '/api/v1/deployments/kept', { token: admin, ca: restored.ca() });
    expect(got.status).toBe(200);
    expect((await request(restored.server, 'GET', '/api/v1/deployments', { token: viewer, ca: restored.ca() })).status).toBe(200);
    await restored.proc.stop();
  }, 90_000);

  it('refuses a damaged backup before writing anything, and a data dir that holds a hub unless --force', () => {
    const out = join(root, 'backup-a');
    const damaged = join(root, 'damaged');
    execFileSync('cp', ['-a', out, damaged]);
    const db = readFileSync(join(damaged, 'orchard.db'));
    db[db.length - 1] = db[db.length - 1]! ^ 0xff;
    writeFileSync(join(damaged, 'orchard.db'), db);
    const target = join(root, 'never');
    const r = orchardRun(['hub', 'restore', '--from', damaged, '--data-dir', target]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/orchard\.db does not match its SHA-256/);
    expect(existsSync(target)).toBe(false);

    const occupied = orchardRun(['hub', 'restore', '--from', out, '--data-dir', join(root, 'c')]);
    expect(occupied.code).not.toBe(0);
    expect(occupied.stderr).toMatch(/already holds a hub.*--force/);
    expect(orchardRun(['hub', 'restore', '--from', out, '--data-dir', join(root, 'c'), '--force']).code).toBe(0);
    expect(orchardRun(['hub', 'backup', '--data-dir', join(root, 'c'), '--out', out]).stderr).toMatch(/already exists/);
  });
});

describe('hub backup and restore, etcd', () => {
  let etcd: EtcdCluster | undefined;
  afterAll(() => etcd?.close());

  it('snapshots etcd while the hub runs; a member restored from the snapshot serves a hub with the same objects, at a higher leader epoch than any before', async () => {
    // A three-member cluster (the snapshot comes from one member; the rebuild restores one from it,
    // as docs/backup.md's disaster recovery does).
    etcd = await EtcdCluster.start(3);
    const d = join(root, 'e');
    const storeFlag = `etcd://${etcd.endpoints.map((e) => e.replace('http://', '')).join(',')}`;
    const hub = await startHub(d, ['--store', storeFlag, '--leader-ttl', '2s'], { ORCHARD_HA_SECRET: 'backup-test-secret-0123456789' });
    const admin = readToken(d);
    expect((await request(hub.server, 'POST', '/api/v1/apply', { token: admin, ca: hub.ca(), body: DEPLOYMENT })).status).toBe(200);
    const out = join(root, 'backup-e');
    const b = orchardRun(['hub', 'backup', '--data-dir', d, '--out', out, '--store', storeFlag]);
    expect(b.code, b.stderr).toBe(0);
    expect(existsSync(join(out, 'etcd.snapshot'))).toBe(true);
    // The live cluster keeps no backup marker (only the snapshot holds one).
    const markers = execFileSync('etcdctl', ['--endpoints', etcd.endpoints[0]!, 'get', '--prefix', '--keys-only', '/orchard/meta/backup-marker/'], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    expect(markers.toString().trim()).toBe('');
    // After the backup: more writes and a new leader, so agents have seen an epoch above every
    // revision in the snapshot (docs/design/ha.md, review of 2026-12-02: a restore lowered epochs).
    for (let i = 0; i < 10; i++) {
      const cm = `apiVersion: orchard/v1\nkind: ConfigMap\nmetadata: { name: after-${i} }\ndata: { k: v }\n`;
      expect((await request(hub.server, 'POST', '/api/v1/apply', { token: admin, ca: hub.ca(), body: cm })).status).toBe(200);
    }
    await hub.proc.kill9();
    const again = await startHub(d, ['--store', storeFlag, '--leader-ttl', '2s'], { ORCHARD_HA_SECRET: 'backup-test-secret-0123456789' });
    const seenEpoch = await leaderEpoch(again.server, again.ca());
    await again.proc.kill9();
    etcd.close();
    etcd = undefined;

    const d2 = join(root, 'e2');
    const r = orchardRun(['hub', 'restore', '--from', out, '--data-dir', d2]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/etcdctl snapshot restore/);
    // The operator's step: a new member from the snapshot (etcdctl), then the hub on it.
    const [client, peer] = [await freePort(), await freePort()];
    const memberDir = join(root, 'member');
    execFileSync(
      'etcdctl',
      [
        'snapshot',
        'restore',
        join(out, 'etcd.snapshot'),
        '--name',
        'r0',
        '--data-dir',
        memberDir,
        '--initial-cluster',
        `r0=http://127.0.0.1:${peer}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${peer}`,
      ],
      { env: { ...process.env, ETCDCTL_API: '3' }, stdio: 'pipe' },
    );
    const member = spawn(
      'etcd',
      [
        '--name',
        'r0',
        '--data-dir',
        memberDir,
        '--listen-client-urls',
        `http://127.0.0.1:${client}`,
        '--advertise-client-urls',
        `http://127.0.0.1:${client}`,
        '--listen-peer-urls',
        `http://127.0.0.1:${peer}`,
      ],
      { stdio: 'ignore' },
    );
    try {
      const hub2 = await startHub(d2, ['--store', `etcd://127.0.0.1:${client}`, '--leader-ttl', '2s'], { ORCHARD_HA_SECRET: 'backup-test-secret-0123456789' });
      const got = await request(hub2.server, 'GET', '/api/v1/deployments/kept', { token: admin, ca: hub2.ca() });
      expect(got.status).toBe(200);
      // The restored group's leader has a higher epoch than any leader before the restore, so
      // agents take its desired sets (an epoch below would be dropped as a deposed leader's).
      expect(await leaderEpoch(hub2.server, hub2.ca())).toBeGreaterThan(seenEpoch);
      await hub2.proc.stop();
    } finally {
      member.kill('SIGKILL');
    }
  }, 150_000);
});
