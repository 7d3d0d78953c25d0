import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredPod, DesiredSetMessage } from '../../protocol/messages.js';
import { DesiredPodSchema } from '../../protocol/messages.js';
import { Agent } from '../agent.js';
import { EngineOnlyProbe } from '../reporter.js';
import { MemoryRuntime } from '../runtime/memory-runtime.js';
import { waitUntil } from '../test-broker.js';
import { TEST_IMAGE, mockPod } from '../test-fixtures.js';
import { FakeDataPlane } from './fake-data-plane.js';
import { endpoint, svcIndex, svcMsg } from './test-services.js';

/**
 * Services wired into the Agent (no broker: messages are handed in as the link would): the
 * table follows this node's pods, and a pod leaves the table BEFORE its container is stopped.
 */

const NODE = 'node-1';
const set = (generation: number, pods: DesiredPod[]): DesiredSetMessage => ({ node: NODE, generation, pods, at: new Date().toISOString() });
const endpointsOf = (dp: FakeDataPlane): string[] => (dp.last?.listeners[0]?.endpoints ?? []).map((e) => e.id);

describe('Agent with services', () => {
  let dir: string;
  let runtime: MemoryRuntime;
  let dp: FakeDataPlane;
  let agent: Agent;
  /** What happened, in order: `apply:<endpoints>` from the data plane, `stop:<pod>` from the engine. */
  let log: string[];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orchard-svc-wiring-'));
    runtime = new MemoryRuntime({ images: [TEST_IMAGE] });
    dp = new FakeDataPlane();
    log = [];
    dp.onApply = (t) => log.push(`apply:${(t.listeners[0]?.endpoints ?? []).map((e) => e.host).join(',')}`);
    const stop = runtime.stop.bind(runtime);
    runtime.stop = async (id, grace) => {
      const c = (await runtime.listContainers(NODE)).find((x) => x.id === id);
      log.push(`stop:${c?.labels['orchard.pod'] ?? id}`);
      return stop(id, grace);
    };
    agent = new Agent({
      node: NODE,
      labels: {},
      dataDir: dir,
      runtime,
      link: { connect: false },
      probe: new EngineOnlyProbe(runtime),
      services: { dataPlane: dp, serviceCidr: '10.250.8.0/22', advertiseAddress: '127.0.0.9', publishAddress: '127.0.0.9' },
    });
    await agent.start();
  });
  afterEach(async () => {
    await agent.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** web-1 runs here and is web's only endpoint; resolves once the table routes to it. */
  async function serving(): Promise<string> {
    agent.onDesired(set(1, [mockPod({ name: 'web-1' })]));
    agent.services?.onIndex(svcIndex(1, ['web'], { [NODE]: '127.0.0.9' }));
    agent.services?.onService('web', svcMsg('web', 1, { ordinal: 5, endpoints: [endpoint('uid-web-1', NODE, { endpointPort: 30001 })] }));
    await waitUntil(() => endpointsOf(dp).length === 1);
    const ip = dp.last?.listeners[0]?.endpoints[0]?.host ?? '';
    expect(ip).toMatch(/^172\.31\./);
    expect(dp.last?.listeners[0]?.address).toBe('10.250.8.5');
    expect(dp.last?.endpointPorts).toMatchObject([{ key: '30001/TCP', target: { host: ip, port: 8080 }, ready: true }]);
    return ip;
  }

  it("bridge pods are created with the agent's name server", async () => {
    await serving();
    const c = (await runtime.listContainers(NODE))[0];
    expect(c).toBeDefined();
    expect(runtime.specOf(c?.id ?? '')).toMatchObject({ dns: ['10.250.8.1'], dnsSearch: ['svc.orchard'], dnsOptions: ['ndots:1'] });
  });

  it('a pod leaving the desired set leaves the table before its container gets SIGTERM', async () => {
    const ip = await serving();
    log.length = 0;
    // A slow data plane: the stop must wait for the apply, not race it.
    let open!: () => void;
    dp.gate = new Promise<void>((r) => (open = r));
    agent.onDesired(set(2, []));
    await waitUntil(() => log.length > 0);
    await new Promise((r) => setTimeout(r, 50));
    expect(log).toEqual(['apply:']); // applied (pending), nothing stopped yet
    open();
    dp.gate = undefined;
    await waitUntil(() => log.includes('stop:web-1'));
    expect(log).toEqual(['apply:', 'stop:web-1']);
    expect(endpointsOf(dp)).toEqual([]);
    expect(ip).not.toBe('');
  });

  it('a pod replaced in place (spec changed) leaves the table before the old container is stopped, and returns with its new address', async () => {
    const old = await serving();
    log.length = 0;
    const changed = DesiredPodSchema.parse({
      name: 'web-1',
      uid: 'uid-web-1',
      deployment: 'web',
      spec: { containers: [{ name: 'main', image: TEST_IMAGE, command: ['sleep', '7200'] }] },
    });
    agent.onDesired(set(2, [changed]));
    await waitUntil(() => endpointsOf(dp).length === 1 && dp.last?.listeners[0]?.endpoints[0]?.host !== old);
    const stopAt = log.indexOf('stop:web-1');
    expect(stopAt).toBeGreaterThan(0);
    expect(log.slice(0, stopAt)).toContain('apply:'); // out before SIGTERM
    expect(log.slice(stopAt + 1)).toContain(`apply:${dp.last?.listeners[0]?.endpoints[0]?.host}`);
  });

  it("the agent's own readiness overrides the hub's at once, both ways", async () => {
    const probed = DesiredPodSchema.parse({
      name: 'web-1',
      uid: 'uid-web-1',
      spec: { containers: [{ name: 'main', image: TEST_IMAGE, readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 1, failureThreshold: 1 } }] },
    });
    let ready = true;
    runtime.scriptExec(() => ({ exitCode: ready ? 0 : 1, output: '' }));
    agent.onDesired(set(1, [probed]));
    agent.services?.onIndex(svcIndex(1, ['web']));
    // The hub still says not ready: the agent's probe wins.
    agent.services?.onService('web', svcMsg('web', 1, { endpoints: [endpoint('uid-web-1', NODE, { ready: false })] }));
    await waitUntil(() => endpointsOf(dp).length === 1, 5000);
    ready = false;
    await waitUntil(() => endpointsOf(dp).length === 0, 5000);
  });
});
