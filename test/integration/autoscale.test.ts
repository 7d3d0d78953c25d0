import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import type { Deployment, EventObject } from '../../protocol/objects.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

/**
 * Autoscaling through a real hub (TLS broker, SQLite, HTTPS) with two hollow agents (real Agent,
 * MemoryRuntime) whose containers burn as much CPU as the test says: usage goes the agents' real
 * change-only reports → UsageStore → the autoscaler (300 ms passes, 3 s scale-down window) →
 * spec.replicas → deployment controller → scheduler → agents. Covers scale-up (with the numbers
 * in the event), scale-down only after the window, and a lost node's pods counted as missing
 * rather than idle.
 */
const WINDOW_MS = 3_000;
const MANIFEST = `
apiVersion: orchard/v1
kind: Deployment
metadata: { name: burn }
spec:
  replicas: 1
  onNodeLost: { action: keep }
  autoscale: { minReplicas: 1, maxReplicas: 4, targetCPUUtilizationPercentage: 50 }
  template:
    spec:
      containers:
        - name: app
          image: app:v1
          resources: { requests: { cpu: 500m, memory: 64Mi } }
`;

/** A hollow node whose every container burns `cores` (changeable at any time; cumulative CPU integrates it). */
class HollowNode {
  cores = 0;
  readonly runtime = new MemoryRuntime({ images: ['app:v1'], info: { ncpu: 8, memTotal: 8 * 1024 ** 3 } });
  agent: Agent | undefined;
  private readonly cpu = new Map<string, { total: number; at: number }>();

  constructor(
    readonly name: string,
    private readonly dir: string,
  ) {
    this.runtime.usageOf = (c) => {
      const now = Date.now();
      const s = this.cpu.get(c.id) ?? { total: 0, at: now };
      s.total += ((now - s.at) / 1000) * this.cores;
      s.at = now;
      this.cpu.set(c.id, s);
      return { cpuSeconds: s.total, memoryBytes: 32 * 1024 ** 2 };
    };
  }

  async start(t: TestHub): Promise<void> {
    const credential = t.hub.auth.issueNodeCredential(this.name, {});
    this.agent = new Agent({
      node: this.name,
      labels: {},
      dataDir: join(this.dir, this.name),
      runtime: this.runtime,
      probe: new EngineOnlyProbe(this.runtime),
      link: { url: t.hub.mqttUrl, username: this.name, password: credential, ca: t.hub.pki?.caPem ?? '' },
      // 1 s, not less: the hub times samples on receipt, after up to 50 ms of intake batching.
      usageIntervalMs: 1_000,
      resyncMs: 200,
    });
    await this.agent.start();
  }
}

