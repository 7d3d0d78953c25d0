import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTokenId, type CommandReply } from '../../protocol/api.js';
import { topics, userClientId } from '../../protocol/topics.js';
import { bufferIo } from '../../cli/io.js';
import { runCli } from '../../cli/run.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { freePort } from '../helpers/procs.js';

const manifest = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: via-mqtt }
spec:
  replicas: 2
  template:
    spec:
      containers: [{ name: c, image: orchard-test/busybox:1, command: [sleep, "3600"] }]
`;

/** `name` becomes the suffix of the token's own client id, u.<tokenId>.<name>. */
async function connect(t: TestHub, name: string, password: string): Promise<MqttClient> {
  const clientId = userClientId(apiTokenId(password) ?? '', name);
  const c = mqtt.connect(t.hub.mqttUrl, { clientId, username: 'token', password, ca: t.hub.pki?.caPem, reconnectPeriod: 0, connectTimeout: 5000 });
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  await c.subscribeAsync(topics.reply(clientId), { qos: 1 });
  return c;
}

/** Publishes a command and waits for the reply with the same correlation id (on `c`'s own topics). */
function call(c: MqttClient, _name: string, body: object | string): Promise<CommandReply> {
  const clientId = c.options.clientId ?? '';
  const id = typeof body === 'string' ? 'raw' : ((body as { id?: string }).id ?? 'x');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reply within 5 s')), 5000);
    const onMessage = (topic: string, payload: Buffer): void => {
      if (topic !== topics.reply(clientId)) return;
      const reply = JSON.parse(payload.toString()) as CommandReply;
      if (reply.id !== id && !(id === 'raw' && reply.id === 'unknown')) return;
      clearTimeout(timer);
      c.off('message', onMessage);
      resolve(reply);
    };
    c.on('message', onMessage);
    c.publish(topics.command(clientId), typeof body === 'string' ? body : JSON.stringify(body), { qos: 1 });
  });
}

describe('MQTT topic commands (same operations and errors as the web API)', () => {
  let t: TestHub;
  let admin: MqttClient;
  beforeAll(async () => {
    t = await startTestHub();
    admin = await connect(t, 'cli-admin', t.adminToken);
  });
  afterAll(async () => {
    await admin.endAsync();
    await t.cleanup();
  });

  it('apply, get, scale and delete round-trip', async () => {
    const applied = await call(admin, 'cli-admin', { id: randomUUID(), op: 'apply', args: { manifests: manifest } });
    expect(applied).toMatchObject({ ok: true, result: { results: [{ kind: 'Deployment', name: 'via-mqtt', action: 'created' }] } });
    const got = await call(admin, 'cli-admin', { id: 'g1', op: 'get', args: { kind: 'deployments', name: 'via-mqtt' } });
    expect(got).toMatchObject({ id: 'g1', ok: true, result: { kind: 'Deployment', spec: { replicas: 2 } } });
    const scaled = await call(admin, 'cli-admin', { id: 's1', op: 'scale', args: { name: 'via-mqtt', replicas: 1 } });
    expect(scaled).toMatchObject({ ok: true, result: { spec: { replicas: 1 } } });
    // The same object is visible through the web API.
    const web = await t.api('GET', '/api/v1/deployments/via-mqtt');
    expect((web.body as { spec: { replicas: number } }).spec.replicas).toBe(1);
    const del = await call(admin, 'cli-admin', { id: 'd1', op: 'delete', args: { kind: 'deployment', name: 'via-mqtt' } });
    expect(del).toMatchObject({ ok: true });
    expect((await t.api('GET', '/api/v1/deployments/via-mqtt')).status).toBe(404);
  });

  it("autoscale sets spec.autoscale, with the web API's validation errors", async () => {
    const withRequests = manifest
      .replace('metadata: { name: via-mqtt }', 'metadata: { name: as-mqtt }')
      .replace('command: [sleep, "3600"]', 'command: [sleep, "3600"], resources: { requests: { cpu: 100m } }');
    expect(await call(admin, 'cli-admin', { id: 'a0', op: 'apply', args: { manifests: withRequests } })).toMatchObject({ ok: true });
    const set = await call(admin, 'cli-admin', { id: 'a1', op: 'autoscale', args: { name: 'as-mqtt', maxReplicas: 4, cpuPercent: 60 } });
    expect(set).toMatchObject({ ok: true, result: { spec: { autoscale: { minReplicas: 1, maxReplicas: 4, targetCPUUtilizationPercentage: 60 } } } });
    const bad = { name: 'as-mqtt', minReplicas: 5 };
    const reply = await call(admin, 'cli-admin', { id: 'a2', op: 'autoscale', args: bad });
    const web = await t.api('POST', '/api/v1/deployments/as-mqtt/autoscale', { minReplicas: 5 });
    expect(web.status).toBe(400);
    expect(reply).toMatchObject({ ok: false, error: web.body });
    expect(JSON.stringify(web.body)).toContain('spec.autoscale.minReplicas');
    const off = await call(admin, 'cli-admin', { id: 'a3', op: 'autoscale', args: { name: 'as-mqtt', off: true } });
    expect(off.ok && (off.result as { spec: { autoscale?: unknown } }).spec.autoscale).toBeUndefined();
    expect(await call(admin, 'cli-admin', { id: 'a4', op: 'delete', args: { kind: 'deployment', name: 'as-mqtt' } })).toMatchObject({ ok: true });
  });

  it('gives the web API error for a bad manifest, and stores nothing', async () => {
    const bad = manifest.replace('replicas: 2', 'replicas: -1');
    const reply = await call(admin, 'cli-admin', { id: 'bad1', op: 'apply', args: { manifests: bad } });
    expect(reply.ok).toBe(false);
    if (reply.ok) return;
    const web = await t.api('POST', '/api/v1/apply', bad);
    expect(reply.error).toEqual(web.body);
    expect(reply.error.code).toBe('ERR_VALIDATION');
    expect(reply.error.details?.issues?.[0]?.path).toBe('spec.replicas');
    expect((await t.api('GET', '/api/v1/deployments/via-mqtt')).status).toBe(404);
  });

  it('answers malformed payloads with an error reply and keeps running', async () => {
    const notJson = await call(admin, 'cli-admin', '{{{ nope');
    expect(notJson).toMatchObject({ ok: false, error: { code: 'ERR_VALIDATION' } });
    const noOp = await call(admin, 'cli-admin', { id: 'n1', op: 'explode', args: {} });
    expect(noOp).toMatchObject({ id: 'n1', ok: false, error: { code: 'ERR_VALIDATION' } });
    const badArgs = await call(admin, 'cli-admin', { id: 'n2', op: 'scale', args: { name: 'x', replicas: 'many' } });
    expect(badArgs).toMatchObject({ ok: false, error: { code: 'ERR_VALIDATION' } });
    expect((await t.api('GET', '/healthz')).status).toBe(200);
  });

  it('checks the role of the connecting token', async () => {
    const v = await t.api('POST', '/api/v1/tokens', { role: 'viewer', name: 'mqtt-viewer' });
    const viewer = await connect(t, 'cli-viewer', (v.body as { token: string }).token);
    try {
      const denied = await call(viewer, 'cli-viewer', { id: 'v1', op: 'apply', args: { manifests: manifest } });
      expect(denied).toMatchObject({ ok: false, error: { code: 'ERR_FORBIDDEN' } });
      const listed = await call(viewer, 'cli-viewer', { id: 'v2', op: 'get', args: { kind: 'deployments' } });
      expect(listed).toMatchObject({ ok: true, result: { items: [] } });
    } finally {
      await viewer.endAsync();
    }
  });
});

describe('orchard mqtt (the shipped MQTT command client)', () => {
  let t: TestHub;
  const dir = mkdtempSync(join(tmpdir(), 'orchard-mqtt-cli-'));
  let caFile = '';
  beforeAll(async () => {
    t = await startTestHub();
    caFile = join(dir, 'ca.crt');
    writeFileSync(caFile, t.hub.pki?.caPem ?? '');
  });
  afterAll(async () => {
    await t.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = async (argv: string[], env: Record<string, string> = {}) => {
    const b = bufferIo({ env: { ORCHARD_SERVER: t.hub.apiUrl, ORCHARD_TOKEN: t.adminToken, ORCHARD_CONFIG: join(dir, 'none'), ...env }, homeDir: dir });
    const code = await runCli(['mqtt', ...argv, '--ca', caFile], b.io);
    return { code, stdout: b.stdout(), stderr: b.stderr() };
  };

  it('applies, scales and reads over MQTT, trying the hubs in order (a closed port first)', async () => {
    const closed = `mqtts://127.0.0.1:${await freePort()}`;
    const servers = `${closed},${t.hub.mqttUrl}`;
    const applied = await cli(['apply', JSON.stringify({ manifests: manifest }), '--mqtt-server', servers]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    expect(JSON.parse(applied.stdout)).toMatchObject({ results: [{ kind: 'Deployment', name: 'via-mqtt', action: 'created' }] });
    const scaled = await cli(['scale', '{"name":"via-mqtt","replicas":1}'], { ORCHARD_MQTT_SERVER: servers });
    expect(scaled.code).toBe(0);
    const got = await cli(['get', '{"kind":"deployments","name":"via-mqtt"}', '--mqtt-server', servers]);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ kind: 'Deployment', spec: { replicas: 1 } });
    expect(((await t.api('GET', '/api/v1/deployments/via-mqtt')).body as { spec: { replicas: number } }).spec.replicas).toBe(1);
  });

  it("prints the hub's own error with its field path, and refuses bad input before connecting", async () => {
    const bad = await cli(['scale', '{"name":"via-mqtt","replicas":-1}', '--mqtt-server', t.hub.mqttUrl]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/replicas: must be 0 or more/);
    const op = await cli(['frobnicate', '--mqtt-server', t.hub.mqttUrl]);
    expect(op.code).toBe(2);
    expect(op.stderr).toMatch(/unknown OP "frobnicate"/);
    const none = await cli(['get', '{"kind":"pods"}']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--mqtt-server/);
    const json = await cli(['get', '{kind:', '--mqtt-server', t.hub.mqttUrl]);
    expect(json.code).toBe(2);
    expect(json.stderr).toMatch(/ARGS-JSON is not JSON/);
    const nohub = await cli(['get', '{"kind":"pods"}', '--mqtt-server', `mqtts://127.0.0.1:${await freePort()}`, '--timeout', '2s']);
    expect(nohub.code).toBe(1);
    expect(nohub.stderr).toMatch(/no hub answered over MQTT/);
  });

  it('refuses a token the hub does not know, naming it, without trying further', async () => {
    const r = await cli(['get', '{"kind":"pods"}', '--mqtt-server', t.hub.mqttUrl], { ORCHARD_TOKEN: 'orc_' + '0'.repeat(12) + '.' + 'x'.repeat(32) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refused the token/);
  });
});
