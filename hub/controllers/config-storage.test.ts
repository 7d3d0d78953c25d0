import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { DesiredSetMessage, NodeStatusMessage } from '../../protocol/messages.js';
import { topics } from '../../protocol/topics.js';
import type { Publisher } from '../broker/broker.js';
import { silentLogger } from '../log.js';
import { Operations } from '../operations.js';
import { SecretKeyring } from '../secrets/keyring.js';
import { AesGcmSecretCodec } from '../secrets/secret-codec.js';
import { MemoryStore } from '../store/memory-store.js';
import { DeploymentController } from './deployment-controller.js';
import { DesiredPublisher } from './desired-publisher.js';
import { NodeController } from './node-controller.js';
import { SchedulingController } from './scheduling-controller.js';
import { ingestObservedVolumes } from './volume-records.js';
import { mockNodeStatus } from './test-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'orchard-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const status = (node: string): NodeStatusMessage => mockNodeStatus(node, { addresses: [] });

function world() {
  const store = new MemoryStore();
  const now = (): Date => new Date();
  const secrets = new AesGcmSecretCodec(SecretKeyring.open(join(dir, String(Math.random()).slice(2))));
  const sets = new Map<string, DesiredSetMessage>();
  const publisher: Publisher = {
    publish: async (topic, payload) => {
      if (payload.length > 0) sets.set(topic, JSON.parse(payload.toString()) as DesiredSetMessage);
    },
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
  return { store, ops, sets, settle, stop: () => ctrl.forEach((c) => c.stop()) };
}

const app = (name: string, node: string, extra = ''): string => `apiVersion: orchard/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  template:
    spec:
      nodeSelector: { "orchard.dev/hostname": ${node} }
      containers:
        - name: c
          image: img
          envFrom: [{ configMapRef: { name: cfg-${name} } }]
          env: [{ name: PASSWORD, valueFrom: { secretKeyRef: { name: secret-${name}, key: password } } }]
${extra}`;

const configs = (name: string, level: string, password: string): string => `apiVersion: orchard/v1
kind: ConfigMap
metadata: { name: cfg-${name} }
data: { LEVEL: ${level} }
---
apiVersion: orchard/v1
kind: Secret
metadata: { name: secret-${name} }
stringData: { password: ${password} }
`;

describe('config delivery and rollout (hub side)', () => {
  it("gives each node only its own pods' configs, and rolls a deployment when its ConfigMap changes", async () => {
    const w = world();
    w.ops.apply(configs('one', 'debug', 'pw-one') + '---\n' + configs('two', 'info', 'pw-two'));
    w.ops.apply(app('one', 'a') + '---\n' + app('two', 'b'));
    await w.settle();
    const setA = w.sets.get(topics.nodeDesired('a'));
    const setB = w.sets.get(topics.nodeDesired('b'));
    expect(setA?.pods.map((p) => p.deployment)).toEqual(['one']);
    expect(setA?.configMaps).toEqual({ 'cfg-one': { data: { LEVEL: 'debug' }, binaryData: {} } });
    expect(Buffer.from(setA?.secrets?.['secret-one']?.data['password'] ?? '', 'base64').toString()).toBe('pw-one');
    expect(Object.keys(setB?.secrets ?? {})).toEqual(['secret-two']);
    expect(JSON.stringify(setB)).not.toContain(Buffer.from('pw-one').toString('base64'));

    const before = w.store.list('Pod', { ownerName: 'one' }).map((p) => p.metadata.uid);
    const otherBefore = w.store.list('Pod', { ownerName: 'two' }).map((p) => p.metadata.uid);
    w.ops.apply(configs('one', 'trace', 'pw-one'));
    await w.settle();
    // A new revision: a pod with a new template hash (the old one may stay until the new is ready, per strategy).
    const after = w.store.list('Pod', { ownerName: 'one' });
    const fresh = after.filter((p) => !before.includes(p.metadata.uid));
    expect(fresh).toHaveLength(1);
    expect(fresh[0]?.metadata.annotations['orchard.dev/template-hash']).not.toBe(
      after.find((p) => before.includes(p.metadata.uid))?.metadata.annotations['orchard.dev/template-hash'] ?? 'gone',
    );
    expect(w.store.list('Pod', { ownerName: 'two' }).map((p) => p.metadata.uid)).toEqual(otherBefore);
    expect(w.sets.get(topics.nodeDesired('a'))?.configMaps?.['cfg-one']?.data).toEqual({ LEVEL: 'trace' });
    w.stop();
  });

  it('records where a persistent volume lives on first bind and keeps later pods there', async () => {
    const w = world();
    w.ops.apply(`apiVersion: orchard/v1
kind: Deployment
metadata: { name: db }
spec:
  replicas: 1
  template:
    spec:
      containers: [{ name: c, image: img, volumeMounts: [{ name: data, mountPath: /data }] }]
      volumes: [{ name: data, persistent: { size: 1Gi } }]
`);
    await w.settle();
    const vol = w.store.get('Volume', 'orchard-db-data');
    const pod = w.store.list('Pod', { ownerName: 'db' })[0];
    expect(vol?.spec.nodeName).toBe(pod?.spec.nodeName);
    expect(vol?.metadata.ownerName).toBe('db');
    // Replace the pod many times: it never moves.
    for (let i = 0; i < 5; i++) {
      const p = w.store.list('Pod', { ownerName: 'db' })[0];
      if (p) w.ops.delete('pods', p.metadata.name);
      await w.settle();
      expect(w.store.list('Pod', { ownerName: 'db' })[0]?.spec.nodeName).toBe(vol?.spec.nodeName);
    }
    ingestObservedVolumes(
      w.store,
      { node: vol?.spec.nodeName ?? '', generation: 1, pods: [], at: '', volumes: [{ name: 'orchard-db-data', usedBytes: 5 * 1048576 + 3, pods: ['db-x'] }] },
      new Date(),
    );
    expect(w.store.get('Volume', 'orchard-db-data')?.status).toMatchObject({ usedBytes: 5 * 1048576, pods: ['db-x'], present: true });
    w.stop();
  });
});