describe('autoscale: hollow agents reporting usage through a real hub', () => {
  let t: TestHub;
  const dir = mkdtempSync(join(tmpdir(), 'orchard-autoscale-'));
  const nodes = [new HollowNode('pi-1', dir), new HollowNode('pi-2', dir)];

  const deployment = async (): Promise<Deployment> => (await t.api('GET', '/api/v1/deployments/burn')).body as Deployment;
  const events = async (): Promise<EventObject[]> =>
    ((await t.api('GET', '/api/v1/events?involvedObject=Deployment/burn')).body as { items: EventObject[] }).items;
  const runningPods = (): number => t.hub.store.list('Pod', { ownerName: 'burn' }).filter((p) => p.status.phase === 'Running').length;

  beforeAll(async () => {
    t = await startTestHub({ nodeStartupGraceMs: 0, autoscale: { syncPeriodMs: 300, downscaleWindowMs: WINDOW_MS, usageStaleMs: 3_500 } });
    for (const n of nodes) await n.start(t);
    const r = await t.api('POST', '/api/v1/apply', MANIFEST);
    expect(r.status, r.text).toBe(200);
  }, 30_000);
  afterAll(async () => {
    for (const n of nodes) await n.agent?.stop();
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('scales up when the pods use 125 % of their requests, and says why with the numbers', async () => {
    for (const n of nodes) n.cores = 0.625;
    await waitFor('4 replicas (max)', async () => (await deployment()).spec.replicas === 4, 20_000, 100);
    const first = (await events()).find((e) => e.reason === 'SuccessfulRescale' && e.message.startsWith('replicas 1 → 3'));
    // 125 % of requests against a 50 % target: ceil(1 × 2.5) = 3 (the rate limit allows 1 + 4).
    expect(first?.message).toMatch(/cpu 1\d\d% of requests \(target 50%\) over 1 ready, 0 unready, 0 missing → 3/);
    await waitFor('4 pods running', async () => runningPods() === 4, 20_000, 100);
    const d = await deployment();
    expect(d.status.autoscale?.lastScaleTime).toBeDefined();
    expect(d.status.autoscale?.metrics[0]).toMatchObject({ resource: 'cpu', targetPercent: 50 });
  }, 40_000);

  it('holds a scale-down for the stabilisation window, then follows the recommendation down', async () => {
    // Wait until every pod has a CPU rate, so nothing is missing when the load drops.
    await waitFor('all 4 pods measured', async () => (await deployment()).status.autoscale?.metrics[0]?.ready === 4, 20_000, 100);
    for (const n of nodes) n.cores = 0.05;
    const dropped = Date.now();
    const held = await waitFor(
      'a stabilised hold',
      async () => {
        const d = await deployment();
        return d.status.autoscale?.lastDecision.reason === 'ScaleDownStabilized' ? d : undefined;
      },
      20_000,
      50,
    );
    expect(held.spec.replicas).toBe(4);
    // The rates fall over a report or two, so the first lower recommendation may be 3 or 2 before 1.
    expect(held.status.autoscale?.lastDecision.recommendation).toBeLessThan(4);
    await waitFor('scaled down to 1', async () => (await deployment()).spec.replicas === 1, 20_000, 100);
    // Not before the window: the highest recommendation of the last 3 s was 4 until then.
    expect(Date.now() - dropped).toBeGreaterThanOrEqual(WINDOW_MS - 500);
    const down = (await events()).find((e) => e.reason === 'SuccessfulRescale' && e.message.startsWith('replicas 4 → '));
    expect(down?.message).toMatch(/ScaleDownStabilized|DesiredWithinRange/);
  }, 40_000);

  it("counts a lost node's pods as missing, not idle: no scale-down on their last numbers", async () => {
    // Four pods again (min 4), two per node by the spread default.
    let r = await t.api('POST', '/api/v1/deployments/burn/autoscale', { minReplicas: 4 });
    expect(r.status, r.text).toBe(200);
    await waitFor('4 pods running', async () => runningPods() === 4 && (await deployment()).spec.replicas === 4, 20_000, 100);
    const perNode = (n: string): number => t.hub.store.list('Pod', { ownerName: 'burn' }).filter((p) => p.spec.nodeName === n).length;
    expect([perNode('pi-1'), perNode('pi-2')]).toEqual([2, 2]);
    // pi-1's pods at 40 % of requests, pi-2's idle. Healthy, that is 20 % on average → ceil(0.4 × 4) = 2.
    nodes[0]!.cores = 0.2;
    nodes[1]!.cores = 0;
    await waitFor('all 4 measured', async () => (await deployment()).status.autoscale?.metrics[0]?.ready === 4, 20_000, 100);
    await nodes[1]!.agent?.stop();
    await waitFor('pi-2 counted missing', async () => (await deployment()).status.autoscale?.metrics[0]?.missing === 2, 20_000, 100);
    // Let the autoscaler decide again: min back to 1.
    r = await t.api('POST', '/api/v1/deployments/burn/autoscale', { minReplicas: 1 });
    expect(r.status, r.text).toBe(200);
    // Missing pods count as 100 % on a scale-down: (40 + 40 + 100 + 100) / 4 = 70 % > 50 % turns the direction: hold.
    const until = Date.now() + 2 * WINDOW_MS + 1_000;
    while (Date.now() < until) {
      const d = await deployment();
      expect(d.spec.replicas).toBe(4);
      await new Promise((res) => setTimeout(res, 200));
    }
    const d = await deployment();
    expect(d.status.autoscale?.metrics[0]).toMatchObject({ ready: 2, missing: 2, recommendation: 4 });
    expect(d.status.autoscale?.lastDecision.message).toMatch(/2 ready, 0 unready, 2 missing/);
  }, 60_000);
});
