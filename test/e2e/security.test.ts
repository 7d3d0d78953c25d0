import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import mqtt, { type IClientOptions } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { request, waitFor } from '../helpers/http.js';
import { containersOf, freePort, orchard, orchardRun, type Proc } from '../helpers/procs.js';

/**
 * Security as a user meets it, with real hub and agent processes from dist/ (npm run build first)
 * on loopback and the real Docker Engine. Hostile clients that are not agents connect from other
 * loopback addresses (127.0.0.3x) so their failures do not count against 127.0.0.1, which the
 * agents and the CLI share (the limiter locks one credential from a source after 10 failures a minute, the whole source after 100).
 */

/** Waits for a process to exit; its exit code (or -1 if it was still running after `ms`). */
function exitCode(p: Proc, ms = 30_000): Promise<number> {
  const { child } = p;
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(-1), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
}

function mqttRefusal(url: string, ca: string, opts: { clientId: string; username?: string; password?: string }): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // mqtt.js hands its options to tls.connect: localAddress picks the source (its types omit it).
    const options: IClientOptions & { localAddress?: string } = { ca, reconnectPeriod: 0, connectTimeout: 5_000, localAddress: '127.0.0.31', ...opts };
    const c = mqtt.connect(url, options);
    c.once('connect', () => {
      c.end(true);
      reject(new Error('the hub accepted the connection'));
    });
    c.once('error', (err) => {
      c.end(true);
      resolve((err as { code?: unknown }).code);
    });
  });
}

/** GET as admin from 127.0.0.32: the revoked agent's retries count against 127.0.0.1 and may lock it. */
function getFromOtherSource(c: Cluster, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      new URL(path, c.server),
      { ca: c.caPem(), localAddress: '127.0.0.32', headers: { authorization: `Bearer ${c.adminToken}` }, agent: false },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }));
      },
    );
    req.on('error', reject);
  });
}

