import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';

/**
 * A global deployment rolled out across three real agents (in-memory runtime, real MQTT over
 * TLS to a real hub): one agent is offline during the rollout, keeps v1, and gets v2 when it
 * comes back. Rollout status and history come over the HTTP API, as the CLI reads them.
 */

const NODES = ['gr-1', 'gr-2', 'gr-3'] as const;

const manifest = (image: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: gr-edge, annotations: { orchard.dev/change-cause: "to ${image}" } }
spec:
  mode: global
  strategy: { rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } }
  template:
    spec:
      nodeSelector: { gr: "yes" }
      containers: [{ name: c, image: "${image}" }]
`;

interface StatusView {
  updatedReplicas: number;
  revision?: number;
  rollout?: { phase: string };
  pods: Array<{ name: string; node?: string; ready: boolean; updated: boolean; revision?: number }>;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('global-mode rollout with a node offline (hub + 3 agents, in-memory runtime)', () => {
  let t: TestHub;
  const dataRoot = mkdtempSync(join(tmpdir(), 'orchard-gr-'));
  const runtime = new MemoryRuntime({ images: ['app:v1'], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
  const agents = new Map<string, Agent>();
  const credentials = new Map<string, string>();

  const startAgent = async (node: string): Promise<void> => {
    const agent = new Agent({
      node,
      labels: { gr: 'yes' },
      dataDir: join(dataRoot, node),
      runtime,
      probe: new EngineOnlyProbe(runtime),
      link: { url: t.hub.mqttUrl, username: node, password: credentials.get(node) ?? '', ca: t.hub.pki?.caPem ?? '' },
      usageIntervalMs: 200,
      resyncMs: 200,
      observedRepublishMs: 500,
    });
    agents.set(node, agent);
    await agent.start();
  };
  const nodeReady = (node: string): boolean => t.hub.store.get('Node', node)?.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  const status = async (): Promise<StatusView> => (await t.api('GET', '/api/v1/deployments/gr-edge/rollout/status')).body as StatusView;
  const images = (): Record<string, string> => {
    const byNode: Record<string, string[]> = {};
    for (const p of t.hub.store.list('Pod', { ownerName: 'gr-edge' })) (byNode[p.spec.nodeName ?? '-'] ??= []).push(p.spec.containers[0]?.image ?? '');
    return Object.fromEntries(Object.entries(byNode).map(([n, l]) => [n, l.sort().join('+')]));
  };
  /** Polls until the rollout is Complete with `updated` updated pods all Ready; returns the most online nodes seen without a Ready pod. */
  const untilComplete = async (updated: number, online: readonly string[]): Promise<number> => {
    let worst = 0;
    await waitFor(`rollout complete with ${updated} updated`, async () => {
      const s = await status();
      worst = Math.max(worst, online.filter((n) => !s.pods.some((p) => p.node === n && p.ready)).length);
      const done = s.rollout?.phase === 'Complete' && s.updatedReplicas === updated && s.pods.filter((p) => p.updated && p.ready).length === updated;
      return done ? s : undefined;
    });
    return worst;
  };

  beforeAll(async () => {
    t = await startTestHub();
    for (const n of NODES) credentials.set(n, t.hub.auth.issueNodeCredential(n, { gr: 'yes' })); // as a join token with --labels gr=yes
    for (const n of NODES) await startAgent(n);
    await waitFor('3 nodes Ready', async () => (NODES.every(nodeReady) ? true : undefined));
  });
  afterAll(async () => {
    for (const a of agents.values()) await a.stop().catch(() => undefined);
    await t.cleanup();
    rmSync(dataRoot, { recursive: true, force: true });
  });

  it('rolls v2 to the online nodes one at a time; the offline node keeps v1 and is updated when it returns', async () => {
    expect((await t.api('POST', '/api/v1/apply', manifest('app:v1'))).status).toBe(200);
    await untilComplete(3, NODES);
    expect(images()).toEqual({ 'gr-1': 'app:v1', 'gr-2': 'app:v1', 'gr-3': 'app:v1' });
    const v1OnGr3 = t.hub.store.list('Pod', { ownerName: 'gr-edge' }).find((p) => p.spec.nodeName === 'gr-3')?.metadata.name;

    // gr-3 goes offline (its agent stops: last will / goodbye); its container keeps running.
    await agents.get('gr-3')?.stop();
    await waitFor('gr-3 NotReady', async () => (nodeReady('gr-3') ? undefined : true));

    expect((await t.api('POST', '/api/v1/apply', manifest('app:v2'))).status).toBe(200);
    const worst = await untilComplete(2, ['gr-1', 'gr-2']);
    expect(worst).toBeLessThanOrEqual(1); // maxUnavailable 1
    expect(images()).toEqual({ 'gr-1': 'app:v2', 'gr-2': 'app:v2', 'gr-3': 'app:v1' });
    expect(t.hub.store.list('Pod', { ownerName: 'gr-edge' }).find((p) => p.spec.nodeName === 'gr-3')?.metadata.name).toBe(v1OnGr3);
    const history = (await t.api('GET', '/api/v1/deployments/gr-edge/rollout/history')).body as {
      items: Array<{ revision: number; changeCause?: string; update: boolean; stable: boolean }>;
    };
    expect(history.items.map((h) => [h.revision, h.changeCause, h.update, h.stable])).toEqual([
      [1, 'to app:v1', false, false],
      [2, 'to app:v2', true, true],
    ]);

    // gr-3 comes back (same data dir and engine): it reports its v1 pod, then gets v2.
    await startAgent('gr-3');
    await untilComplete(3, NODES);
    expect(images()).toEqual({ 'gr-1': 'app:v2', 'gr-2': 'app:v2', 'gr-3': 'app:v2' });
    const s = await status();
    expect(s.revision).toBe(2);
    expect(s.pods.map((p) => [p.node, p.revision]).sort()).toEqual([
      ['gr-1', 2],
      ['gr-2', 2],
      ['gr-3', 2],
    ]);
    // The engine on gr-3 really runs v2 now (and v1 is gone there).
    const onGr3 = (await runtime.listContainers('gr-3')).filter((c) => c.state === 'running').map((c) => c.image);
    expect(onGr3).toEqual(['app:v2']);
  }, 60_000);
});
