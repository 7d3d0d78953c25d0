import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { apiTokenId, type CommandReply } from '../../protocol/api.js';
import type { MqttClient } from 'mqtt';
import { decodeMessage, ServiceIndexMessageSchema, ServiceMessageSchema, type ServiceIndexMessage, type ServiceMessage } from '../../protocol/messages.js';
import { topics, userClientId } from '../../protocol/topics.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

/**
 * The hub side of Services (issue 15) with a real hub (TLS broker, SQLite in a temp dir, HTTPS)
 * and hollow nodes: plain mqtt.js clients that log in with node credentials, report a status
 * with an advertise address and an observed set saying which of their pods are ready (what an
 * agent would send), and read the broadcast service topics as an agent would.
 */

interface HollowNode {
  name: string;
  client: MqttClient;
  /** Reports the pods bound here as Running; `ready` says which are Ready. */
  observe(ready: (pod: string) => boolean): Promise<void>;
}

/** Everything a subscriber to the service topics holds, decoded; an empty retained payload removes the entry. */
class ServiceWatcher {
  readonly services = new Map<string, ServiceMessage>();
  readonly raw = new Map<string, Buffer>();
  index: ServiceIndexMessage | undefined;
  readonly log: string[] = [];
  constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload) => {
      if (topic === topics.serviceIndex()) {
        const r = decodeMessage(ServiceIndexMessageSchema, payload);
        if (!r.ok) throw new Error(r.error);
        this.index = r.value;
        this.log.push(`index ${r.value.services.join(',')}`);
        return;
      }
      const name = topic.split('/').at(-1) ?? '';
      if (payload.length === 0) {
        this.services.delete(name);
        this.raw.delete(name);
        this.log.push(`cleared ${name}`);
        return;
      }
      const r = decodeMessage(ServiceMessageSchema, payload);
      if (!r.ok) throw new Error(r.error);
      this.services.set(name, r.value);
      this.raw.set(name, Buffer.from(payload));
      this.log.push(`service ${name}`);
    });
  }
}

