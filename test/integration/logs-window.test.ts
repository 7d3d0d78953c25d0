import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { systemClock, type Clock } from '../../agent/clock.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { LABELS } from '../../agent/runtime/runtime.js';
import { MqttCommandClient } from '../../cli/mqtt-commands.js';
import { bufferIo } from '../../cli/io.js';
import { runCli } from '../../cli/run.js';
import { apiTokenId } from '../../protocol/api.js';
import { OrchardError } from '../../protocol/errors.js';
import { LOGS_SINCE_AGO } from '../../protocol/streams.js';
import { topics, userClientId } from '../../protocol/topics.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

/**
 * Issue 16 `orchard logs -c NAME --since D` through a real hub (TLS broker, SQLite, HTTPS) and a
 * hollow agent (real Agent over MQTT, MemoryRuntime) whose clock runs an hour behind the hub's,
 * as a Pi without a real-time clock may: the `since` window must be measured on the device's
 * clock (the one its engine stamps lines with), so the hub sends a duration, not a time. Also
 * the MQTT `logs` command through a real MQTT client on the hub's broker (its ACL, its reply topic).
 */
const MANIFEST = `
apiVersion: orchard/v1
kind: Deployment
metadata: { name: duo }
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: app
          image: app:v1
        - name: sidecar
          image: side:v1
`;

/** The device's clock is an hour behind the hub's. */
const SKEW_MS = -3_600_000;
const MIN = 60_000;

