import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { guestNode, type GuestArch, type GuestNode } from '../helpers/node-runtimes.js';
import { containersOf, docker } from '../helpers/procs.js';

/**
 * The single-file agent (dist/orchard-agent.mjs) as a real arm64 process (official Node 22 build)
 * and a real armv7 process (official Node 20 build), under qemu-user with Debian's cross libc:
 * each joins a hub, runs a deployment on this machine's Docker Engine, and after `kill -9` and a
 * restart adopts its containers (same ids, same start times). The node's arch stays the engine's
 * (it is what the engine runs); NodeInfo also carries the agent process's own platform and Node
 * version, which the test asserts. Both agents run side by side: emulated start ≈ 7-15 s.
 */

const GUESTS: GuestArch[] = ['arm64', 'armv7l'];
const REPLICAS = 2;

interface NodeBody {
  status: { info?: { arch: string; agentPlatform?: string; nodeVersion?: string; agentVersion: string }; conditions?: Array<{ type: string; status: string }> };
}

function deployment(name: string, role: string): string {
  return `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: ${REPLICAS}
  template:
    spec:
      nodeSelector: { role: ${role} }
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: ${TEST_IMAGE}
          command: [sh, -c, exec sleep 3600]
          resources: { requests: { cpu: 10m, memory: 8Mi } }
`;
}

/** The engine's arch in Orchard's words (amd64, arm64, arm). */
function engineArch(): string {
  const raw = docker(['version', '--format', '{{.Server.Arch}}']);
  return ({ x86_64: 'amd64', aarch64: 'arm64', armv7l: 'arm' } as Record<string, string>)[raw] ?? raw;
}

describe('single-file agent as arm64 and armv7 processes (qemu-user)', () => {
  const c = new Cluster();
  const guests = new Map<GuestArch, GuestNode>();
  const launch = (arch: GuestArch) => c.startAgent(arch, { labels: `role=${arch}`, launch: guests.get(arch)!.launch });
  const explain = async <T>(what: Promise<T>): Promise<T> => {
    try {
      return await what;
    } catch (e) {
      throw new Error(`${String(e)}\n${c.logs()}`, { cause: e });
    }
  };
  const containerIds = (arch: GuestArch): string[] =>
    containersOf(c.nodeName(arch))
      .map((x) => `${x.Id} ${x.State.Running ? 'running' : 'stopped'} ${x.State.StartedAt}`)
      .sort();
  const nodeBody = async (arch: GuestArch): Promise<NodeBody> => (await c.api('GET', `/api/v1/nodes/${c.nodeName(arch)}`)).body as NodeBody;
  const ready = async (arch: GuestArch): Promise<boolean> =>
    (await nodeBody(arch)).status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') === true;

  beforeAll(async () => {
    for (const g of GUESTS) guests.set(g, guestNode(g));
    await c.startHub();
  });
  afterAll(async () => {
    await c.cleanup();
  });

  it('joins, reports its own platform and Node version while the node keeps the engine arch, and runs a deployment', async () => {
    for (const g of GUESTS) await launch(g);
    await explain(Promise.all(GUESTS.map((g) => c.waitNodeReady(g, 90_000))));
    const arch = engineArch();
    for (const g of GUESTS) {
      const info = (await nodeBody(g)).status.info;
      expect(info?.agentPlatform, g).toBe(guests.get(g)!.platform);
      expect(info?.nodeVersion, g).toBe(guests.get(g)!.nodeVersion);
      expect(info?.arch, g).toBe(arch);
    }
    const wide = c.cli(['get', 'nodes', '-o', 'wide']);
    expect(wide.code, wide.stderr).toBe(0);
    expect(wide.stdout).toMatch(new RegExp(`${c.nodeName('arm64')}\\s.*linux/arm64 node ${guests.get('arm64')!.nodeVersion.replaceAll('.', '\\.')}`));
    expect(wide.stdout).toMatch(new RegExp(`${c.nodeName('armv7l')}\\s.*linux/arm node ${guests.get('armv7l')!.nodeVersion.replaceAll('.', '\\.')}`));

    for (const g of GUESTS) {
      const file = join(c.dir, `${g}.yaml`);
      writeFileSync(file, deployment(`e2e-arm-${g}`, g));
      const r = c.cli(['apply', '-f', file]);
      expect(r.code, r.stderr).toBe(0);
    }
    await explain(
      waitFor(
        'every pod Running on its arm agent',
        async () => {
          for (const g of GUESTS) {
            const pods = await c.pods(`e2e-arm-${g}`);
            if (pods.length !== REPLICAS || !pods.every((p) => p.status.phase === 'Running' && p.spec.nodeName === c.nodeName(g))) return false;
            if (containerIds(g).filter((x) => x.includes(' running ')).length !== REPLICAS) return false;
          }
          return true;
        },
        60_000,
        500,
      ),
    );
  });

  it('survives kill -9: the restarted agents adopt their containers (same ids, never restarted)', async () => {
    const before = new Map(GUESTS.map((g) => [g, containerIds(g)] as const));
    await Promise.all(GUESTS.map((g) => c.agents.get(g)!.kill9()));
    await explain(waitFor('nodes NotReady after the kill', async () => !(await ready('arm64')) && !(await ready('armv7l')), 30_000, 250));
    for (const g of GUESTS) expect(containerIds(g), `${g}: workloads outlive the agent`).toEqual(before.get(g));

    const procs = await Promise.all(GUESTS.map((g) => launch(g)));
    await explain(Promise.all(GUESTS.map((g) => c.waitNodeReady(g, 90_000))));
    await explain(waitFor('agents started', () => procs.every((p) => p.output().includes('agent started')), 30_000, 200));
    await new Promise((r) => setTimeout(r, 3000)); // their first passes after the reconnect
    for (const g of GUESTS) {
      expect(containerIds(g), `${g}: adopted, not recreated`).toEqual(before.get(g));
      const pods = await c.pods(`e2e-arm-${g}`);
      expect(pods).toHaveLength(REPLICAS);
      expect(pods.every((p) => p.status.phase === 'Running' && p.status.containerStatuses.every((s) => s.restartCount === 0))).toBe(true);
      const ids = pods.map((p) => p.status.containerStatuses[0]?.containerId ?? '').sort();
      expect(ids.every((id) => before.get(g)!.some((x) => x.startsWith(id) || id.startsWith(x.split(' ')[0]!)))).toBe(true);
    }
  });
});