describe('services on the hub (real hub, hollow nodes, real broker)', () => {
  let t: TestHub;
  const clients: MqttClient[] = [];

  async function connect(node: string, password: string): Promise<MqttClient> {
    const client = await mqtt.connectAsync(t.hub.mqttUrl, { clientId: node, username: node, password, ca: t.hub.pki!.caPem, reconnectPeriod: 0 });
    clients.push(client);
    return client;
  }

  async function hollowNode(name: string, address: string, labels: Record<string, string> = {}): Promise<HollowNode> {
    const password = t.hub.auth.issueNodeCredential(name, labels);
    const client = await connect(name, password);
    const status = {
      node: name,
      labels,
      bootId: 'b1',
      at: new Date().toISOString(),
      info: {
        arch: 'arm64',
        os: 'linux',
        cpu: { cores: 4 },
        memoryBytes: 4 * 1024 ** 3,
        engine: { name: 'docker', version: '20.10', memoryLimit: true, cpuLimit: true },
        agentVersion: '0.1.0',
        addresses: [address],
        advertiseAddress: address,
      },
    };
    await client.publishAsync(topics.nodeStatus(name), JSON.stringify(status), { qos: 1 });
    await waitFor(
      `node ${name} Ready`,
      () => t.hub.store.get('Node', name)?.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True'),
      15_000,
      20,
    );
    return {
      name,
      client,
      observe: async (ready) => {
        const pods = t.hub.store.list('Pod', { nodeName: name }).map((p) => ({
          name: p.metadata.name,
          uid: p.metadata.uid,
          ...(p.metadata.ownerName ? { deployment: p.metadata.ownerName } : {}),
          phase: 'Running',
          ready: ready(p.metadata.name),
          containers: [{ name: 'web', image: 'web:1', state: 'running', ready: ready(p.metadata.name), restartCount: 0 }],
        }));
        const msg = { node: name, generation: t.hub.store.get('Node', name)?.status.observedGeneration ?? 0, pods, at: new Date().toISOString() };
        await client.publishAsync(topics.nodeObserved(name), JSON.stringify(msg), { qos: 1 });
      },
    };
  }

  /** A node-credentialed reader of the service topics, connecting now (retained messages arrive first). */
  async function watcher(name: string): Promise<ServiceWatcher> {
    const client = await connect(name, t.hub.auth.issueNodeCredential(name, {}));
    const w = new ServiceWatcher(client);
    await client.subscribeAsync([topics.allServices(), topics.serviceIndex()], { qos: 1 });
    return w;
  }

  const apply = async (yaml: string): Promise<void> => {
    const r = await t.api('POST', '/api/v1/apply', yaml);
    expect(r.status, r.text).toBe(200);
  };

  const WEB = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 3
  template:
    metadata: { labels: { app: web } }
    spec:
      containers: [{ name: web, image: web:1, ports: [{ name: http, containerPort: 8080 }] }]
---
apiVersion: orchard/v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
  publish: [{ port: 8080 }]
`;

  beforeAll(async () => {
    t = await startTestHub();
  });
  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined);
    await t.cleanup();
  });

  it('a pod turning Ready shows in the retained service message with a larger generation; a later subscriber gets message and index', async () => {
    const n1 = await hollowNode('svc-n1', '127.0.0.11');
    const n2 = await hollowNode('svc-n2', '127.0.0.12');
    const early = await watcher('svc-early');
    await apply(WEB);
    await waitFor('3 web pods bound', () => t.hub.store.list('Pod', { ownerName: 'web' }).filter((p) => p.spec.nodeName).length === 3 || undefined, 15_000, 20);
    await n1.observe(() => false);
    await n2.observe(() => false);
    const first = await waitFor('message with 3 endpoints, none ready', () => {
      const m = early.services.get('web');
      return m?.endpoints.length === 3 && m.endpoints.every((e) => !e.ready && e.reason?.includes('not ready')) ? m : undefined;
    });
    expect(first.ports).toEqual([{ name: 'http', port: 80, protocol: 'TCP' }]);
    expect(first.publish).toEqual([{ port: 8080, servicePort: 80, protocol: 'TCP' }]);
    for (const e of first.endpoints) {
      expect(e.address).toBe(e.node === 'svc-n1' ? '127.0.0.11' : '127.0.0.12');
      expect(e.targets).toEqual([{ port: 80, protocol: 'TCP', targetPort: 8080, endpointPort: expect.any(Number) as number }]);
    }
    expect(early.index?.services).toEqual(['web']);
    expect(early.index?.peers).toMatchObject({ 'svc-n1': '127.0.0.11', 'svc-n2': '127.0.0.12' });

    // The hollow agent on n1 reports its pods Ready.
    await n1.observe(() => true);
    const second = await waitFor('n1 endpoints ready', () => {
      const m = early.services.get('web');
      return m !== undefined && m.endpoints.filter((e) => e.node === 'svc-n1').every((e) => e.ready) && m.endpoints.some((e) => e.ready) ? m : undefined;
    });
    expect(second.generation).toBeGreaterThan(first.generation);
    expect(second.ordinal).toBe(first.ordinal);

    // Bytes of one service message with 3 endpoints (deflated JSON, as on the wire).
    const raw = early.raw.get('web')!;
    const json = Buffer.from(JSON.stringify(second));
    console.log(`service message, 3 endpoints: ${raw.length} bytes on the wire (${json.length} bytes JSON):\n${json.toString()}`);
    expect(raw.length).toBeLessThan(1024);

    // A subscriber connecting later gets the retained message and index at once.
    const late = await watcher('svc-late');
    const got = await waitFor(
      'late subscriber has message and index',
      () => (late.services.get('web') && late.index ? late.services.get('web') : undefined),
      5_000,
      20,
    );
    expect(got).toEqual(early.services.get('web'));
    expect(late.index?.services).toEqual(['web']);

    // describe's data: the stored status carries endpoint ports and reasons.
    const r = await t.api('GET', '/api/v1/services/web');
    expect(r.status).toBe(200);
    const status = (r.body as { status: { ordinal: number; endpoints: unknown[] } }).status;
    expect(status.ordinal).toBe(second.ordinal);
    expect(status.endpoints).toHaveLength(3);
  }, 60_000);

  it('a node may not publish on a service topic (the broker closes it)', async () => {
    const rogue = await connect('svc-rogue', t.hub.auth.issueNodeCredential('svc-rogue', {}));
    const closed = new Promise<void>((resolve) => rogue.once('close', () => resolve()));
    rogue.publish(topics.service('web'), Buffer.from('{}'), { qos: 0, retain: true });
    await closed;
    const w = await watcher('svc-check');
    await waitFor('retained web still the hub one', () => w.services.get('web'), 5_000, 20);
  });

  it('deleting the service: index without it first, then the retained topic cleared', async () => {
    const w = await watcher('svc-del');
    await apply(`apiVersion: orchard/v1
kind: Service
metadata: { name: gone }
spec:
  selector: { app: nothing }
  ports: [{ port: 81 }]
`);
    await waitFor('gone listed', () => w.index?.services.includes('gone') && w.services.has('gone'), 10_000, 20);
    const r = await t.api('DELETE', '/api/v1/services/gone');
    expect(r.status, r.text).toBe(200);
    await waitFor('gone cleared', () => !w.services.has('gone') || undefined, 10_000, 20);
    const tail = w.log.slice(w.log.lastIndexOf('service gone') + 1);
    expect(tail.findIndex((l) => l.startsWith('index') && !l.includes('gone'))).toBeLessThan(tail.indexOf('cleared gone'));
    expect(w.index?.services).toEqual(['web']);
    const later = await watcher('svc-del-later');
    await waitFor('index for the later subscriber', () => later.index, 5_000, 20);
    expect(later.services.has('gone')).toBe(false);
  });

  it('a hub restart on the same store republishes the same ordinals and endpoint ports', async () => {
    await apply(`apiVersion: orchard/v1
kind: Service
metadata: { name: second }
spec:
  selector: { app: web }
  ports: [{ port: 82, targetPort: 8080 }]
`);
    const before = await watcher('svc-before');
    const b = await waitFor(
      'both present',
      () => (before.services.has('second') && before.services.has('web') ? new Map(before.services) : undefined),
      10_000,
      20,
    );
    await t.restart();
    // aedes kept retained messages in memory only: these come from the new hub's start-up publish.
    const after = await waitFor(
      'reconnected subscriber',
      async () => {
        const w = await watcher(`svc-after-${Date.now()}`).catch(() => undefined);
        if (!w) return undefined;
        return waitFor('both republished', () => (w.services.has('second') && w.services.has('web') && w.index ? w : undefined), 5_000, 20).catch(
          () => undefined,
        );
      },
      20_000,
      200,
    );
    for (const name of ['web', 'second']) {
      expect(after.services.get(name)?.ordinal).toBe(b.get(name)?.ordinal);
      expect(after.services.get(name)?.endpoints.map((e) => [e.pod, e.targets[0]?.endpointPort])).toEqual(
        b.get(name)?.endpoints.map((e) => [e.pod, e.targets[0]?.endpointPort]),
      );
    }
    // The pods selected by both services share their endpoint port on each node.
    const web = after.services.get('web')!;
    const second = after.services.get('second')!;
    expect(second.endpoints.map((e) => e.targets[0]?.endpointPort)).toEqual(web.endpoints.map((e) => e.targets[0]?.endpointPort));
    expect(after.index?.services).toEqual(['second', 'web']);
  }, 60_000);

  it('surfaces: list, get, watch and delete over HTTP (a viewer may read, not delete); get and expose as MQTT commands', async () => {
    const list = await t.api('GET', '/api/v1/services');
    expect((list.body as { items: Array<{ metadata: { name: string } }> }).items.map((i) => i.metadata.name)).toEqual(['second', 'web']);
    const viewer = ((await t.api('POST', '/api/v1/tokens', { role: 'viewer', name: 'svc-viewer' })).body as { token: string }).token;
    expect((await t.api('GET', '/api/v1/services/web', undefined, viewer)).status).toBe(200);
    expect((await t.api('DELETE', '/api/v1/services/web', undefined, viewer)).status).toBe(403);

    // A watch stream sees a Service being created.
    const seen = new Promise<string>((resolve, reject) => {
      const req = https.request(
        new URL('/api/v1/watch?kinds=services', t.hub.apiUrl),
        { headers: { authorization: `Bearer ${viewer}` }, ca: t.hub.pki!.caPem, agent: false },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => {
            text += c.toString();
            if (text.includes('"name":"via-mqtt"')) {
              req.destroy();
              resolve(text);
            }
          });
        },
      );
      req.on('error', (e) => (e.message.includes('socket hang up') ? undefined : reject(e)));
      req.end();
    });

    // expose as an MQTT command: the same operation as POST /api/v1/deployments/web/expose.
    const clientId = userClientId(apiTokenId(t.adminToken) ?? '', 'svc-cmd');
    const c = await mqtt.connectAsync(t.hub.mqttUrl, { clientId, username: 'token', password: t.adminToken, ca: t.hub.pki!.caPem, reconnectPeriod: 0 });
    clients.push(c);
    await c.subscribeAsync(topics.reply(clientId), { qos: 1 });
    const call = (body: object): Promise<CommandReply> =>
      new Promise((resolve) => {
        const id = (body as { id: string }).id;
        const on = (_topic: string, payload: Buffer): void => {
          const r = JSON.parse(payload.toString()) as CommandReply;
          if (r.id !== id) return;
          c.off('message', on);
          resolve(r);
        };
        c.on('message', on);
        c.publish(topics.command(clientId), JSON.stringify(body), { qos: 1 });
      });
    const exposed = await call({ id: 'x1', op: 'expose', args: { deployment: 'web', port: 8081, targetPort: 'http', name: 'via-mqtt' } });
    expect(exposed).toMatchObject({ ok: true, result: { results: [{ kind: 'Service', name: 'via-mqtt', action: 'created' }] } });
    expect(await seen).toContain('"kind":"Service"');
    const got = await call({ id: 'x2', op: 'get', args: { kind: 'svc', name: 'via-mqtt' } });
    expect(got).toMatchObject({ ok: true, result: { spec: { selector: { app: 'web' }, ports: [{ port: 8081, targetPort: 'http', protocol: 'TCP' }] } } });
    const conflict = await call({ id: 'x3', op: 'expose', args: { deployment: 'web', port: 8082, name: 'clash', publish: 8080 } });
    expect(conflict).toMatchObject({ ok: false, error: { code: 'ERR_SERVICE_PORT_CONFLICT' } });
    const http = await t.api('POST', '/api/v1/deployments/web/expose', { port: 8082, name: 'clash', publish: 8080 });
    expect(http.status).toBe(409);
    expect((http.body as { details: { issues: Array<{ path: string }> } }).details.issues[0]?.path).toBe('spec.publish[0].port');
    expect((await t.api('DELETE', '/api/v1/services/via-mqtt')).status).toBe(200);
  });
});
