import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { DesiredSetMessage, NodeStatusMessage } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { DeploymentController } from '../controllers/deployment-controller.js';
import { DesiredPublisher } from '../controllers/desired-publisher.js';
import { NodeController } from '../controllers/node-controller.js';
import { SchedulingController } from '../controllers/scheduling-controller.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { SecretKeyring } from '../secrets/keyring.js';
import { AesGcmSecretCodec, type SecretCodec } from '../secrets/secret-codec.js';
import { MemoryStore } from '../store/memory-store.js';
import { addPullSecrets, referencesPullSecret } from './pull-secrets.js';
import { mockNodeStatus } from '../controllers/test-fixtures.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const dir = mkdtempSync(join(tmpdir(), 'orchard-pull-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('addPullSecrets', () => {
  it('puts the (decrypted) Secrets named in imagePullSecrets into the desired set and versions them', () => {
    const store = new MemoryStore();
    store.create({
      apiVersion: 'orchard/v1',
      kind: 'Secret',
      metadata: { name: 'regcred', labels: {}, annotations: { 'orchard.dev/data-version': 'v7' } },
      type: 'Opaque',
      data: { username: 'sealed:me', password: 'sealed:pw' },
    });
    const codec: SecretCodec = {
      sealData: (_n, d) => d,
      openData: (_n, d) => Object.fromEntries(Object.entries(d).map(([k, v]) => [k, b64(v.replace(/^sealed:/, ''))])),
      keyIdOf: () => undefined,
      activeKeyId: 'k1',
    };
    const into = { secrets: {}, version: {} } as { secrets: Record<string, { data: Record<string, string> }>; version: Record<string, string> };
    addPullSecrets(store, [{ imagePullSecrets: [{ name: 'regcred' }, { name: 'missing' }] }, { imagePullSecrets: [] }], codec, into);
    expect(into.secrets).toEqual({ regcred: { data: { username: b64('me'), password: b64('pw') } } });
    expect(into.version).toEqual({ 'pull/regcred': 'v7', 'pull/missing': 'missing' });
  });

  it('referencesPullSecret looks only at imagePullSecrets', () => {
    expect(referencesPullSecret({ imagePullSecrets: [{ name: 'a' }, { name: 'regcred' }] }, 'regcred')).toBe(true);
    expect(referencesPullSecret({ imagePullSecrets: [{ name: 'a' }] }, 'regcred')).toBe(false);
    expect(referencesPullSecret({ imagePullSecrets: [] }, 'regcred')).toBe(false);
  });
});

const status = (node: string): NodeStatusMessage => mockNodeStatus(node, { addresses: [] });

const regcred = (password: string): string => `apiVersion: orchard/v1
kind: Secret
metadata: { name: regcred }
stringData: { username: me, password: ${password}, server: "127.0.0.1:5000" }
`;

const app = (name: string, node: string, pullSecret: boolean): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
      nodeSelector: { "orchard.dev/hostname": ${node} }
      containers: [{ name: c, image: "127.0.0.1:5000/app:v1" }]
