import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTokenId } from '../../protocol/api.js';
import { userClientId } from '../../protocol/topics.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';

/** Revoking tokens through the admin API: immediate for HTTP, MQTT sessions and joins. */
describe('DELETE /api/v1/tokens/:id', () => {
  let t: TestHub;
  beforeAll(async () => {
    t = await startTestHub();
  });
  afterAll(async () => {
    await t.cleanup();
  });

  const connect = (name: string, password: string): Promise<MqttClient> =>
    new Promise((resolve, reject) => {
      const c = mqtt.connect(t.hub.mqttUrl, {
        clientId: userClientId(apiTokenId(password) ?? '', name),
        username: 'token',
        password,
        ca: t.hub.pki?.caPem,
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      });
      c.once('connect', () => resolve(c));
      c.once('error', (err) => {
        c.end(true);
        reject(err);
      });
    });

  it('revokes an API token: its next request is 401 and its live MQTT session is closed', async () => {
    const created = (await t.api('POST', '/api/v1/tokens', { role: 'operator', name: 'to-revoke' })).body as { token: string; id: string };
    expect((await t.api('GET', '/api/v1/nodes', undefined, created.token)).status).toBe(200);
    const session = await connect('cli-revoked', created.token);
    const closed = new Promise<void>((r) => session.once('close', () => r()));

    const r = await t.api('DELETE', `/api/v1/tokens/${created.id}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ id: created.id, kind: 'api', revoked: true, disconnected: 1, watchStreamsClosed: 0 });
    await closed;
    expect((await t.api('GET', '/api/v1/nodes', undefined, created.token)).status).toBe(401);
    await expect(connect('cli-revoked', created.token)).rejects.toMatchObject({ code: 4 });
  });

  it('revokes a join token: it can join no more nodes', async () => {
    const created = (await t.api('POST', '/api/v1/tokens', { type: 'join', uses: 5 })).body as { token: string; id: string };
    expect((await t.api('DELETE', `/api/v1/tokens/${created.id}`)).body).toMatchObject({ kind: 'join', revoked: true });
    const join = await t.api('POST', '/api/v1/join', { token: created.token, node: 'late-node' });
    expect(join.status).toBe(401);
    expect((join.body as { code: string }).code).toBe('ERR_TOKEN_INVALID');
  });

  it('answers 404 for an unknown id, 400 for a malformed one, 403 for a non-admin', async () => {
    expect((await t.api('DELETE', '/api/v1/tokens/000000000000')).status).toBe(404);
    const bad = await t.api('DELETE', '/api/v1/tokens/nope');
    expect(bad.status).toBe(400);
    expect((bad.body as { details: { issues: Array<{ path: string }> } }).details.issues[0]?.path).toBe('id');
    const op = (await t.api('POST', '/api/v1/tokens', { role: 'operator', name: 'op' })).body as { token: string; id: string };
    expect((await t.api('DELETE', `/api/v1/tokens/${op.id}`, undefined, op.token)).status).toBe(403);
  });
});