const pinned = (name: string, node: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
      nodeSelector: { orchard.dev/hostname: ${node} }
      terminationGracePeriodSeconds: 1
      containers:
        - name: c
          image: ${TEST_IMAGE}
          command: ["sleep", "3600"]
          resources: { requests: { cpu: 10m, memory: 8Mi } }
`;

describe('security end to end (real processes, real TLS, real Docker)', () => {
  const c = new Cluster();
  const hubDir = (): string => join(c.dir, 'hub');
  let hub2: Proc | undefined;

  beforeAll(async () => {
    await c.startHub();
    await c.startAgent('a');
    await c.waitNodeReady('a');
  });
  afterAll(async () => {
    await hub2?.kill9();
    await c.cleanup();
  });

  it('keeps the hub secrets 0600 in a 0700 data dir', () => {
    expect(statSync(hubDir()).mode & 0o777).toBe(0o700);
    for (const f of ['ca.key', 'server.key', 'auth.json', 'admin.token']) {
      expect(existsSync(join(hubDir(), f)), f).toBe(true);
      expect((statSync(join(hubDir(), f)).mode & 0o777).toString(8), f).toBe('600');
    }
    // Hashes only: the admin token itself is not in auth.json.
    expect(readFileSync(join(hubDir(), 'auth.json'), 'utf8')).not.toContain(c.adminToken.split('.')[1] ?? 'never');
  });

  it('refuses plain HTTP on the HTTPS port', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: c.httpPort, path: '/api/v1/nodes', timeout: 5_000 }, (res) => {
        res.resume();
        resolve(`status ${res.statusCode ?? 0}`);
      });
      req.on('error', (err) => resolve(`error ${(err as { code?: string }).code ?? err.message}`));
      req.on('timeout', () => req.destroy(new Error('timeout')));
    });
    expect(outcome).toMatch(/^error |^status 4/);
  });

  it('refuses unauthenticated and wrong-password MQTT connections', async () => {
    const url = `mqtts://127.0.0.1:${c.mqttPort}`;
    expect(await mqttRefusal(url, c.caPem(), { clientId: 'anon' })).toBe(4);
    expect(await mqttRefusal(url, c.caPem(), { clientId: c.nodeName('a'), username: c.nodeName('a'), password: 'not-the-credential-0000000000000' })).toBe(4);
    expect(await mqttRefusal(url, c.caPem(), { clientId: 'cli-x', username: 'token', password: 'orc_000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' })).toBe(4);
  });

  it('an agent with an expired join token exits non-zero and says why', async () => {
    const r = await c.api('POST', '/api/v1/tokens', { type: 'join', ttlSeconds: 1, uses: 5 });
    const token = (r.body as { token: string }).token;
    await new Promise((res) => setTimeout(res, 1_500));
    const p = await c.startAgent('expired', { token });
    expect(await exitCode(p)).not.toBe(0);
    expect(p.output()).toMatch(/join token expired at/);
    expect((await c.api('GET', `/api/v1/nodes/${c.nodeName('expired')}`)).status).toBe(404);
  });

  it('a single-use join token works once; a second agent using it exits non-zero and says why', async () => {
    const token = await c.joinToken(1);
    await c.startAgent('b', { token });
    await c.waitNodeReady('b');
    const p = await c.startAgent('reuse', { token });
    expect(await exitCode(p)).not.toBe(0);
    expect(p.output()).toMatch(/join token used up \(1 uses\)/);
  });

  it('an agent without identity.json whose name is enrolled is refused, says what to run, and keeps waiting (the enrolled node is untouched)', async () => {
    const name = c.nodeName('a'); // enrolled and running since beforeAll
    const token = await c.joinToken(2);
    const p = orchard([
      'agent',
      '--hub',
      `127.0.0.1:${c.httpPort}`,
      '--token',
      token,
      '--name',
      name,
      '--data-dir',
      join(c.dir, 'agents', 'a-wiped'),
      '--no-services',
    ]);
    try {
      await waitFor('the refusal is logged', () => p.output().includes('is already enrolled'), 30_000, 200);
      expect(p.output()).toContain(
        `run \`orchard node delete ${name}\` on the hub, or create a join token with \`orchard token create --replace-node ${name}\``,
      );
      expect(p.output()).toContain('Asking again in 60 s');
      expect(p.child.exitCode).toBeNull(); // waiting, not crash-looping under systemd
      expect(existsSync(join(c.dir, 'agents', 'a-wiped', 'identity.json'))).toBe(false);
      await c.waitNodeReady('a', 5_000);
      const tokens = (await c.api('GET', '/api/v1/tokens')).body as { joinTokens: Array<{ used: number; uses?: number }> };
      expect(tokens.joinTokens.at(-1)).toMatchObject({ used: 0, uses: 2 }); // the refusal spent nothing
    } finally {
      await p.kill9();
    }
  });

  it('a viewer token cannot apply through the CLI (exit 1, clear message), and stops working once revoked', async () => {
    const v = await c.api('POST', '/api/v1/tokens', { type: 'api', role: 'viewer', name: 'e2e-viewer' });
    const viewer = (v.body as { token: string }).token;
    const file = join(c.dir, 'viewer.yaml');
    writeFileSync(file, pinned('viewer-try', c.nodeName('a')));
    const r = orchardRun(['apply', '-f', file, '--server', c.server, '--token', viewer, '--ca', join(hubDir(), 'ca.crt')], {
      ORCHARD_CONFIG: join(c.dir, 'no-config'),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/role "viewer" may not do this \(needs operator\)/);
    expect((await c.api('GET', '/api/v1/deployments/viewer-try')).status).toBe(404);
    // The same token can read.
    const g = orchardRun(['get', 'nodes', '--server', c.server, '--token', viewer, '--ca', join(hubDir(), 'ca.crt')], {
      ORCHARD_CONFIG: join(c.dir, 'no-config'),
    });
    expect(g.code, g.stderr).toBe(0);
    // Until an admin revokes it.
    const id = (v.body as { id: string }).id;
    const revoked = c.cli(['token', 'revoke', id]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(`api token ${id} revoked`);
    const after = orchardRun(['get', 'nodes', '--server', c.server, '--token', viewer, '--ca', join(hubDir(), 'ca.crt')], {
      ORCHARD_CONFIG: join(c.dir, 'no-config'),
    });
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/unknown, expired or revoked/);
  });

  it('the CLI finds server and token in ORCHARD_SERVER/ORCHARD_TOKEN, and in the config file', () => {
    const noConfig = { ORCHARD_CONFIG: join(c.dir, 'no-config') };
    const env = orchardRun(['get', 'nodes', '--ca', join(hubDir(), 'ca.crt')], { ...noConfig, ORCHARD_SERVER: c.server, ORCHARD_TOKEN: c.adminToken });
    expect(env.code, env.stderr).toBe(0);
    expect(env.stdout).toContain(c.nodeName('a'));
    const cfg = join(c.dir, 'cli-config.json');
    writeFileSync(cfg, JSON.stringify({ server: c.server, token: c.adminToken, caFile: join(hubDir(), 'ca.crt') }), { mode: 0o600 });
    const file = orchardRun(['get', 'nodes'], { ORCHARD_CONFIG: cfg, ORCHARD_SERVER: '', ORCHARD_TOKEN: '' });
    expect(file.code, file.stderr).toBe(0);
    expect(file.stdout).toContain(c.nodeName('a'));
    const none = orchardRun(['get', 'nodes', '--server', c.server, '--ca', join(hubDir(), 'ca.crt')], { ...noConfig, ORCHARD_TOKEN: '' });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/Authorization|token/i);
  });

  it("an agent refuses a hub whose CA is not the one its token pins, before sending the token; the hub's first start writes a working CLI config", async () => {
    const httpPort = await freePort();
    const mqttPort = await freePort();
    const dir2 = join(c.dir, 'hub2');
    const cliConfig = join(c.dir, 'hub2-cli-config');
    hub2 = orchard(['hub', '--data-dir', dir2, '--host', '127.0.0.1', '--http-port', String(httpPort), '--mqtt-port', String(mqttPort)], {
      ORCHARD_CONFIG: cliConfig,
    });
    const server2 = `https://127.0.0.1:${httpPort}`;
    await waitFor(
      'hub 2 healthz',
      async () =>
        existsSync(join(dir2, 'ca.crt')) && (await request(server2, 'GET', '/healthz', { ca: readFileSync(join(dir2, 'ca.crt'), 'utf8') })).status === 200,
      30_000,
      200,
    );

    const token = await c.joinToken(1); // pins hub 1's CA
    const args = [
      'agent',
      '--hub',
      `127.0.0.1:${httpPort}`,
      '--token',
      token,
      '--name',
      c.nodeName('mitm'),
      '--data-dir',
      join(c.dir, 'agents', 'mitm'),
      '--no-services',
    ];
    const p = orchard(args);
    c.agents.set('mitm', p);
    expect(await exitCode(p)).not.toBe(0);
    expect(p.output()).toMatch(/presents CA [0-9a-f]{64}, but the join token pins CA [0-9a-f]{64}/);
    expect(existsSync(join(c.dir, 'agents', 'mitm', 'identity.json'))).toBe(false);
    // Hub 2 served its CA, and its join endpoint was never called (debug access log + token store).
    await waitFor('hub 2 access log', () => hub2?.output().includes('url=/api/v1/ca'), 5_000);
    expect(hub2.output()).not.toContain('/api/v1/join');
    const auth2 = JSON.parse(readFileSync(join(dir2, 'auth.json'), 'utf8')) as { nodes: unknown[] };
    expect(auth2.nodes).toEqual([]);

    // Hub 2 wrote the CLI config on first start: the CLI needs no flags at all.
    expect((statSync(cliConfig).mode & 0o777).toString(8)).toBe('600');
    const r = orchardRun(['get', 'nodes'], { ORCHARD_CONFIG: cliConfig, ORCHARD_SERVER: '', ORCHARD_TOKEN: '' });
    expect(r.code, r.stderr).toBe(0);
  });

  // Last: the revoked agent keeps retrying from 127.0.0.1, and each refusal counts against that source.
  it('a revoked node is disconnected, cannot reconnect, keeps its containers running, and is no longer listed', async () => {
    const node = c.nodeName('a');
    const file = join(c.dir, 'pinned.yaml');
    writeFileSync(file, pinned('pinned', node));
    const applied = c.cli(['apply', '-f', file]);
    expect(applied.code, applied.stderr).toBe(0);
    const container = await waitFor(
      'the pinned container running on node a',
      () => containersOf(node).find((x) => x.Config.Labels['orchard.deployment'] === 'pinned' && x.State.Running),
      90_000,
      500,
    );

    const agent = c.agents.get('a');
    const outBefore = agent?.output().length ?? 0;
    const del = c.cli(['node', 'delete', node]);
    expect(del.code, del.stderr).toBe(0);

    expect((await getFromOtherSource(c, `/api/v1/nodes/${node}`)).status).toBe(404);
    // The agent logs the refusal as it tries to come back...
    await waitFor('the agent to log its refused reconnect', () => /Not authorized|refused/i.test(agent?.output().slice(outBefore) ?? ''), 20_000, 200);
    // ...stays up (partition is not death) and keeps its workload running...
    expect(agent?.child.exitCode).toBeNull();
    const still = containersOf(node).find((x) => x.Id === container.Id);
    expect(still?.State.Running).toBe(true);
    // ...and never re-registers: its status publishes are refused.
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await getFromOtherSource(c, `/api/v1/nodes/${node}`)).status).toBe(404);
    const nodes = (await getFromOtherSource(c, '/api/v1/nodes')).body as { items: Array<{ metadata: { name: string } }> };
    expect(nodes.items.map((n) => n.metadata.name)).not.toContain(node);
  });
});
