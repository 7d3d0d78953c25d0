import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTokenId, type CommandReply } from '../../protocol/api.js';
import { topics, userClientId } from '../../protocol/topics.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';

const manifest = (image: string): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ro-api, annotations: { orchard.dev/change-cause: "to ${image}" } }
spec:
  replicas: 2
  template:
    spec:
      containers: [{ name: c, image: ${image} }]
`;

describe('rollout API over HTTP and MQTT commands (no agents: the hub side only)', () => {
  let t: TestHub;
  let client: MqttClient;
  let cid: string;
  beforeAll(async () => {
    t = await startTestHub();
    cid = userClientId(apiTokenId(t.adminToken) ?? '', 'ro-cli');
    client = mqtt.connect(t.hub.mqttUrl, {
      clientId: cid,
      username: 'token',
      password: t.adminToken,
      ca: t.hub.pki?.caPem,
      reconnectPeriod: 0,
      connectTimeout: 5000,
    });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    await client.subscribeAsync(topics.reply(cid), { qos: 1 });
  });
  afterAll(async () => {
    await client.endAsync();
    await t.cleanup();
  });

  const call = (body: object): Promise<CommandReply> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply within 5 s')), 5000);
      const onMessage = (_topic: string, payload: Buffer): void => {
        const reply = JSON.parse(payload.toString()) as CommandReply;
        if (reply.id !== (body as { id: string }).id) return;
        clearTimeout(timer);
        client.off('message', onMessage);
        resolve(reply);
      };
      client.on('message', onMessage);
      client.publish(topics.command(cid), JSON.stringify(body), { qos: 1 });
    });

  it('records revisions, serves history/status, and undoes, pauses and restarts over both ways in', async () => {
    expect((await t.api('POST', '/api/v1/apply', manifest('app:v1'))).status).toBe(200);
    await t.hub.settle();
    expect((await t.api('POST', '/api/v1/apply', manifest('app:v2'))).status).toBe(200);
    await t.hub.settle();
    const history = await t.api('GET', '/api/v1/deployments/ro-api/rollout/history');
    expect((history.body as { items: Array<{ revision: number; changeCause: string }> }).items.map((i) => [i.revision, i.changeCause])).toEqual([
      [1, 'to app:v1'],
      [2, 'to app:v2'],
    ]);
    const status = (await t.api('GET', '/api/v1/deployments/ro-api/rollout/status')).body as { revision: number; rollout: { phase: string }; pods: unknown[] };
    expect(status.revision).toBe(2);
    expect(status.rollout.phase).toBe('Progressing'); // no agents: nothing becomes Ready

    const undo = await call({ id: 'u1', op: 'rollout', args: { action: 'undo', name: 'ro-api' } });
    expect(undo).toMatchObject({ ok: true, result: { revision: 1, skipped: false } });
    const d = (await t.api('GET', '/api/v1/deployments/ro-api')).body as { spec: { template: { spec: { containers: Array<{ image: string }> } } } };
    expect(d.spec.template.spec.containers[0]?.image).toBe('app:v1');

    expect((await t.api('POST', '/api/v1/deployments/ro-api/rollout/pause', '{}')).body).toEqual({ name: 'ro-api', paused: true });
    expect(await call({ id: 'r1', op: 'rollout', args: { action: 'resume', name: 'ro-api' } })).toMatchObject({ ok: true, result: { paused: false } });
    expect((await t.api('POST', '/api/v1/deployments/ro-api/rollout/restart', '{}')).status).toBe(200);
    await t.hub.settle();
    const after = (await t.api('GET', '/api/v1/deployments/ro-api/rollout/history')).body as { items: Array<{ revision: number; changeCause?: string }> };
    expect(after.items.at(-1)?.changeCause).toMatch(/rollout restart/);

    // Errors: same codes both ways.
    expect((await t.api('POST', '/api/v1/deployments/ro-api/rollout/undo', { toRevision: 99 })).status).toBe(404);
    expect(await call({ id: 'e1', op: 'rollout', args: { action: 'promote', name: 'ro-api' } })).toMatchObject({
      ok: false,
      error: { code: 'ERR_VALIDATION' },
    });
    expect(await call({ id: 'e2', op: 'rollout', args: { action: 'explode', name: 'ro-api' } })).toMatchObject({
      ok: false,
      error: { code: 'ERR_VALIDATION' },
    });
    expect((await t.api('GET', '/api/v1/deployments/Bad_Name/rollout/status')).status).toBe(400);
  });
});
