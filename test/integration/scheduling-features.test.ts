import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import type { Arch } from '../../protocol/manifest.js';
import type { Pod } from '../../protocol/objects.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry.js';

/**
 * Issue 4 end to end inside one process: a real hub (TLS broker, SQLite, HTTPS API) and
 * hollow nodes (the real Agent over MQTT, MemoryRuntime engine). Each block uses its own
 * nodes, marked with a `suite` label its deployments select, so blocks do not interfere.
 */

const RAW_ARCH: Record<Arch, string> = { amd64: 'x86_64', arm64: 'aarch64', arm: 'armv7l' };

describe('scheduling features (real hub, hollow agents)', () => {
  let t: TestHub;
  let dataRoot = '';
  const agents = new Map<string, { agent: Agent; runtime: MemoryRuntime; labels: Record<string, string> }>();

  async function join_(name: string, labels: Record<string, string>, o: { arch?: Arch; memTotal?: number } = {}): Promise<Agent> {
    const arch = o.arch ?? 'amd64';
    const runtime = new MemoryRuntime({ info: { arch, rawArch: RAW_ARCH[arch], ...(o.memTotal ? { memTotal: o.memTotal } : {}) } });
    const agent = newAgent(name, labels, runtime);
    agents.set(name, { agent, runtime, labels });
    await agent.start();
    await waitFor(
      `node ${name} Ready`,
      () => t.hub.store.get('Node', name)?.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True'),
      15_000,
      50,
    );
    return agent;
  }

  function newAgent(name: string, labels: Record<string, string>, runtime: MemoryRuntime): Agent {
    // The labels are the node's enrolment (join-token) labels: authoritative for placement. The
    // agent reports them too, which lands them under node.orchard.dev/ as well.
    const password = t.hub.auth.issueNodeCredential(name, labels);
    return new Agent({
      node: name,
      labels,
      dataDir: join(dataRoot, name),
      runtime,
      probe: new EngineOnlyProbe(runtime),
      link: { url: t.hub.mqttUrl, username: name, password, ca: t.hub.pki!.caPem },
      usageIntervalMs: 500,
      resyncMs: 1000,
    });
  }

  const apply = async (yaml: string): Promise<void> => {
    const r = await t.api('POST', '/api/v1/apply', yaml);
    expect(r.status, r.text).toBe(200);
  };
  const post = async (path: string, body: object = {}): Promise<unknown> => {
    const r = await t.api('POST', path, body);
    expect(r.status, r.text).toBe(200);
    return r.body;
  };
  const podsOf = (owner: string): Pod[] => t.hub.store.list('Pod', { ownerName: owner });
  const nodesOf = (owner: string): string[] =>
    podsOf(owner)
      .map((p) => p.spec.nodeName ?? '-')
      .sort();
  /** Pods of `owner` the agents report running, by node. */
  const runningOn = (owner: string): string[] =>
    [...agents]
      .flatMap(([node, a]) => a.agent.observed.filter((p) => p.phase === 'Running' && podsOf(owner).some((x) => x.metadata.name === p.name)).map(() => node))
      .sort();

  const deployment = (name: string, spec: string, image = 'orchard-test/busybox:1'): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
${spec.replaceAll('IMAGE', image)}`;

  /** The test registry is on loopback: the hub asks it only when allow-listed (--registry-allow). */
  const registryAllow: string[] = [];

  beforeAll(async () => {
    t = await startTestHub({ scheduling: { registryAllow } });
    dataRoot = mkdtempSync(join(tmpdir(), 'orchard-sched-agents-'));
  });
  afterAll(async () => {
    for (const a of agents.values()) await a.agent.stop().catch(() => undefined);
    await t.cleanup();
    rmSync(dataRoot, { recursive: true, force: true });
  });

  it('global mode: one pod per matching node, a node joining later gets one, a node losing the label loses it (and agent reports cannot undo that)', async () => {
    await join_('g-1', { suite: 'global' });
    await join_('g-2', { suite: 'other' });
    await apply(
      deployment(
        'node-agent',
        `  mode: global
  template:
    spec:
      nodeSelector: { suite: global }
      containers: [{ name: c, image: IMAGE, command: [sleep, "3600"] }]`,
      ),
    );
    await waitFor('global pod on g-1 running', () => runningOn('node-agent').join() === 'g-1', 15_000, 50);

    await join_('g-3', { suite: 'global' });
    await waitFor('global pod on g-3 too', () => runningOn('node-agent').join() === 'g-1,g-3', 15_000, 50);
    expect(nodesOf('node-agent')).toEqual(['g-1', 'g-3']);

    await post('/api/v1/nodes/g-1/labels', { remove: ['suite'] });
    await waitFor('g-1 lost its global pod', () => nodesOf('node-agent').join() === 'g-3' && runningOn('node-agent').join() === 'g-3', 15_000, 50);

    // The agent comes back and reports suite=global again: the user's removal stands.
    const g1 = agents.get('g-1')!;
    await g1.agent.stop();
    const again = newAgent('g-1', { ...g1.labels, restarted: 'yes' }, g1.runtime);
    agents.set('g-1', { ...g1, agent: again });
    await again.start();
    await waitFor('g-1 reported its labels again', () => t.hub.store.get('Node', 'g-1')!.metadata.labels['node.orchard.dev/restarted'] === 'yes', 15_000, 50);
    await t.hub.settle();
    expect(t.hub.store.get('Node', 'g-1')!.metadata.labels['suite']).toBeUndefined();
    expect(nodesOf('node-agent')).toEqual(['g-3']);

    // Cordon does not take a global pod away (DaemonSet semantics).
    await post('/api/v1/nodes/g-3/cordon');
    await t.hub.settle();
    expect(nodesOf('node-agent')).toEqual(['g-3']);
    await post('/api/v1/nodes/g-3/uncordon');
  });

  it('drain: cordons, moves replicated pods to other nodes, leaves global pods', async () => {
    await join_('d-1', { suite: 'drain' });
    await join_('d-2', { suite: 'drain' });
    await apply(
      deployment(
        'drain-web',
        `  replicas: 4
  template:
    spec:
      nodeSelector: { suite: drain }
      containers: [{ name: c, image: IMAGE, command: [sleep, "3600"] }]`,
      ),
    );
    await apply(
      deployment(
        'drain-agent',
        `  mode: global
  template:
    spec:
      nodeSelector: { suite: drain }
      containers: [{ name: c, image: IMAGE, command: [sleep, "3600"] }]`,
      ),
    );
    await waitFor('4 replicas on both nodes + 2 global', () => runningOn('drain-web').length === 4 && runningOn('drain-agent').length === 2, 15_000, 50);
    expect(new Set(nodesOf('drain-web'))).toEqual(new Set(['d-1', 'd-2']));

    const r = (await post('/api/v1/nodes/d-1/drain')) as { evicted: string[]; kept: string[] };
    expect(r.evicted).toHaveLength(2);
    expect(r.kept).toHaveLength(1);
    await waitFor('replicas running on d-2 only', () => runningOn('drain-web').join() === 'd-2,d-2,d-2,d-2', 15_000, 50);
    expect(nodesOf('drain-agent')).toEqual(['d-1', 'd-2']);
    expect(t.hub.store.get('Node', 'd-1')!.spec.unschedulable).toBe(true);
    const events = (await t.api('GET', '/api/v1/events?involvedObject=Node/d-1')).body as { items: Array<{ reason: string }> };
    expect(events.items.map((e) => e.reason)).toEqual(expect.arrayContaining(['Cordoned', 'Drained']));
  });

  it('taints: NoSchedule keeps new pods off, NoExecute evicts running pods that do not tolerate it', async () => {
    await join_('t-1', { suite: 'taint' });
    await join_('t-2', { suite: 'taint' });
    await post('/api/v1/nodes/t-1/taints', { add: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }] });
    await apply(
      deployment(
        'taint-web',
        `  replicas: 3
  template:
    spec:
      nodeSelector: { suite: taint }
      containers: [{ name: c, image: IMAGE, command: [sleep, "3600"] }]`,
      ),
    );
    await waitFor('all on t-2', () => runningOn('taint-web').join() === 't-2,t-2,t-2', 15_000, 50);

    // NoExecute on t-2 while t-1 still repels: evicted pods wait, explaining both taints.
    await post('/api/v1/nodes/t-2/taints', { add: [{ key: 'maint', effect: 'NoExecute' }] });
    await waitFor(
      'evicted pods pending',
      () => podsOf('taint-web').length === 3 && podsOf('taint-web').every((p) => p.status.unschedulable !== undefined),
      15_000,
      50,
    );
    const pending = podsOf('taint-web')[0]!;
    expect(pending.status.unschedulable!.nodes['t-1']).toEqual(['untolerated taint dedicated=db:NoSchedule']);
    expect(pending.status.unschedulable!.nodes['t-2']).toEqual(['untolerated taint maint:NoExecute']);
    await waitFor('t-2 stopped them', () => runningOn('taint-web').length === 0, 15_000, 50);

    await post('/api/v1/nodes/t-1/taints', { remove: [{ key: 'dedicated', effect: 'NoSchedule' }] });
    await waitFor('all on t-1', () => runningOn('taint-web').join() === 't-1,t-1,t-1', 15_000, 50);
  });

  it('node affinity: required terms filter, preferred ones steer', async () => {
    await join_('a-north', { suite: 'aff', zone: 'north' });
    await join_('a-south', { suite: 'aff', zone: 'south', disk: 'ssd' });
    await join_('a-none', { suite: 'aff' });
    await apply(
      deployment(
        'aff-req',
        `  replicas: 4
  template:
    spec:
      nodeSelector: { suite: aff }
      affinity:
        nodeAffinity:
          required: [{ key: zone, operator: In, values: [north, south] }]
      containers: [{ name: c, image: IMAGE, command: [sleep, "3600"] }]`,
      ),
    );
    await apply(
      deployment(
        'aff-pref',
        `  replicas: 1
  template:
    spec:
      nodeSelector: { suite: aff }
      affinity:
        nodeAffinity:
          preferred: [{ weight: 50, requirement: { key: disk, operator: In, values: [ssd] } }]
      containers: [{ name: c, image: IMAGE, command: [sleep, "3600"] }]`,
      ),
    );
    await waitFor('placed', () => runningOn('aff-req').length === 4 && runningOn('aff-pref').length === 1, 15_000, 50);
    expect(nodesOf('aff-req')).not.toContain('a-none');
    expect(new Set(nodesOf('aff-req'))).toEqual(new Set(['a-north', 'a-south']));
    expect(nodesOf('aff-pref')).toEqual(['a-south']);
  });

  it('spreadBy zone balances replicas across zones, not just nodes', async () => {
    for (const n of ['s-a1', 's-a2', 's-a3']) await join_(n, { suite: 'spread', zone: 'a' });
    await join_('s-b1', { suite: 'spread', zone: 'b' });
    await apply(
      deployment(
        'zoned',
        `  replicas: 4
  placement: { spreadBy: zone }
  template:
    spec:
      nodeSelector: { suite: spread }
      containers: [{ name: c, image: IMAGE, command: [sleep, "3600"] }]`,
      ),
    );
    await waitFor('4 running', () => runningOn('zoned').length === 4, 15_000, 50);
    expect(nodesOf('zoned').filter((n) => n === 's-b1')).toHaveLength(2);
  });

  it('binpack fills one node, spread uses them all', async () => {
    for (const n of ['p-1', 'p-2', 'p-3']) await join_(n, { suite: 'pack' });
    const spec = (strategy: string) => `  replicas: 3
  placement: { strategy: ${strategy} }
  template:
    spec:
      nodeSelector: { suite: pack }
      containers: [{ name: c, image: IMAGE, command: [sleep, "3600"], resources: { requests: { cpu: 250m, memory: 64Mi } } }]`;
    await apply(deployment('packed', spec('binpack')));
    await waitFor('packed running', () => runningOn('packed').length === 3, 15_000, 50);
    expect(new Set(nodesOf('packed')).size).toBe(1);
    await apply(deployment('spread', spec('spread')));
    await waitFor('spread running', () => runningOn('spread').length === 3, 15_000, 50);
    expect(new Set(nodesOf('spread')).size).toBe(3);
  });

  describe('image platforms from a real registry', () => {
    let reg: TestRegistry;
    beforeAll(async () => {
      reg = await startTestRegistry();
      registryAllow.push(reg.host);
      // A manifest list with amd64 and arm64 images and no linux/arm/v7 one.
      await reg.pushMultiArch('orchard/multi', '1', [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ]);
      await join_('i-amd', { suite: 'img' }, { arch: 'amd64' });
      await join_('i-pi64', { suite: 'img' }, { arch: 'arm64' });
      await join_('i-pi32', { suite: 'img', only: 'pi32' }, { arch: 'arm' });
    });
    afterAll(async () => {
      await reg.stop();
    });

    it('keeps pods off nodes whose platform the image lacks', async () => {
      await apply(
        deployment(
          'multi',
          `  replicas: 3
  template:
    spec:
      nodeSelector: { suite: img }
      containers: [{ name: c, image: IMAGE, command: [sleep, "3600"] }]`,
          `${reg.host}/orchard/multi:1`,
        ),
      );
      await waitFor('3 running', () => runningOn('multi').length === 3, 15_000, 50);
      expect(nodesOf('multi')).not.toContain('i-pi32');
      expect(new Set(nodesOf('multi'))).toEqual(new Set(['i-amd', 'i-pi64']));
    });

    it('explains a pod that only an armv7 node could take', async () => {
      await apply(
        deployment(
          'multi-pi32',
          `  replicas: 1
  template:
    spec:
      nodeSelector: { only: pi32 }
      containers: [{ name: c, image: IMAGE }]`,
          `${reg.host}/orchard/multi:1`,
        ),
      );
      const pod = await waitFor('explained', () => podsOf('multi-pi32').find((p) => p.status.unschedulable !== undefined), 15_000, 50);
      expect(pod.status.unschedulable!.nodes['i-pi32']).toEqual(['image has no linux/arm/v7 variant']);
      expect(pod.status.unschedulable!.summary).toMatch(/1 image has no linux\/arm\/v7 variant/);
      const viaApi = (await t.api('GET', `/api/v1/pods/${pod.metadata.name}`)).body as Pod;
      expect(viaApi.status.message).toContain('image has no linux/arm/v7 variant');
    });

    it('fails open when the registry cannot be asked', async () => {
      await apply(
        deployment(
          'unreachable',
          `  replicas: 1
  template:
    spec:
      nodeSelector: { only: pi32 }
      containers: [{ name: c, image: IMAGE }]`,
          '127.0.0.1:9/orchard/nowhere:1',
        ),
      );
      await waitFor('bound to the armv7 node anyway', () => nodesOf('unreachable').join() === 'i-pi32', 15_000, 50);
    });
  });
});