${pullSecret ? '      imagePullSecrets: [{ name: regcred }]\n' : ''}`;

describe('a changed registry login reaches the nodes that pull with it', () => {
  it('re-publishes the desired set of nodes whose pods name the Secret in imagePullSecrets, without replacing any pod', async () => {
    const store = new MemoryStore();
    const now = (): Date => new Date();
    const secrets = new AesGcmSecretCodec(SecretKeyring.open(join(dir, 'keys')));
    const sent: Array<{ topic: string; set: DesiredSetMessage }> = [];
    const publisher: Publisher = {
      publish: async (topic, payload) => void (payload.length > 0 && sent.push({ topic, set: JSON.parse(payload.toString()) as DesiredSetMessage })),
    };
    const ops = new Operations({ store, log: silentLogger, now, secrets });
    const ctrl = [
      new DeploymentController({ store, log: silentLogger, now }),
      new SchedulingController({ store, log: silentLogger, now }),
      new DesiredPublisher({ store, publisher, log: silentLogger, now, secrets }),
    ] as const;
    ctrl.forEach((c) => c.start());
    const nodes = new NodeController({ store, log: silentLogger, now });
    for (const n of ['a', 'b']) nodes.handle(topics.nodeStatus(n), Buffer.from(JSON.stringify(status(n))));
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 4; i++) for (const c of ctrl) await c.queue.idle();
    };
    const last = (node: string): DesiredSetMessage | undefined => sent.filter((s) => s.topic === topics.nodeDesired(node)).at(-1)?.set;
    const count = (node: string): number => sent.filter((s) => s.topic === topics.nodeDesired(node)).length;

    ops.apply(regcred('pw-1'));
    ops.apply(app('private', 'a', true) + '---\n' + app('public', 'b', false));
    await settle();
    expect(last('a')?.secrets?.['regcred']?.data['password']).toBe(b64('pw-1'));
    expect(last('b')?.secrets).toBeUndefined();
    const pods = store
      .list('Pod')
      .map((p) => p.metadata.uid)
      .sort();
    const revision = store.get('Deployment', 'private')?.status.updateRevision;
    const sentToB = count('b');

    ops.apply(regcred('pw-2'));
    await settle();
    expect(last('a')?.secrets?.['regcred']?.data['password']).toBe(b64('pw-2'));
    expect(last('a')?.pods.map((p) => p.deployment)).toEqual(['private']);
    // Not a new revision: the same pods keep running (a registry password is not part of the template).
    expect(
      store
        .list('Pod')
        .map((p) => p.metadata.uid)
        .sort(),
    ).toEqual(pods);
    expect(store.get('Deployment', 'private')?.status.updateRevision).toBe(revision);
    // A node whose pods do not pull with it hears nothing.
    expect(count('b')).toBe(sentToB);
    ctrl.forEach((c) => c.stop());
  });
});

describe('a registry login must name its server (issue 13 item 11)', () => {
  const noServer = `apiVersion: orchard/v1
kind: Secret
metadata: { name: regcred }
stringData: { username: me, password: pw }
`;
  const setup = () => {
    const store = new MemoryStore();
    const ops = new Operations({
      store,
      log: silentLogger,
      now: () => new Date(),
      secrets: new AesGcmSecretCodec(SecretKeyring.open(join(dir, 'keys-apply'))),
    });
    const fail = (yaml: string): { code: string; issues: Array<{ path: string; message: string }> } => {
      try {
        ops.apply(yaml);
      } catch (e) {
        const err = e as { code: string; details: { issues: Array<{ path: string; message: string }> } };
        return { code: err.code, issues: err.details.issues };
      }
      throw new Error('apply succeeded');
    };
    return { store, ops, fail };
  };

  it('refuses a Deployment naming a stored Secret without server, naming the field; nothing is written', () => {
    const { store, ops, fail } = setup();
    ops.apply(noServer); // not (yet) a registry login: fine on its own
    const r = fail(app('web', 'n1', true));
    expect(r.code).toBe('ERR_VALIDATION');
    expect(r.issues).toEqual([
      { path: 'spec.template.spec.imagePullSecrets[0].name', message: expect.stringMatching(/Secret "regcred" .*"server".*required/) },
    ]);
    expect(store.get('Deployment', 'web')).toBeUndefined();
  });

  it('refuses both in one apply (documents[i] path), and a Secret losing its server while a Deployment uses it', () => {
    const { store, ops, fail } = setup();
    const both = fail(`${noServer}---\n${app('web', 'n1', true)}`);
    expect(both.issues.map((i) => i.path)).toEqual(['documents[1].spec.template.spec.imagePullSecrets[0].name']);
    expect(store.get('Secret', 'regcred')).toBeUndefined();

    ops.apply(regcred('pw'));
    ops.apply(app('web', 'n1', true));
    const later = fail(noServer);
    expect(later.issues).toEqual([{ path: 'data.server', message: expect.stringMatching(/required.*Deployment "web"/) }]);
    const blank = fail(noServer.replace('password: pw', 'password: pw, server: " "'));
    expect(blank.issues[0]?.path).toBe('data.server');
  });

  it('accepts a login with a server in either order', () => {
    const { store, ops } = setup();
    ops.apply(`${regcred('pw')}---\n${app('web', 'n1', true)}`);
    expect(store.get('Deployment', 'web')).toBeDefined();
    ops.apply(app('web2', 'n1', true));
    expect(store.get('Deployment', 'web2')).toBeDefined();
  });
});
