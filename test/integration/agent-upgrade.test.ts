import https from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { verifyAgentFile } from '../../agent/upgrade/verify.js';
import type { AgentUpgradeMessage, AgentVersion } from '../../protocol/agent-upgrade.js';
import type { AgentRolloutObject, AgentUpgradeInfo } from '../../protocol/objects.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';

/**
 * Hub side of agent upgrades with hollow agents (real Agent + MemoryRuntime over real TLS MQTT):
 * the hub serves signed versions to nodes only; the rollout controller keeps at most maxParallel
 * nodes upgrading and halts on the first rollback; an agent without upgrade support (an older
 * agent) keeps working with this hub and is refused by a rollout.
 */

type Behaviour = 'upgrade' | 'rollback';

function raw(t: TestHub, method: string, path: string, opts: { body?: Buffer; auth?: string; type?: string } = {}): Promise<{ status: number; body: Buffer }> {
  const url = new URL(path, t.hub.apiUrl);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: t.hub.pki?.caPem,
        headers: {
          ...(opts.auth !== undefined ? { authorization: opts.auth } : {}),
          ...(opts.body !== undefined ? { 'content-type': opts.type ?? 'application/octet-stream', 'content-length': String(opts.body.length) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('agent upgrades: hub, rollout controller, hollow agents', () => {
  let t: TestHub;
  const dataRoot = mkdtempSync(join(tmpdir(), 'orchard-upg-'));
  const runtime = new MemoryRuntime({ images: ['app:v1'], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
  const agents = new Map<string, Agent>();
  const credentials = new Map<string, string>();
  const behaviour = new Map<string, Behaviour>();
  /** Commands each node received, and how many nodes were mid-upgrade at once. */
  const commands: Array<{ node: string; msg: AgentUpgradeMessage }> = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const file = Buffer.from('// orchard agent 0.2.0\n'.repeat(2000));

  const startAgent = async (node: string, version: string, upgrade: AgentUpgradeInfo | false): Promise<void> => {
    if (!credentials.has(node)) credentials.set(node, t.hub.auth.issueNodeCredential(node));
    const agent = new Agent({
      node,
      labels: { fleet: 'upg' },
      dataDir: join(dataRoot, node),
      runtime,
      probe: new EngineOnlyProbe(runtime, undefined, version),
      link: { url: t.hub.mqttUrl, username: node, password: credentials.get(node) ?? '', ca: t.hub.pki?.caPem ?? '' },
      usageIntervalMs: 200,
      resyncMs: 200,
      ...(upgrade === false ? {} : { upgrade: { info: () => upgrade, onCommand: (m) => void onCommand(node, version, m) } }),
    });
    agents.set(node, agent);
    await agent.start();
  };

  /** What a device does: download with its credential, verify against the CA, then "restart" as the new or the old version. */
  const onCommand = async (node: string, version: string, msg: AgentUpgradeMessage): Promise<void> => {
    if (msg.version === version || commands.some((c) => c.node === node && c.msg.rollout === msg.rollout)) return;
    commands.push({ node, msg });
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const got = await raw(t, 'GET', msg.path, { auth: `Basic ${Buffer.from(`${node}:${credentials.get(node)}`).toString('base64')}` });
    expect(got.status).toBe(200);
    verifyAgentFile(got.body, msg, t.hub.pki?.caPem ?? '');
    await new Promise((r) => setTimeout(r, 150)); // the swap and restart take a while
    await agents.get(node)?.stop();
    inFlight--;
    if (behaviour.get(node) === 'rollback')
      await startAgent(node, version, {
        launcher: true,
        rolledBack: { version: msg.version, rollout: msg.rollout, reason: 'exited (code 1) before reporting in', at: new Date().toISOString() },
      });
    else await startAgent(node, msg.version, { launcher: true });
  };

  const rollout = async (): Promise<AgentRolloutObject> =>
    ((await t.api('GET', '/api/v1/agent-rollouts/status')).body as { rollout: AgentRolloutObject }).rollout;
  const version = (node: string): string | undefined => t.hub.store.get('Node', node)?.status.info?.agentVersion;

  beforeAll(async () => {
    t = await startTestHub();
    for (const n of ['u1', 'u2', 'u3']) await startAgent(n, '0.1.0', { launcher: true });
    await startAgent('old1', '0.0.9', false);
    await waitFor('four nodes', () => ['u1', 'u2', 'u3', 'old1'].every((n) => version(n) !== undefined));
  }, 30_000);

  afterAll(async () => {
    for (const a of agents.values()) await a.stop();
    await t.cleanup();
    rmSync(dataRoot, { recursive: true, force: true });
  });

  it('stores a pushed file signed by its CA, serves it to nodes only, and lists it', async () => {
    const viewer = ((await t.api('POST', '/api/v1/tokens', { type: 'api', role: 'viewer' })).body as { token: string }).token;
    const refused = await raw(t, 'POST', '/api/v1/agent-versions?version=0.2.0', { body: file, auth: `Bearer ${viewer}` });
    expect(refused.status).toBe(403);
    const pushed = await raw(t, 'POST', '/api/v1/agent-versions?version=0.2.0', { body: file, auth: `Bearer ${t.adminToken}` });
    expect(pushed.status, pushed.body.toString()).toBe(200);
    const v = JSON.parse(pushed.body.toString()) as AgentVersion;
    expect(v).toMatchObject({ version: '0.2.0', size: file.length });
    expect(() => verifyAgentFile(file, v, t.hub.pki?.caPem ?? '')).not.toThrow();
    expect((await raw(t, 'POST', '/api/v1/agent-versions?version=0.2.0', { body: file, auth: `Bearer ${t.adminToken}` })).status).toBe(409);
    const list = (await t.api('GET', '/api/v1/agent-versions', undefined, viewer)).body as { items: AgentVersion[] };
    expect(list.items.map((i) => i.version)).toEqual(['0.2.0']);
    // The file: a node's credential, not an API token, and never a wrong credential.
    expect((await raw(t, 'GET', '/api/v1/agent-versions/0.2.0/file', { auth: `Bearer ${t.adminToken}` })).status).toBe(401);
    expect((await raw(t, 'GET', '/api/v1/agent-versions/0.2.0/file', { auth: `Basic ${Buffer.from('u1:wrong').toString('base64')}` })).status).toBe(401);
    const ok = await raw(t, 'GET', '/api/v1/agent-versions/0.2.0/file', { auth: `Basic ${Buffer.from(`u1:${credentials.get('u1')}`).toString('base64')}` });
    expect(ok.status).toBe(200);
    expect(ok.body.equals(file)).toBe(true);
  });

  it('refuses a rollout over a node whose agent cannot be upgraded (an older agent), which keeps working with this hub', async () => {
    const r = await t.api('POST', '/api/v1/agent-rollouts', { all: true });
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ code: 'ERR_UPGRADE_UNSUPPORTED' });
    expect((r.body as { message: string }).message).toContain('old1');
    // The older agent (no upgrade topic, no NodeInfo.upgrade) still gets and runs its pods from this hub.
    const applied = await t.api('POST', '/api/v1/apply', {
      apiVersion: 'orchard/v1',
      kind: 'Deployment',
      metadata: { name: 'on-old', labels: {} },
      spec: {
        replicas: 1,
        template: {
          metadata: { labels: { app: 'on-old' } },
          spec: { nodeSelector: { 'orchard.dev/hostname': 'old1' }, containers: [{ name: 'c', image: 'app:v1' }] },
        },
      },
    });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    await waitFor('pod running on the old agent', () => t.hub.store.list('Pod', { nodeName: 'old1' }).some((p) => p.status.phase === 'Running'));
  });

  it('upgrades at most maxParallel nodes at a time and completes', async () => {
    const r = await t.api('POST', '/api/v1/agent-rollouts', { nodes: ['u1', 'u2', 'u3'], maxParallel: 2, deadlineSeconds: 30 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    await waitFor('rollout complete', async () => (await rollout()).status.phase === 'Complete');
    expect(maxInFlight).toBe(2);
    for (const n of ['u1', 'u2', 'u3']) expect(version(n)).toBe('0.2.0');
    expect((await rollout()).status.nodes.map((n) => n.state)).toEqual(['Upgraded', 'Upgraded', 'Upgraded']);
  }, 30_000);

  it('halts on the first node that rolls back; the nodes after it are never told', async () => {
    const pushed = await raw(t, 'POST', '/api/v1/agent-versions?version=0.3.0', { body: Buffer.from('throw 1\n'), auth: `Bearer ${t.adminToken}` });
    expect(pushed.status).toBe(200);
    behaviour.set('u2', 'rollback');
    const before = commands.length;
    const r = await t.api('POST', '/api/v1/agent-rollouts', { nodes: ['u2', 'u1', 'u3'], maxParallel: 1, deadlineSeconds: 30 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    await waitFor('rollout halted', async () => (await rollout()).status.phase === 'Halted');
    const s = (await rollout()).status;
    expect(s.reason).toBe('NodeFailed');
    expect(s.nodes.map((n) => [n.name, n.state])).toEqual([
      ['u2', 'Failed'],
      ['u1', 'Pending'],
      ['u3', 'Pending'],
    ]);
    expect(s.nodes[0]?.message).toMatch(/rolled back to 0\.2\.0: exited/);
    expect(commands.slice(before).map((c) => c.node)).toEqual(['u2']);
    expect(version('u1')).toBe('0.2.0');
    // Another rollout may start once this one is not progressing; a second one while progressing is refused.
    const again = await t.api('POST', '/api/v1/agent-rollouts', { nodes: ['u1'], to: '0.3.0', deadlineSeconds: 30 });
    expect(again.status).toBe(200);
    const third = await t.api('POST', '/api/v1/agent-rollouts', { nodes: ['u3'], to: '0.3.0' });
    expect(third.body).toMatchObject({ code: 'ERR_UPGRADE_IN_PROGRESS' });
    expect((await t.api('POST', '/api/v1/agent-rollouts/halt', {})).status).toBe(200);
  }, 30_000);
});
