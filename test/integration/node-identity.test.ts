import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { EngineOnlyProbe } from '../../agent/reporter.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import { decodeMessage, DesiredSetMessageSchema, type DesiredSetMessage } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

/**
 * Issue 13 items 2 and 3, attacked the way a device holding a join token would: a real hub (TLS
 * broker, SQLite, HTTPS API), joins over HTTP, real mqtt.js clients and real Agents over MQTT
 * (MemoryRuntime engine). Each test uses its own node names and workloads.
 */
describe('node identity: enrolment, labels and capacity come from the hub, not the node', () => {
  let t: TestHub;
  let dataRoot = '';
  const agents: Agent[] = [];

  beforeAll(async () => {
    t = await startTestHub({ rateLimit: { maxFailures: 1000 } });
    dataRoot = mkdtempSync(join(tmpdir(), 'orchard-node-id-'));
  });
  afterAll(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    await t.cleanup();
    rmSync(dataRoot, { recursive: true, force: true });
  });

  const joinToken = async (body: object = {}): Promise<string> => {
    const r = await t.api('POST', '/api/v1/tokens', { type: 'join', ...body });
    expect(r.status, r.text).toBe(200);
    return (r.body as { token: string }).token;
  };
  const joinAs = (token: string, node: string, labels: Record<string, string> = {}) => t.api('POST', '/api/v1/join', { token, node, labels });
  const apply = async (yaml: string): Promise<void> => {
    const r = await t.api('POST', '/api/v1/apply', yaml);
    expect(r.status, r.text).toBe(200);
  };

  /** A real agent with its credential, reporting `labels` (its --labels) and `memTotal`. */
  async function startAgent(node: string, credential: string, labels: Record<string, string> = {}, memTotal?: number, waitReady = true): Promise<Agent> {
    const runtime = new MemoryRuntime({ info: memTotal !== undefined ? { memTotal } : {} });
    const agent = new Agent({
      node,
      labels,
      dataDir: join(dataRoot, node),
      runtime,
      probe: new EngineOnlyProbe(runtime),
      link: { url: t.hub.mqttUrl, username: node, password: credential, ca: t.hub.pki!.caPem },
      usageIntervalMs: 500,
      resyncMs: 1000,
    });
    agents.push(agent);
    await agent.start();
    if (waitReady)
      await waitFor(
        `node ${node} Ready`,
        () => t.hub.store.get('Node', node)?.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True'),
        15_000,
        50,
      );
    return agent;
  }

  /**
   * What an MQTT client with `node`'s name and `password` reads on that node's desired topic
   * (the retained set: pods and their Secrets): 'refused' when the broker will not let it in.
   */
  async function readDesired(node: string, password: string, waitMs = 1500): Promise<DesiredSetMessage | 'refused' | undefined> {
    const c = mqtt.connect(t.hub.mqttUrl, { clientId: node, username: node, password, ca: t.hub.pki?.caPem, reconnectPeriod: 0, connectTimeout: 5_000 });
    try {
      const ok = await new Promise<boolean>((resolve) => {
        c.once('connect', () => resolve(true));
        c.once('error', () => resolve(false));
        c.once('close', () => resolve(false));
      });
      if (!ok) return 'refused';
      const got = new Promise<DesiredSetMessage | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), waitMs);
        c.on('message', (_topic, payload) => {
          const r = decodeMessage(DesiredSetMessageSchema, payload);
          if (!r.ok) return;
          clearTimeout(timer);
          resolve(r.value);
        });
      });
      await c.subscribeAsync(topics.nodeDesired(node), { qos: 1 });
      return await got;
    } finally {
      c.end(true);
    }
  }

  const secretApp = (name: string, selector: string, secretValue: string, extra = ''): string => `apiVersion: orchard/v1
kind: Secret
metadata: { name: ${name}-creds }
stringData: { password: ${secretValue} }
---
apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
      nodeSelector: { ${selector} }
      containers:
        - name: c
          image: orchard-test/busybox:1
          command: [sleep, "3600"]
${extra}          env: [{ name: PASSWORD, valueFrom: { secretKeyRef: { name: ${name}-creds, key: password } } }]
`;

  describe('item 2: a join token cannot take over an enrolled node name', () => {
    it('refuses a second join of pi-7 with another valid token: the attacker gets no credential and no desired set, the real node keeps working', async () => {
      const first = await joinAs(await joinToken(), 'pi-7');
      expect(first.status, first.text).toBe(200);
      const credential = (first.body as { credential: string }).credential;
      const real = await startAgent('pi-7', credential);
      await apply(secretApp('pi7-app', '"orchard.dev/hostname": pi-7', 'pi7-secret'));
      await waitFor('pi-7 runs its pod', () => real.observed.some((p) => p.phase === 'Running'), 15_000, 50);

      // The attack: any valid join token, the enrolled node's name.
      const attack = await joinAs(await joinToken({ uses: 5 }), 'pi-7');
      expect(attack.status, attack.text).toBe(409);
      expect(attack.body).toMatchObject({
        code: 'ERR_NODE_EXISTS',
        message:
          'node pi-7 is already enrolled; run `orchard node delete pi-7` on the hub, or create a join token with `orchard token create --replace-node pi-7`',
      });
      const stolen = (attack.body as { credential?: string }).credential;
      expect(stolen).toBeUndefined();
      // Whatever the attacker tries as pi-7's password, it reads nothing.
      expect(await readDesired('pi-7', stolen ?? 'x'.repeat(43))).toBe('refused');

      // The real node's credential still works and it keeps receiving its desired set.
      expect(t.hub.auth.authenticateNode('pi-7', credential)).toBe(true);
      await apply(secretApp('pi7-app2', '"orchard.dev/hostname": pi-7', 'pi7-secret'));
      await waitFor('pi-7 got the second pod too', () => real.observed.filter((p) => p.phase === 'Running').length === 2, 15_000, 50);
    });

    it('a --replace-node token re-enrols exactly that name: another name is refused, the old credential and session are cut off', async () => {
      const first = await joinAs(await joinToken(), 'pi-r');
      const oldCredential = (first.body as { credential: string }).credential;
      const old = await startAgent('pi-r', oldCredential);
      await apply(secretApp('pir-app', '"orchard.dev/hostname": pi-r', 'pir-secret'));
      await waitFor('pi-r runs its pod', () => old.observed.some((p) => p.phase === 'Running'), 15_000, 50);

      const replace = await joinToken({ replaceNode: 'pi-r' });
      const elsewhere = await joinAs(replace, 'pi-other');
      expect(elsewhere.status).toBe(403);
      expect(elsewhere.body).toMatchObject({ code: 'ERR_FORBIDDEN' });
      expect(t.hub.auth.hasNode('pi-other')).toBe(false);

      const again = await joinAs(replace, 'pi-r');
      expect(again.status, again.text).toBe(200);
      const newCredential = (again.body as { credential: string }).credential;
      // The session that used the old credential is closed, and its reconnects are refused.
      await waitFor('old session closed', () => !(t.hub.broker.aedes as unknown as { clients: Record<string, unknown> }).clients['pi-r'], 10_000, 50);
      await old.stop();
      expect(await readDesired('pi-r', oldCredential)).toBe('refused');
      const desired = await readDesired('pi-r', newCredential);
      expect(desired !== 'refused' && desired?.secrets?.['pir-app-creds']).toBeTruthy();
      // One use: the replacement token is spent.
      expect((await joinAs(replace, 'pi-r')).status).toBe(401);
    });

    it('of two simultaneous joins of one new name, exactly one succeeds', async () => {
      const tokens = [await joinToken(), await joinToken()];
      const results = await Promise.all(tokens.map((tk) => joinAs(tk, 'pi-race')));
      const [a, b] = results as [(typeof results)[0], (typeof results)[0]];
      expect([a.status, b.status].sort()).toEqual([200, 409]);
      const winner = (a.status === 200 ? a : b).body as { credential: string };
      expect(t.hub.auth.authenticateNode('pi-race', winner.credential)).toBe(true);
    });
  });

  describe('item 3: labels set by the join token or an admin are authoritative', () => {
    it('a node joined with a site=guest token that claims site=barn gets no site=barn pod and none of its Secrets', async () => {
      const barn = await joinAs(await joinToken({ labels: { site: 'barn' } }), 'pi-barn');
      // (It reports site=barn too, as agents did before: so the test also places a pod there on old code.)
      await startAgent('pi-barn', (barn.body as { credential: string }).credential, { site: 'barn' });
      // The attack: a guest device says site=barn in its join request and in every status report,
      // and tries the hub's own label space and a foreign prefix too.
      const guest = await joinAs(await joinToken({ labels: { site: 'guest' } }), 'pi-guest', { site: 'barn' });
      expect(guest.status, guest.text).toBe(200);
      expect((guest.body as { labels: unknown }).labels).toEqual({ site: 'guest' });
      const guestCredential = (guest.body as { credential: string }).credential;
      const intruder = await startAgent('pi-guest', guestCredential, {
        site: 'barn',
        zone: 'barn',
        'orchard.dev/hostname': 'pi-barn',
        'example.com/site': 'barn',
      });

      await apply(`apiVersion: orchard/v1
kind: Secret
metadata: { name: barn-creds }
stringData: { password: barn-only }
---
apiVersion: orchard/v1
kind: Deployment
metadata: { name: barn-agent }
spec:
  mode: global
  template:
    spec:
      nodeSelector: { site: barn }
      containers:
        - name: c
          image: orchard-test/busybox:1
          command: [sleep, "3600"]
          env: [{ name: PASSWORD, valueFrom: { secretKeyRef: { name: barn-creds, key: password } } }]
`);
      await waitFor(
        'the barn pod runs on pi-barn',
        () => t.hub.store.list('Pod', { nodeName: 'pi-barn' }).some((p) => p.status.phase === 'Running'),
        15_000,
        50,
      );
      await t.hub.settle();
      const guestNode = t.hub.store.get('Node', 'pi-guest')!;
      expect(t.hub.store.list('Pod', { nodeName: 'pi-guest' })).toEqual([]);
      expect(guestNode.metadata.labels).toEqual({
        site: 'guest',
        'node.orchard.dev/site': 'barn',
        'node.orchard.dev/zone': 'barn',
        'orchard.dev/arch': 'amd64',
        'orchard.dev/hostname': 'pi-guest',
      });
      expect(t.hub.store.list('Pod', { nodeName: 'pi-guest' })).toEqual([]);
      expect(intruder.observed).toEqual([]);
      await intruder.stop();
      const desired = await readDesired('pi-guest', guestCredential);
      expect(desired === 'refused' || desired === undefined ? [] : Object.keys(desired.secrets ?? {})).not.toContain('barn-creds');
      expect(desired === 'refused' || desired === undefined ? [] : desired.pods).toEqual([]);
    });

    it('an admin label stands against the node; the node still reports its own facts under node.orchard.dev/', async () => {
      const r = await joinAs(await joinToken(), 'pi-admin');
      const cred = (r.body as { credential: string }).credential;
      await startAgent('pi-admin', cred, { tier: 'gold' });
      expect((await t.api('POST', '/api/v1/nodes/pi-admin/labels', { set: { tier: 'bronze' } })).status).toBe(200);
      await waitFor('admin label', () => t.hub.store.get('Node', 'pi-admin')!.metadata.labels['tier'] === 'bronze', 5_000, 50);
      expect(t.hub.store.get('Node', 'pi-admin')!.metadata.labels).toMatchObject({ tier: 'bronze', 'node.orchard.dev/tier': 'gold' });
    });
  });

  describe('item 3: node-reported capacity is bounded, and sharp changes are flagged', () => {
    const GiB = 1024 ** 3;

    it('a node claiming 1 PiB of memory does not attract a pod that fits nowhere else', async () => {
      const honest = await joinAs(await joinToken(), 'cap-honest');
      await startAgent('cap-honest', (honest.body as { credential: string }).credential, {}, 4 * GiB);
      const liar = await joinAs(await joinToken(), 'cap-liar');
      const rejectedBefore = t.hub.controllers.nodes.rejected;
      const agent = await startAgent('cap-liar', (liar.body as { credential: string }).credential, {}, 1024 ** 5, false);
      // Refused (fixed hub) or registered (a hub without the limits): either way the report was handled.
      await waitFor(
        "the hub handled the liar's report",
        () => t.hub.controllers.nodes.rejected > rejectedBefore || t.hub.store.get('Node', 'cap-liar') !== undefined,
        10_000,
        50,
      );
      await apply(`apiVersion: orchard/v1
kind: Deployment
metadata: { name: huge }
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: c
          image: orchard-test/busybox:1
          command: [sleep, "3600"]
          resources: { requests: { memory: 64Gi } }
`);
      await waitFor('the huge pod exists', () => t.hub.store.list('Pod', { ownerName: 'huge' }).length === 1, 10_000, 50);
      await new Promise((r) => setTimeout(r, 1000)); // the liar keeps reporting meanwhile
      await t.hub.settle();
      const pod = t.hub.store.list('Pod', { ownerName: 'huge' })[0]!;
      expect(pod.spec.nodeName).toBeUndefined();
      expect(t.hub.store.get('Node', 'cap-liar')).toBeUndefined(); // a new node's absurd report registers nothing
      expect(pod.status.phase).toBe('Pending');
      const liarNode = t.hub.store.get('Node', 'cap-liar');
      expect(liarNode?.status.capacity?.memoryBytes ?? 0).toBeLessThanOrEqual(4 * 1024 ** 4);
      expect(agent.observed).toEqual([]);
      expect((await t.api('DELETE', '/api/v1/deployments/huge')).status).toBe(200);
    });

    it('a sharp capacity change between two reports shows a CapacityChanged warning and event', async () => {
      const r = await joinAs(await joinToken(), 'cap-grow');
      const credential = (r.body as { credential: string }).credential;
      const first = await startAgent('cap-grow', credential, {}, 4 * GiB);
      expect(t.hub.store.get('Node', 'cap-grow')!.status.conditions.some((c) => c.type === 'CapacityChanged')).toBe(false);
      await first.stop();
      // The same node comes back claiming four times the memory.
      await startAgent('cap-grow', credential, {}, 16 * GiB, false);
      await waitFor('capacity updated', () => t.hub.store.get('Node', 'cap-grow')!.status.capacity?.memoryBytes === 16 * GiB, 10_000, 50);
      const node = (await t.api('GET', '/api/v1/nodes/cap-grow')).body as {
        status: { conditions: Array<{ type: string; status: string; reason?: string; message?: string }> };
      };
      expect(node.status.conditions.find((c) => c.type === 'CapacityChanged')).toMatchObject({
        status: 'True',
        reason: 'SharpChange',
        message: expect.stringContaining('memory 4Gi → 16Gi'),
      });
      const events = (await t.api('GET', '/api/v1/events?involvedObject=Node/cap-grow')).body as
        { items?: Array<{ reason: string; type: string }> } | Array<{ reason: string; type: string }>;
      const list = Array.isArray(events) ? events : (events.items ?? []);
      expect(list.some((e) => e.reason === 'CapacityChanged' && e.type === 'Warning')).toBe(true);
    });
  });

  describe('a deleted node does not come back as a ghost', () => {
    /** A valid status report of `node`, as its agent publishes it. */
    const statusOf = (node: string): Buffer =>
      Buffer.from(
        JSON.stringify({
          node,
          labels: {},
          bootId: 'b1',
          at: new Date().toISOString(),
          info: {
            arch: 'amd64',
            os: 'linux',
            cpu: { cores: 2 },
            memoryBytes: 2 * 1024 ** 3,
            engine: { name: 'docker', version: '20.10' },
            agentVersion: '0.1.0',
          },
        }),
      );

    it('a status queued before `orchard node delete` and ingested after it creates no Node; the device re-joins', async () => {
      const r = await joinAs(await joinToken(), 'ghost-7');
      expect(r.status, r.text).toBe(200);
      const agent = await startAgent('ghost-7', (r.body as { credential: string }).credential);

      // The attack (a race the hub loses under load): a status of ghost-7 is waiting in the
      // NodeController's batch (this is the broker subscription's own call) when the admin deletes
      // the node (what DELETE /api/v1/nodes/ghost-7 runs), and the batch is ingested after it.
      t.hub.controllers.nodes.handle(topics.nodeStatus('ghost-7'), statusOf('ghost-7'));
      await t.hub.deleteNode('ghost-7');
      await t.hub.settle();
      expect(t.hub.store.get('Node', 'ghost-7')).toBeUndefined();
      // A straggler already past the broker's checks when the credential was revoked: no Node either.
      t.hub.controllers.nodes.handle(topics.nodeStatus('ghost-7'), statusOf('ghost-7'));
      await t.hub.settle();
      expect(t.hub.store.get('Node', 'ghost-7')).toBeUndefined();
      expect((await t.api('GET', '/api/v1/nodes/ghost-7')).status).toBe(404);
      await agent.stop();

      // No ghost blocks the real device's re-join (it would get ERR_NODE_EXISTS).
      const again = await joinAs(await joinToken(), 'ghost-7');
      expect(again.status, again.text).toBe(200);
      await startAgent('ghost-7', (again.body as { credential: string }).credential);
    });
  });
});
