import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_ENV, AGENT_V8_FLAGS } from '../../scripts/build-agent.js';
import { buildAgentFile, buildLauncherFile } from '../helpers/agent-bundle.js';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { CLI, containersOf, type Proc } from '../helpers/procs.js';

/**
 * Agent upgrades from the hub on real processes and the real Docker Engine: two devices, each a
 * single-file agent run by orchard-agent-launcher (as systemd would run it), upgraded from A to B
 * by `orchard node upgrade` while their containers keep their ids; then a deliberately broken
 * version (a file that throws at start) is rolled back by the first device's launcher by itself,
 * the rollout halts, and the second device is never touched.
 */

/** Files are compared by hash: vitest's deep equality over two 4 MB buffers takes minutes. */
const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

const A = '0.9.1-a';
const B = '0.9.2-b';
const BROKEN = '0.9.3-broken';

interface NodeView {
  status: { info?: { agentVersion: string; upgrade?: { launcher: boolean; rolledBack?: { version: string; reason: string } } } };
}
interface RolloutView {
  metadata: { name: string };
  status: { phase: string; reason?: string; message?: string; nodes: Array<{ name: string; state: string; message?: string }> };
}

describe('agent upgrade from the hub (launcher, real Docker Engine)', () => {
  const c = new Cluster();
  const bin = join(c.dir, 'bin');
  const launcher = join(bin, 'orchard-agent-launcher.mjs');
  const devices = ['a', 'b'] as const;
  const agentFile = (short: string): string => join(c.dir, `device-${short}`, 'orchard-agent.mjs');

  /** The launcher as systemd runs it: `node <AGENT_V8_FLAGS> orchard-agent-launcher.mjs --agent F -- <agent flags>`. */
  async function startDevice(short: string): Promise<void> {
    const tokenFile = join(c.dir, `join-${short}.token`);
    writeFileSync(tokenFile, await c.joinToken(1), { mode: 0o600 });
    const args = [
      launcher,
      '--agent',
      agentFile(short),
      '--kill-grace',
      '5',
      '--',
      '--hub',
      `127.0.0.1:${c.httpPort}`,
      '--token-file',
      tokenFile,
      '--name',
      c.nodeName(short),
      '--data-dir',
      join(c.dir, 'agents', short),
      '--no-services',
    ];
    // With the unit's V8 flags and malloc settings (scripts/install-agent.sh), which the launcher passes on.
    const child = spawn(process.execPath, [...AGENT_V8_FLAGS, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...AGENT_ENV } });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const signal = async (sig: NodeJS.Signals): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    };
    const proc: Proc = { child, output: () => out, kill9: () => signal('SIGKILL'), stop: () => signal('SIGTERM') };
    c.agents.set(short, proc);
  }

  /**
   * The CLI, run asynchronously: Cluster.cli blocks this process, which also drains the hub's and
   * the agents' output pipes; a rollout logs enough to fill them, and a hub blocked writing its log
   * cannot answer the blocked CLI.
   */
  function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [CLI, ...args, '--server', c.server, '--token', c.adminToken, '--ca', join(c.dir, 'hub', 'ca.crt')], {
      env: { ...process.env, ORCHARD_CONFIG: join(c.dir, 'no-config') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    return new Promise((resolve) => child.once('close', (code) => resolve({ code: code ?? 1, stdout, stderr })));
  }

  async function node(short: string): Promise<NodeView> {
    return (await c.api('GET', `/api/v1/nodes/${c.nodeName(short)}`)).body as NodeView;
  }

  async function rollout(): Promise<RolloutView> {
    return ((await c.api('GET', '/api/v1/agent-rollouts/status')).body as { rollout: RolloutView }).rollout;
  }

  /** Container id → start time of a node's containers (running ones). */
  function containers(short: string): Record<string, string> {
    return Object.fromEntries(
      containersOf(c.nodeName(short))
        .filter((x) => x.State.Running)
        .map((x) => [x.Id, x.State.StartedAt]),
    );
  }

  beforeAll(async () => {
    await c.startHub();
    mkdirSync(bin, { recursive: true });
    await Promise.all([buildAgentFile(join(bin, 'a.mjs'), A), buildAgentFile(join(bin, 'b.mjs'), B), buildLauncherFile(launcher)]);
    writeFileSync(join(bin, 'broken.mjs'), "throw new Error('deliberately broken agent');\n");
    for (const d of devices) {
      mkdirSync(join(c.dir, `device-${d}`), { recursive: true });
      copyFileSync(join(bin, 'a.mjs'), agentFile(d));
      await startDevice(d);
    }
    for (const d of devices) await c.waitNodeReady(d, 40_000).catch((err: unknown) => Promise.reject(new Error(`${String(err)}\n${c.logs()}`)));
    const file = join(c.dir, 'web.yaml');
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: 'orchard/v1',
        kind: 'Deployment',
        metadata: { name: 'upg', labels: { app: 'upg' } },
        spec: {
          mode: 'global',
          template: {
            metadata: { labels: { app: 'upg' } },
            spec: {
              terminationGracePeriodSeconds: 1,
              containers: [
                { name: 'main', image: TEST_IMAGE, command: ['sh', '-c', 'exec sleep 3600'], resources: { requests: { cpu: '10m', memory: '8Mi' } } },
              ],
            },
          },
        },
      }),
    );
    expect((await cli(['apply', '-f', file])).code).toBe(0);
    await waitFor('a pod running on each device', async () => devices.every((d) => Object.keys(containers(d)).length === 1), 40_000, 250);
  }, 90_000);

  afterAll(async () => {
    // SIGTERM first: the launchers stop their agents (which leave containers), then cleanup removes everything.
    for (const p of c.agents.values()) await p.stop();
    await c.cleanup();
  });

  it('upgrades both devices from A to B, one at a time, with the containers untouched', async () => {
    for (const d of devices) {
      const n = await node(d);
      expect(n.status.info?.agentVersion).toBe(A);
      expect(n.status.info?.upgrade?.launcher).toBe(true);
    }
    const before = { a: containers('a'), b: containers('b') };
    const push = await cli(['agent-version', 'push', join(bin, 'b.mjs'), '--version', B]);
    expect(push.code, push.stderr).toBe(0);
    expect((await cli(['agent-version', 'push', join(bin, 'broken.mjs'), '--version', BROKEN])).code).toBe(0);
    const listed = await cli(['agent-version', 'list']);
    expect(listed.stdout).toContain(B);

    const start = await cli(['node', 'upgrade', '--all', '--to', B, '--max-parallel', '1', '--deadline', '30s']);
    expect(start.code, start.stderr).toBe(0);
    let maxInFlight = 0;
    await waitFor(
      'rollout to B complete',
      async () => {
        const r = await rollout();
        maxInFlight = Math.max(maxInFlight, r.status.nodes.filter((n) => n.state === 'Upgrading').length);
        if (r.status.phase === 'Halted') throw new Error(`halted: ${r.status.message}\n${c.logs()}`);
        return r.status.phase === 'Complete';
      },
      45_000,
      200,
    ).catch(async (err: unknown) => Promise.reject(new Error(`${String(err)}\n${JSON.stringify(await rollout())}\n${c.logs()}`)));
    expect(maxInFlight).toBe(1);
    for (const d of devices) expect((await node(d)).status.info?.agentVersion).toBe(B);
    // Same containers, never restarted: the new agent adopted them.
    expect(containers('a')).toEqual(before.a);
    expect(containers('b')).toEqual(before.b);
    // The previous file is kept for a rollback; the running one is B.
    expect(sha(`${agentFile('a')}.previous`)).toBe(sha(join(bin, 'a.mjs')));
    expect(sha(agentFile('a'))).toBe(sha(join(bin, 'b.mjs')));
    const wide = await cli(['get', 'nodes', '-o', 'wide']);
    expect(wide.stdout).toContain(B);
  }, 60_000);

  it('rolls a broken version back on the first device by itself and halts before the second', async () => {
    const before = { a: containers('a'), b: containers('b') };
    const start = await cli(['node', 'upgrade', c.nodeName('a'), c.nodeName('b'), '--to', BROKEN, '--max-parallel', '1', '--deadline', '20s']);
    expect(start.code, start.stderr).toBe(0);
    await waitFor('rollout halted', async () => (await rollout()).status.phase === 'Halted', 40_000, 200).catch(async (err: unknown) =>
      Promise.reject(new Error(`${String(err)}\n${JSON.stringify(await rollout())}\n${c.logs()}`)),
    );
    const r = await rollout();
    expect(r.status.reason).toBe('NodeFailed');
    const [first, second] = r.status.nodes;
    expect(first).toMatchObject({ name: c.nodeName('a'), state: 'Failed' });
    expect(first?.message).toMatch(/rolled back to 0\.9\.2-b: agent 0\.9\.3-broken exited/);
    expect(second).toMatchObject({ name: c.nodeName('b'), state: 'Pending' });
    // Device a runs B again and says what it rolled back; device b never left B.
    const a = await node('a');
    expect(a.status.info?.agentVersion).toBe(B);
    expect(a.status.info?.upgrade?.rolledBack?.version).toBe(BROKEN);
    expect(sha(agentFile('a'))).toBe(sha(join(bin, 'b.mjs')));
    expect((await node('b')).status.info?.agentVersion).toBe(B);
    expect(sha(`${agentFile('b')}.previous`)).toBe(sha(join(bin, 'a.mjs')));
    expect(containers('a')).toEqual(before.a);
    expect(containers('b')).toEqual(before.b);
    const status = await cli(['node', 'upgrade', 'status']);
    expect(status.code).toBe(1);
    expect(status.stdout).toContain('Halted');
    const events = (await c.api('GET', '/api/v1/events')).body as { items: Array<{ reason: string }> };
    expect(events.items.map((e) => e.reason)).toEqual(expect.arrayContaining(['AgentRolloutHalted', 'AgentUpgradeFailed', 'AgentUpgraded']));
  }, 60_000);
});
