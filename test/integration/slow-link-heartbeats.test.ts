import * as https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { LABELS } from '../../agent/runtime/runtime.js';
import { decodeMessage } from '../../protocol/messages.js';
import { NodeUsageMessageSchema } from '../../protocol/reports.js';
import { MAX_STREAM_CHUNK } from '../../protocol/streams.js';
import { topics } from '../../protocol/topics.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';
import { SlowLink } from '../helpers/slow-link.js';

/**
 * Issue 16: "a log burst never delays a node's heartbeats". A hollow agent (real Agent,
 * MemoryRuntime) reaches a real hub through a 64 KiB/s uplink (SlowLink); four `logs -f` readers
 * drain a 1 MiB log burst as fast as the hub grants, so the agent has up to 4 × 64 KiB of stream
 * credit at once: queued ahead of a heartbeat, that would hold it ≈ 4 s. The agent keeps at most
 * about one stream frame between itself and the hub (agent/link.ts), so each heartbeat arrives
 * within (one frame + the heartbeat) / link rate, plus slack for a loaded machine.
 */

const MANIFEST = `
apiVersion: orchard/v1
kind: Deployment
metadata: { name: chatty }
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: app
          image: app:v1
`;

const LINK_BYTES_PER_SEC = 64 * 1024;
const BURST_MS = 6000;
/**
 * One frame (plus MQTT and TLS framing) and a heartbeat through the link, plus the relay's 100 ms
 * burst and scheduling slack for a loaded CI machine (hub, agent and readers share this process);
 * ≈ 1.8 s, against ≈ 4 s of log output queued ahead of a heartbeat without the pacing.
 */
const MAX_DELAY_MS = ((MAX_STREAM_CHUNK + 2048) / LINK_BYTES_PER_SEC) * 1000 + 1500;

describe('a log burst on a slow uplink does not delay heartbeats', () => {
  let t: TestHub;
  let link: SlowLink;
  let agent: Agent;
  let pod = '';
  const dir = mkdtempSync(join(tmpdir(), 'orchard-slowlink-'));
  const runtime = new MemoryRuntime({ images: ['app:v1'], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
  /** Each usage heartbeat the hub got: when the agent sampled it, when the hub received it (ms). */
  const beats: Array<{ sampled: number; received: number }> = [];

  beforeAll(async () => {
    t = await startTestHub({ streams: { maxPerNode: 4 } });
    link = await SlowLink.start({ host: '127.0.0.1', port: t.hub.mqttPort }, { upBytesPerSec: LINK_BYTES_PER_SEC });
    await t.hub.broker.subscribe(topics.nodeUsage('pi-1'), (_topic, payload) => {
      const received = Date.now();
      const r = decodeMessage(NodeUsageMessageSchema, payload);
      const at = r.ok ? (r.value.usage?.at ?? r.value.at) : undefined;
      if (at !== undefined) beats.push({ sampled: Date.parse(at), received });
    });
    const credential = t.hub.auth.issueNodeCredential('pi-1', {});
    agent = new Agent({
      node: 'pi-1',
      labels: {},
      dataDir: join(dir, 'agent'),
      runtime,
      probe: new EngineOnlyProbe(runtime),
      link: { url: `mqtts://127.0.0.1:${link.port}`, username: 'pi-1', password: credential, ca: t.hub.pki?.caPem ?? '' },
      usageIntervalMs: 250,
      resyncMs: 200,
    });
    await agent.start();
    expect((await t.api('POST', '/api/v1/apply', MANIFEST)).status).toBe(200);
    const c = await waitFor('the pod running', async () => (await runtime.listContainers('pi-1')).find((x) => x.state === 'running'));
    pod = c.labels[LABELS.pod] ?? '';
    // The burst: 1 MiB already in the log when the readers come, far more than the link moves in the test.
    for (let i = 0; i < 16; i++) runtime.logBook.append(c.id, `${String(i).padStart(4, '0')} ${'x'.repeat(64 * 1024 - 6)}\n`);
    await waitFor('heartbeats over the slow link', () => beats.length >= 3);
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
    await link?.close();
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Log bytes the readers got so far. */
  let read = 0;
  const follow = (): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const req = https.get(
        `${t.hub.apiUrl}/api/v1/pods/${pod}/logs?follow=true`,
        { ca: t.hub.pki?.caPem ?? '', headers: { authorization: `Bearer ${t.adminToken}` } },
        (res) => {
          res.on('data', (chunk: Buffer) => (read += chunk.length));
          resolve(res);
        },
      );
      req.on('error', reject);
    });

  it('heartbeats arrive within about one frame of link time while four log streams fill the link', async () => {
    const readers = await Promise.all([follow(), follow(), follow(), follow()]);
    for (const r of readers) expect(r.statusCode).toBe(200);
    const started = Date.now();
    const readBefore = read;
    await new Promise((r) => setTimeout(r, BURST_MS));
    const ended = Date.now();
    const readDuringBurst = read - readBefore;
    for (const r of readers) r.destroy();
    // Every heartbeat sampled during the burst has arrived once one sampled after it has (one TCP stream, in order).
    await waitFor('a heartbeat sampled after the burst', () => beats.some((b) => b.sampled > ended), 15_000);

    // The link really was full of log output (most of its capacity went to the readers)...
    expect(readDuringBurst).toBeGreaterThan(0.3 * LINK_BYTES_PER_SEC * (BURST_MS / 1000));
    // ...and the heartbeats sampled after its first second (every window of credit out by then) arrived promptly.
    const during = beats.filter((b) => b.sampled >= started + 1000 && b.sampled <= ended);
    expect(during.length).toBeGreaterThanOrEqual(10);
    const delays = during.map((b) => b.received - b.sampled).sort((a, b) => a - b);
    const max = delays.at(-1) ?? 0;
    console.log(
      `slow-link heartbeats: ${during.length}, delay max ${max} ms, median ${delays[delays.length >> 1]} ms; log bytes read ${readDuringBurst} in ${BURST_MS} ms`,
    );
    expect(max).toBeLessThanOrEqual(MAX_DELAY_MS);
  }, 40_000);
});
