import { promises as fsp } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DesiredSetMessage } from '../protocol/messages.js';
import { DesiredPodSchema } from '../protocol/messages.js';
import { topics } from '../protocol/topics.js';
import { Agent } from './agent.js';
import { EngineOnlyProbe } from './reporter.js';
import { MemoryRuntime } from './runtime/memory-runtime.js';
import type { TestBroker } from './test-broker.js';
import { startBroker, waitUntil } from './test-broker.js';
import { TEST_IMAGE, flush, mockPod } from './test-fixtures.js';
import { FakeClock } from '../test/helpers/fake-clock.js';

/**
 * SD-card care: in steady state the agent writes nothing to its data dir — not for a desired
 * set redelivered on reconnect, not for a new generation with the same pods, not on resyncs,
 * heartbeats, observed republishes or probe runs. Checked two ways: every file's inode, size
 * and mtime (and the directory listing), and the fs.promises write calls the cache uses.
 */

type Snapshot = Record<string, { ino: number; size: number; mtimeMs: number }>;

async function snapshot(dir: string): Promise<Snapshot> {
  const out: Snapshot = {};
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const s = await stat(p);
      out[p.slice(dir.length)] = { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs };
      if (e.isDirectory()) await walk(p);
    }
  };
  const s = await stat(dir);
  out['.'] = { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs };
  await walk(dir);
  return out;
}

const pods = [
  mockPod({ name: 'web-1' }),
  mockPod({ name: 'web-2' }),
  DesiredPodSchema.parse({
    name: 'probed-1',
    uid: 'uid-probed-1',
    spec: {
      containers: [
        {
          name: 'main',
          image: TEST_IMAGE,
          readinessProbe: { exec: { command: ['true'] }, periodSeconds: 1 },
          livenessProbe: { exec: { command: ['true'] }, periodSeconds: 1 },
        },
      ],
    },
  }),
];
const set = (generation: number): DesiredSetMessage => ({ node: 'node-1', generation, pods, at: new Date().toISOString() });

describe('SD-card care: no data-dir writes in steady state', () => {
  let dir: string;
  let b: TestBroker;
  let agent: Agent | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orchard-sd-'));
    b = await startBroker();
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await agent?.stop();
    await b.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('repeated identical sets with new generations, reconnects and resyncs write nothing', async () => {
    // The agent's timers (resyncs, usage heartbeats, observed republishes, probes, reconnects)
    // run on a fake clock that pump() moves in 5 ms steps, letting real broker I/O run between.
    const clock = new FakeClock(Date.now());
    const pump = async (ms: number): Promise<void> => {
      for (let t = 0; t < ms; t += 5) {
        clock.advance(5);
        await flush(3);
      }
    };
    const pumpUntil = async (cond: () => boolean, maxMs = 10_000): Promise<void> => {
      for (let t = 0; t < maxMs && !cond(); t += 5) await pump(5);
      expect(cond()).toBe(true);
    };
    const runtime = new MemoryRuntime({ images: [TEST_IMAGE] });
    agent = new Agent({
      node: 'node-1',
      labels: {},
      dataDir: dir,
      runtime,
      link: { url: b.url, random: () => 0 },
      probe: new EngineOnlyProbe(runtime),
      usageIntervalMs: 20,
      resyncMs: 25,
      observedRepublishMs: 50,
      clock,
    });
    await agent.start();
    await waitUntil(() => b.subscribed.includes(topics.nodeDesired('node-1')));
    await b.publish(topics.nodeDesired('node-1'), JSON.stringify(set(1)), { retain: true });
    await waitUntil(() => agent?.desiredGeneration === 1);
    await agent.idle();
    expect((await runtime.listContainers('node-1')).filter((c) => c.state === 'running')).toHaveLength(3);
    const before = await snapshot(dir);
    expect(Object.keys(before)).toContain('/desired.json');

    const writes = [vi.spyOn(fsp, 'open'), vi.spyOn(fsp, 'writeFile'), vi.spyOn(fsp, 'rename'), vi.spyOn(fsp, 'mkdir'), vi.spyOn(fsp, 'appendFile')];
    const passes = agent.reconciler.passCount;
    for (let g = 2; g <= 21; g++) {
      await b.publish(topics.nodeDesired('node-1'), JSON.stringify(set(g)), { retain: true });
      await waitUntil(() => agent?.desiredGeneration === g);
      if (g === 10) {
        // A link drop: the broker redelivers the retained set on reconnect.
        const seenBefore = b.seen.length;
        for (const c of b.clients.values()) c.conn.destroy();
        await pumpUntil(() => b.clients.size > 0 && b.seen.length > seenBefore);
      }
      await pump(15);
    }
    await pump(1500); // resyncs, heartbeats, observed republishes, probe runs
    await agent.idle();

    expect(agent.reconciler.passCount).toBeGreaterThan(passes + 20);
    expect(runtime.calls.exec).toBeGreaterThan(0);
    expect(b.seen.filter((s) => s.topic === topics.nodeObserved('node-1') && (s.payload as { generation: number }).generation === 21).length).toBeGreaterThan(
      0,
    );
    expect(writes.map((w) => w.mock.calls.length)).toEqual([0, 0, 0, 0, 0]);
    expect(await snapshot(dir)).toEqual(before);
  });

  it('does write once when the pods really change', async () => {
    const runtime = new MemoryRuntime({ images: [TEST_IMAGE] });
    agent = new Agent({ node: 'node-1', labels: {}, dataDir: dir, runtime, link: { connect: false }, probe: new EngineOnlyProbe(runtime) });
    await agent.start();
    agent.onDesired(set(1));
    await agent.idle();
    const before = await snapshot(dir);
    agent.onDesired(set(2));
    await agent.idle();
    expect(await snapshot(dir)).toEqual(before);
    agent.onDesired({ ...set(3), pods: pods.slice(0, 2) });
    await agent.idle();
    const after = await snapshot(dir);
    expect(after['/desired.json']?.ino).not.toBe(before['/desired.json']?.ino); // atomic replace: a new inode
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort()); // and no temp file left
  });
});
