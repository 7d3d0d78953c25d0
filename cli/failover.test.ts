import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bufferIo } from './io.js';
import { runCli } from './run.js';
import { T0, mockNode, startFakeHub, type Route } from './test-fixtures.js';

/** Several hubs (an etcd group, issue 19): --server A,B / ORCHARD_SERVER / config, ERR_NOT_LEADER and unreachable hubs. */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orchard-cli-ha-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

async function hub(route: Route) {
  const h = await startFakeHub(route);
  closers.push(h.close);
  return h;
}
async function deadUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
async function cli(argv: string[], env: Record<string, string>) {
  const b = bufferIo({ env: { ORCHARD_TOKEN: 'tok-123', ORCHARD_CONFIG: join(dir, 'no-such-config'), ...env }, homeDir: dir, now: () => T0 });
  const code = await runCli(argv, b.io);
  return { code, stdout: b.stdout(), stderr: b.stderr() };
}
const nodes: Route = (req) =>
  req.url === '/api/v1/nodes' ? { body: { items: [mockNode('pi-1')] } } : req.url.startsWith('/api/v1/pods') ? { body: { items: [] } } : undefined;
const notLeader =
  (leader?: string): Route =>
  () => ({
    status: 503,
    body: { code: 'ERR_NOT_LEADER', message: 'this hub is a standby', ...(leader ? { details: { leader } } : {}) },
  });

describe('CLI with several hubs', () => {
  it('passes over a hub that refuses the connection (--server A,B)', async () => {
    const dead = await deadUrl();
    const leader = await hub(nodes);
    const r = await cli(['get', 'nodes', '--server', `${dead},${leader.url}`], {});
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('pi-1');
  });

  it('goes to the leader a standby names, before the other servers it knows', async () => {
    const leader = await hub(nodes);
    const other = await hub(notLeader());
    const standby = await hub(notLeader(leader.url));
    const r = await cli(['get', 'nodes'], { ORCHARD_SERVER: `${standby.url}, ${other.url}` });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('pi-1');
    expect(standby.requests).toHaveLength(1);
    expect(other.requests).toHaveLength(0);
    // Both of `get nodes`' reads (nodes, then pods for the counts) went straight to the leader found by the first.
    expect(leader.requests.map((q) => `${q.method} ${q.url.split('?')[0]} ${q.headers.authorization}`)).toEqual([
      'GET /api/v1/nodes Bearer tok-123',
      'GET /api/v1/pods Bearer tok-123',
    ]);
  });

  it('retries a write only where it cannot have happened: ERR_NOT_LEADER, or a connection never made', async () => {
    const dead = await deadUrl();
    const leader = await hub((req) => (req.method === 'POST' ? { body: { deployment: 'web', replicas: 2 } } : undefined));
    const standby = await hub(notLeader());
    const r = await cli(['scale', 'deployment', 'web', '--replicas', '2'], { ORCHARD_SERVER: [dead, standby.url, leader.url].join(',') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(standby.requests).toHaveLength(1);
    expect(leader.requests.map((q) => `${q.method} ${q.url}`)).toEqual(['POST /api/v1/deployments/web/scale']);
  });

  it("a hub's own error is final (not retried elsewhere)", async () => {
    const first = await hub(() => ({ status: 404, body: { code: 'ERR_NOT_FOUND', message: 'no Deployment web' } }));
    const second = await hub(nodes);
    const r = await cli(['get', 'deployment', 'web'], { ORCHARD_SERVER: `${first.url},${second.url}` });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no Deployment web');
    expect(second.requests).toHaveLength(0);
  });

  it('when no hub leads, says so with the last answer', async () => {
    const a = await hub(notLeader());
    const b = await hub(notLeader());
    const r = await cli(['get', 'nodes'], { ORCHARD_SERVER: `${a.url},${b.url}` });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('this hub is a standby');
    expect(a.requests).toHaveLength(1);
    expect(b.requests).toHaveLength(1);
  });

  it('reads several servers from the config file, and refuses a malformed list naming the entry', async () => {
    const dead = await deadUrl();
    const leader = await hub(nodes);
    const config = join(dir, 'config-ha');
    await writeFile(config, JSON.stringify({ server: `${dead},${leader.url}`, token: 'tok-123' }));
    const r = await cli(['get', 'nodes'], { ORCHARD_CONFIG: config });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('pi-1');
    const bad = await cli(['get', 'nodes', '--server', `${leader.url},ftp://x`], {});
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--server');
  });
});
