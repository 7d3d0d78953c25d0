import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredSetMessage } from '../protocol/messages.js';
import { NodeStatusMessageSchema, ObservedSetMessageSchema } from '../protocol/reports.js';
import { topics } from '../protocol/topics.js';
import { Agent } from './agent.js';
import { EngineOnlyProbe } from './reporter.js';
import { MemoryRuntime } from './runtime/memory-runtime.js';
import { LABELS } from './runtime/runtime.js';
import type { TestBroker } from './test-broker.js';
import { startBroker, waitUntil } from './test-broker.js';
import { TEST_IMAGE, mockPod } from './test-fixtures.js';

const desired = (node: string, generation: number, names: string[]): DesiredSetMessage => ({
  node,
  generation,
  pods: names.map((n) => mockPod({ name: n })),
  at: new Date().toISOString(),
});

describe('Agent', () => {
  let dir: string;
  let runtime: MemoryRuntime;
  const agents: Agent[] = [];
  const make = (node: string, link: ConstructorParameters<typeof Agent>[0]['link'], dataDir = join(dir, node)): Agent => {
    const a = new Agent({ node, labels: { zone: 'lab' }, dataDir, runtime, link, probe: new EngineOnlyProbe(runtime), usageIntervalMs: 50 });
    agents.push(a);
    return a;
  };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orchard-agent-'));
    runtime = new MemoryRuntime({ images: [TEST_IMAGE] });
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
    await rm(dir, { recursive: true, force: true });
  });

  describe('over MQTT', () => {
    let b: TestBroker;
    beforeEach(async () => {
      b = await startBroker();
    });
    afterEach(async () => {
      await Promise.all(agents.splice(0).map((a) => a.stop()));
      await b.close();
    });

    it('receives a desired set, persists it, runs it and reports status, usage and observed', async () => {
      const a = make('node-1', { url: b.url, random: () => 0 });
      await a.start();
      await waitUntil(() => b.subscribed.includes(topics.nodeDesired('node-1')));
      await b.publish(topics.nodeDesired('node-1'), JSON.stringify(desired('node-1', 4, ['web-1'])), { retain: true });
      await waitUntil(() => b.seen.some((s) => s.topic === topics.nodeObserved('node-1') && (s.payload as { generation: number }).generation === 4));
      await a.idle();

      const onDisk = JSON.parse(await readFile(join(dir, 'node-1', 'desired.json'), 'utf8')) as DesiredSetMessage;
      expect(onDisk.generation).toBe(4);
      expect((await runtime.listContainers('node-1')).map((c) => c.state)).toEqual(['running']);

      const observed = b.seen.filter((s) => s.topic === topics.nodeObserved('node-1')).at(-1);
      const parsed = ObservedSetMessageSchema.parse(observed?.payload);
      expect(parsed.pods[0]).toMatchObject({ name: 'web-1', phase: 'Running', ready: true });
      const status = NodeStatusMessageSchema.parse(b.seen.find((s) => s.topic === topics.nodeStatus('node-1'))?.payload);
      expect(status.labels).toEqual({ zone: 'lab' });
      expect(status.info.arch).toBe('amd64');
      await waitUntil(() => b.seen.some((s) => s.topic === topics.nodeUsage('node-1')));
    });

    it('ignores a bad desired payload and keeps enforcing the last good one', async () => {
      const a = make('node-1', { url: b.url, random: () => 0 });
      await a.start();
      await waitUntil(() => b.subscribed.includes(topics.nodeDesired('node-1')));
      await b.publish(topics.nodeDesired('node-1'), JSON.stringify(desired('node-1', 1, ['web-1'])));
      await waitUntil(() => a.desiredGeneration === 1);
      await b.publish(topics.nodeDesired('node-1'), '{"node":"node-1","generation":2,"pods":"oops"}');
      await b.publish(topics.nodeDesired('node-1'), Buffer.from([0xff, 0x00, 0x12]));
      await new Promise((r) => setTimeout(r, 100));
      await a.idle();
      expect(a.desiredGeneration).toBe(1);
      expect(await runtime.listContainers('node-1')).toHaveLength(1);
      const onDisk = JSON.parse(await readFile(join(dir, 'node-1', 'desired.json'), 'utf8')) as DesiredSetMessage;
      expect(onDisk.generation).toBe(1);
    });

    it('ignores a desired set from an older hub leader epoch (a deposed leader), takes a newer epoch at a lower generation, and remembers the epoch across a restart', async () => {
      const dataDir = join(dir, 'node-1');
      const a = make('node-1', { url: b.url, random: () => 0 }, dataDir);
      await a.start();
      await waitUntil(() => b.subscribed.includes(topics.nodeDesired('node-1')));
      // The agent tells the hub it reads epochs (the hub stamps only such agents' messages).
      await waitUntil(() => b.seen.some((s) => s.topic === topics.nodeStatus('node-1')));
      const status = NodeStatusMessageSchema.parse(b.seen.find((s) => s.topic === topics.nodeStatus('node-1'))?.payload);
      expect(status.info.features).toContain('epoch');
      const running = async (): Promise<string[]> =>
        (await runtime.listContainers('node-1'))
          .filter((c) => c.state === 'running')
          .map((c) => c.labels[LABELS.pod] ?? '')
          .sort();

      await b.publish(topics.nodeDesired('node-1'), JSON.stringify({ ...desired('node-1', 10, ['web-1']), epoch: 7 }), { retain: true });
      await waitUntil(() => a.desiredGeneration === 10);
      await a.idle();
      expect(await running()).toEqual(['web-1']);
      // The deposed leader (epoch 5) still publishes, even with a higher generation: dropped.
      await b.publish(topics.nodeDesired('node-1'), JSON.stringify({ ...desired('node-1', 50, ['stale-1', 'stale-2']), epoch: 5 }), { retain: true });
      await waitUntil(() => a.epoch.staleDropped === 1);
      await a.idle();
      expect(a.desiredGeneration).toBe(10);
      expect(await running()).toEqual(['web-1']);
      expect((JSON.parse(await readFile(join(dataDir, 'desired.json'), 'utf8')) as DesiredSetMessage).generation).toBe(10);
      // The new leader (epoch 9) starts from the store's revision, lower than the deposed one's: taken.
      await b.publish(topics.nodeDesired('node-1'), JSON.stringify({ ...desired('node-1', 3, ['web-2']), epoch: 9 }), { retain: true });
      await waitUntil(() => a.desiredGeneration === 3);
      await a.idle();
      expect(await running()).toEqual(['web-2']);
      expect(a.epoch).toEqual({ highest: 9, staleDropped: 1 });
      expect(JSON.parse(await readFile(join(dataDir, 'epoch.json'), 'utf8'))).toEqual({ epoch: 9 });
      await a.stop();

      // Restarted: the epoch file holds 9, so epoch 7 (retained on a broker, say) is dropped at once.
      const again = make('node-1', { url: b.url, random: () => 0 }, dataDir);
      await b.publish(topics.nodeDesired('node-1'), JSON.stringify({ ...desired('node-1', 60, ['stale-3']), epoch: 7 }), { retain: true });
      await again.start();
      await waitUntil(() => again.epoch.staleDropped === 1);
      await again.idle();
      expect(again.epoch.highest).toBe(9);
      expect(await running()).toEqual(['web-2']);
    });
  });

  it('enforces the cached desired set with no hub after a restart', async () => {
    const dataDir = join(dir, 'n1');
    const first = make('node-1', { connect: false }, dataDir);
    await first.start();
    first.onDesired(desired('node-1', 2, ['web-1', 'web-2']));
    await first.idle();
    await first.stop();
    // Workloads survive the agent's exit.
    expect((await runtime.listContainers('node-1')).every((c) => c.state === 'running')).toBe(true);

    // While the agent is down a container disappears; the next agent, offline, restores it.
    const lost = (await runtime.listContainers('node-1')).find((c) => c.labels[LABELS.pod] === 'web-2');
    await runtime.remove(lost?.id ?? '');
    const second = make('node-1', { connect: false }, dataDir);
    await second.start();
    await second.idle();
    const pods = (await runtime.listContainers('node-1')).map((c) => c.labels[LABELS.pod]).sort();
    expect(pods).toEqual(['web-1', 'web-2']);
    expect(second.desiredGeneration).toBe(2);
  });

  it('adopts existing containers: a new agent keeps their ids', async () => {
    const dataDir = join(dir, 'n1');
    const first = make('node-1', { connect: false }, dataDir);
    await first.start();
    first.onDesired(desired('node-1', 1, ['web-1', 'web-2']));
    await first.idle();
    await first.stop();
    const ids = (await runtime.listContainers('node-1')).map((c) => c.id).sort();
    const creates = runtime.calls.create;

    const second = make('node-1', { connect: false }, dataDir);
    await second.start();
    await second.idle();
    expect((await runtime.listContainers('node-1')).map((c) => c.id).sort()).toEqual(ids);
    expect(runtime.calls.create).toBe(creates);
    expect(second.observed.map((p) => p.phase)).toEqual(['Running', 'Running']);
  });

  it('runs many hollow agents in one process over one engine, each minding its own node', async () => {
    const n = 50;
    const fleet = Array.from({ length: n }, (_, i) => make(`hollow-${i}`, { connect: false }));
    await Promise.all(fleet.map((a) => a.start()));
    fleet.forEach((a, i) => a.onDesired(desired(a.node, 1, [`app-${i}`, `side-${i}`])));
    await Promise.all(fleet.map((a) => a.idle()));
    expect(runtime.all()).toHaveLength(2 * n);
    for (const [i, a] of fleet.entries()) {
      const mine = await runtime.listContainers(a.node);
      expect(mine.map((c) => c.labels[LABELS.pod]).sort()).toEqual([`app-${i}`, `side-${i}`]);
    }
    // Emptying one node's set touches nobody else.
    fleet[0]?.onDesired(desired('hollow-0', 2, []));
    await fleet[0]?.idle();
    expect(runtime.all()).toHaveLength(2 * n - 2);
  });

  it('rejects an invalid node name or labels up front', () => {
    expect(() => new Agent({ node: 'Bad_Name', labels: {}, dataDir: dir, runtime, link: { connect: false } })).toThrow(/node name/);
    expect(() => new Agent({ node: 'ok', labels: { 'bad key!': 'x' }, dataDir: dir, runtime, link: { connect: false } })).toThrow(/labels/);
  });
});
