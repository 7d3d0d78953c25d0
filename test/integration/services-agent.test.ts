import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { FakeDataPlane } from '../../agent/services/fake-data-plane.js';
import type { ServiceTable } from '../../agent/services/service-table-types.js';
import { endpoint, svcIndex, svcMsg } from '../../agent/services/test-services.js';
import { startBroker, waitUntil, type TestBroker } from '../../agent/test-broker.js';
import { TEST_IMAGE } from '../../agent/test-fixtures.js';
import { encodeMessage, type DesiredSetMessage } from '../../protocol/messages.js';
import { DesiredPodSchema } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';

/**
 * Services on a real MQTT broker (the in-process test broker: the hub's ACL for these topics is
 * another part of issue 15) and an Agent over the memory runtime with a recording data plane:
 * retained service messages + the index become the expected table; with the broker gone, local
 * readiness still changes the table; an agent restarted with the broker gone applies the same
 * table from services.json.
 */

const NODE = 'node-1';
const SERVICE_CIDR = '10.250.12.0/22';

describe('services: hub messages → agent → data plane', () => {
  let dir: string;
  let b: TestBroker;
  let runtime: MemoryRuntime;
  const agents: Agent[] = [];
  let ready = true;

  const makeAgent = (dp: FakeDataPlane, url: string): Agent => {
    const a = new Agent({
      node: NODE,
      labels: {},
      dataDir: dir,
      runtime,
      link: { url, backoffBaseMs: 50, backoffCapMs: 200 },
      probe: new EngineOnlyProbe(runtime),
      services: { dataPlane: dp, serviceCidr: SERVICE_CIDR, advertiseAddress: '127.0.0.21', publishAddress: '127.0.0.21' },
    });
    agents.push(a);
    return a;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orchard-services-agent-'));
    b = await startBroker();
    runtime = new MemoryRuntime({ images: [TEST_IMAGE] });
    runtime.scriptExec(() => ({ exitCode: ready ? 0 : 1, output: '' }));
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await b.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  const pod = DesiredPodSchema.parse({
    name: 'web-1',
    uid: 'uid-web-1',
    deployment: 'web',
    spec: {
      containers: [
        {
          name: 'main',
          image: TEST_IMAGE,
          ports: [{ containerPort: 8080 }],
          readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 1, failureThreshold: 1 },
        },
      ],
    },
  });
  const desired: DesiredSetMessage = { node: NODE, generation: 3, pods: [pod], at: new Date().toISOString() };
  const web = svcMsg('web', 10, {
    ordinal: 7,
    ports: [
      { name: 'http', port: 80, protocol: 'TCP' },
      { name: 'dns', port: 53, protocol: 'UDP' },
    ],
    publish: [{ port: 8080, servicePort: 80, protocol: 'TCP' }],
    endpoints: [
      endpoint('uid-web-1', NODE, { endpointPort: 30001, ready: false }), // the hub has not heard yet: the agent's probe decides
      endpoint('uid-web-2', 'node-2', { address: '127.0.0.22', endpointPort: 30002 }),
    ],
  });
  const db = svcMsg('db', 11, {
    ordinal: 8,
    trafficPolicy: 'local',
    endpoints: [endpoint('uid-db-1', 'node-2', { address: '127.0.0.22', endpointPort: 30003 })],
  });

  let dp: FakeDataPlane;
  let agent: Agent;
  let localIp = '';
  /** The table once the local pod is ready again with the broker gone. */
  let offlineTable: ServiceTable | undefined;

  it('retained service messages and the index become the table the data plane applies', async () => {
    await b.publish(topics.nodeDesired(NODE), JSON.stringify(desired), { retain: true });
    await b.publish(topics.service('web'), encodeMessage(web, 'deflate'), { retain: true }); // deflated: every agent that subscribes reads it
    await b.publish(topics.service('db'), JSON.stringify(db), { retain: true });
    await b.publish(topics.service('ghost'), JSON.stringify(svcMsg('ghost', 12, { ordinal: 9 })), { retain: true }); // not in the index: held, not used
    await b.publish(topics.service('broken'), '{"service":"broken","generation":"x"}', { retain: true }); // invalid: logged, ignored
    await b.publish(topics.serviceIndex(), JSON.stringify(svcIndex(12, ['web', 'db', 'broken'], { [NODE]: '127.0.0.21', 'node-2': '127.0.0.22' })), {
      retain: true,
    });

    dp = new FakeDataPlane();
    agent = makeAgent(dp, b.url);
    await agent.start();
    await waitUntil(() => b.subscribed.includes(topics.allServices()) && b.subscribed.includes(topics.serviceIndex()));
    await waitUntil(() => (dp.last?.listeners.find((l) => l.key === 'web/80/TCP')?.endpoints.length ?? 0) === 2, 10_000);
    const t = dp.last!;
    localIp = t.listeners.find((l) => l.key === 'web/80/TCP')?.endpoints.find((e) => e.local)?.host ?? '';
    expect(localIp).toMatch(/^172\.31\./);
    expect(t.dnsAddress).toBe('10.250.12.1');
    expect(t.addresses).toEqual(['10.250.12.1', '10.250.12.8', '10.250.12.7']);
    expect(t.records.map((r) => `${r.name}=${r.address}`)).toEqual(['db=10.250.12.8', 'web=10.250.12.7']);
    expect(t.listeners.map((l) => `${l.key} ${l.address} ${l.policy} [${l.endpoints.map((e) => `${e.local ? 'L ' : ''}${e.id}`).join(' ')}]`)).toEqual([
      'db/80/TCP 10.250.12.8 local []', // its only endpoint is remote
      'web/80/TCP 10.250.12.7 preferLocal [127.0.0.22:30002 L ' + `${localIp}:8080]`,
      'web/53/UDP 10.250.12.7 preferLocal []',
    ]);
    expect(t.publish.map((l) => `${l.key} ${l.address} ${l.endpoints.length}`)).toEqual(['publish/8080/TCP 127.0.0.21 2']);
    expect(t.endpointPorts).toEqual([{ key: '30001/TCP', port: 30001, protocol: 'TCP', target: { host: localIp, port: 8080 }, uid: 'uid-web-1', ready: true }]);
    expect(t.advertiseAddress).toBe('127.0.0.21');
    expect(t.peers).toEqual(['127.0.0.21', '127.0.0.22']);
    // Reported to the hub so other nodes can dial this one.
    await waitUntil(() =>
      b.seen.some(
        (s) => s.topic === topics.nodeStatus(NODE) && (s.payload as { info?: { advertiseAddress?: string } }).info?.advertiseAddress === '127.0.0.21',
      ),
    );
    // Persisted for an offline cold boot.
    await agent.idle();
    const onDisk = JSON.parse(await readFile(join(dir, 'services.json'), 'utf8')) as { services: Array<{ service: string }> };
    expect(onDisk.services.map((s) => s.service)).toEqual(['db', 'ghost', 'web']);
  });

  it('an older generation is taken too (a restored hub is the authority); an empty retained payload deletes the service', async () => {
    await b.publish(topics.service('web'), JSON.stringify({ ...web, generation: 9, ordinal: 99 }), { retain: true });
    await b.publish(topics.service('db'), '', { retain: true });
    await waitUntil(() => dp.last?.records.length === 1 && dp.last.records[0]?.address === '10.250.12.99', 10_000);
    expect(dp.last?.records).toMatchObject([{ name: 'web', address: '10.250.12.99' }]);
    // Put the newest web back as retained.
    await b.publish(topics.service('web'), encodeMessage(web, 'deflate'), { retain: true });
    await waitUntil(() => dp.last?.records[0]?.address === '10.250.12.7', 10_000);
  });

  it('with the broker gone, a local pod turning not ready (and ready again) still updates the table', async () => {
    await b.close();
    await waitUntil(() => agent.link?.connected === false);
    ready = false;
    await waitUntil(() => dp.last?.listeners.find((l) => l.key === 'web/80/TCP')?.endpoints.every((e) => !e.local) === true, 10_000);
    expect(dp.last?.endpointPorts).toMatchObject([{ key: '30001/TCP', ready: false }]);
    ready = true;
    await waitUntil(() => dp.last?.listeners.find((l) => l.key === 'web/80/TCP')?.endpoints.some((e) => e.local) === true, 10_000);
    offlineTable = structuredClone(dp.last);
    expect(offlineTable?.listeners.find((l) => l.key === 'web/80/TCP')?.endpoints.map((e) => e.id)).toEqual(['127.0.0.22:30002', `${localIp}:8080`]);
  });

  it('an agent restarted with the broker gone loads services.json and applies the same table', async () => {
    await agent.stop();
    expect(dp.closed).toBe(true);
    const dp2 = new FakeDataPlane();
    const again = makeAgent(dp2, b.url); // nothing listens there any more
    await again.start();
    // Names at once from the cache (before the pod's first readiness probe), then the local endpoint.
    await waitUntil(() => dp2.applied.length > 0, 5000);
    expect(dp2.applied[0]?.records.map((r) => r.name)).toEqual(['web']);
    await waitUntil(() => JSON.stringify(dp2.last) === JSON.stringify(offlineTable), 10_000);
    expect(again.link?.connected).toBe(false);
    expect(runtime.calls.create).toBe(1); // the container was adopted, not recreated
  });
});