describe('logs -c and --since on a device whose clock differs from the hub’s', () => {
  let t: TestHub;
  let agent: Agent;
  let pod = '';
  let viewerToken = '';
  let caFile = '';
  const dir = mkdtempSync(join(tmpdir(), 'orchard-logs-window-'));
  const device: Clock = { ...systemClock, now: () => Date.now() + SKEW_MS };
  const runtime = new MemoryRuntime({ images: ['app:v1', 'side:v1'], now: () => device.now() });

  beforeAll(async () => {
    t = await startTestHub();
    viewerToken = t.hub.auth.createApiToken({ name: 'look', role: 'viewer' }).token;
    caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, t.hub.pki?.caPem ?? '');
    agent = new Agent({
      node: 'pi-1',
      labels: {},
      dataDir: join(dir, 'agent'),
      runtime,
      clock: device,
      probe: new EngineOnlyProbe(runtime),
      link: { url: t.hub.mqttUrl, username: 'pi-1', password: t.hub.auth.issueNodeCredential('pi-1', {}), ca: t.hub.pki?.caPem ?? '' },
      usageIntervalMs: 500,
      resyncMs: 200,
    });
    await agent.start();
    expect((await t.api('POST', '/api/v1/apply', MANIFEST)).status).toBe(200);
    const running = await waitFor('both containers running', async () => {
      const cs = (await runtime.listContainers('pi-1')).filter((c) => c.state === 'running');
      return cs.length === 2 ? cs : undefined;
    });
    const id = (name: string): string => running.find((c) => c.labels[LABELS.container] === name)?.id ?? '';
    pod = running[0]?.labels[LABELS.pod] ?? '';
    // The hub learns from the agent's status that it measures `since` itself.
    await waitFor('the agent’s features', () => t.hub.store.get('Node', 'pi-1')?.status.info?.features?.includes(LOGS_SINCE_AGO));
    // Stamped on the device's clock, as its engine would.
    const now = device.now();
    runtime.logBook.append(id('app'), 'app old\n', 1, now - 20 * MIN);
    runtime.logBook.append(id('app'), 'app new\n', 1, now - 2 * MIN);
    runtime.logBook.append(id('sidecar'), 'side old\n', 1, now - 20 * MIN);
    runtime.logBook.append(id('sidecar'), 'side new 1\n', 1, now - 2 * MIN);
    runtime.logBook.append(id('sidecar'), 'side new 2\n', 2, now - 1_000);
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = async (...argv: string[]): Promise<{ code: number; out: string; err: string }> => {
    const b = bufferIo({ env: { ORCHARD_SERVER: t.hub.apiUrl, ORCHARD_TOKEN: viewerToken }, homeDir: dir });
    const code = await runCli(['--ca', caFile, ...argv], b.io);
    return { code, out: b.stdout(), err: b.stderr() };
  };

  it('-c NAME prints that container’s lines only; the default is the first container; an unknown name is an error naming it', async () => {
    const side = await cli('logs', pod, '-c', 'sidecar');
    expect(side.err).toBe('');
    expect(side.code).toBe(0);
    expect(side.out).toBe('side old\nside new 1\nside new 2\n');
    const first = await cli('logs', pod);
    expect(first.code).toBe(0);
    expect(first.out).toBe('app old\napp new\n');
    const unknown = await cli('logs', pod, '--container', 'nope');
    expect(unknown.code).toBe(1);
    expect(unknown.out).toBe('');
    expect(unknown.err).toContain(`pod "${pod}" has no container "nope" (it has app, sidecar)`);
  });

  it('--since returns the lines inside the window on the device’s clock and none older, whatever the hub’s clock says', async () => {
    // Measured from the hub's clock (an hour ahead) a 10-minute window would lie in the device's
    // future and print nothing; a 90-minute one would print every line.
    const tenMin = await cli('logs', pod, '-c', 'sidecar', '--since', '10m');
    expect(tenMin.err).toBe('');
    expect(tenMin.code).toBe(0);
    expect(tenMin.out).toBe('side new 1\nside new 2\n');
    const halfHour = await cli('logs', pod, '-c', 'sidecar', '--since', '30m');
    expect(halfHour.out).toBe('side old\nside new 1\nside new 2\n');
    const lastSeconds = await cli('logs', pod, '-c', 'sidecar', '--since', '30s');
    expect(lastSeconds.out).toBe('side new 2\n');
    const app = await cli('logs', pod, '--since', '10m', '--tail', '5');
    expect(app.out).toBe('app new\n');
    const bad = await cli('logs', pod, '--since', 'yesterday');
    expect(bad.code).not.toBe(0);
    expect(bad.out).toBe('');
  });

  it('the MQTT logs command through a real MQTT client on the hub’s broker: a viewer token reads the window; another client sees nothing of it', async () => {
    // An eavesdropper with its own token: the broker refuses it other clients' reply topics.
    const spyToken = t.hub.auth.createApiToken({ name: 'spy', role: 'viewer' }).token;
    const spyId = userClientId(apiTokenId(spyToken) ?? '', 'spy');
    const spy = await mqtt.connectAsync(t.hub.mqttUrl, { clientId: spyId, username: 'token', password: spyToken, ca: t.hub.pki?.caPem, reconnectPeriod: 0 });
    const overheard: string[] = [];
    spy.on('message', (_topic, payload) => overheard.push(payload.toString()));
    await expect(spy.subscribeAsync(topics.reply('+'), { qos: 1 })).rejects.toThrow(/Subscribe error/);
    await spy.subscribeAsync(topics.reply(spyId), { qos: 1 });
    const client = new MqttCommandClient({ servers: [t.hub.mqttUrl], token: viewerToken, caPem: t.hub.pki?.caPem ?? '' });
    try {
      const got = await client.request('logs', { pod, container: 'sidecar', sinceSeconds: 600 }, 10_000);
      expect(got).toEqual({ pod, container: 'sidecar', text: 'side new 1\nside new 2\n', truncated: false });
      const tail = await client.request('logs', { pod, tail: 1 }, 10_000);
      expect(tail).toEqual({ pod, container: 'app', text: 'app new\n', truncated: false });
      const err = await client.request('logs', { pod, container: 'nope' }, 10_000).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(OrchardError.is(err) && err.code).toBe('ERR_NOT_FOUND');
      expect((err as Error).message).toContain('has no container "nope"');
      expect(overheard).toEqual([]);
    } finally {
      client.close();
      await spy.endAsync();
    }
  });
});
