import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoleSchema, type Role } from '../../protocol/api.js';
import { WorkQueue } from '../controllers/workqueue.js';
import { createLogger } from '../log.js';
import { Operations } from '../operations.js';
import { MemoryStore } from '../store/memory-store.js';
import { writeScope } from '../store/store.js';
import { buildApi, type ApiAuth } from './server.js';

/**
 * The web API's durability barrier on a remote store waits for the request's own writes (its
 * write scope), not for what controllers write after it: `orchard apply` of many deployments on
 * etcd used to wait for every pod they created and time out (fleet bench, 10,000 nodes).
 */

/** A memory store with a remote store's barrier: each committed write gets the next mark. */
class BarrierStore extends MemoryStore {
  mark = 0;
  readonly syncs: (number | undefined)[] = [];
  constructor() {
    super();
    this.watch(() => {
      this.mark++;
      const scope = writeScope.getStore();
      if (scope !== undefined) scope.last = this.mark;
    });
  }
  writeMark(): number {
    return this.mark;
  }
  sync(_timeoutMs?: number, upTo?: number): Promise<void> {
    this.syncs.push(upTo);
    return Promise.resolve();
  }
}

function auth(): ApiAuth {
  return {
    authenticate: (token) => ((RoleSchema.options as readonly string[]).includes(token) ? { name: token, role: token as Role } : undefined),
    limited: () => false,
    failed: () => undefined,
    caPem: () => undefined,
    join: () => ({ credential: 'c'.repeat(43), labels: {}, replaced: false }),
    createJoinToken: () => ({ token: 't', id: '0123456789ab' }),
    createApiToken: () => ({ token: 't', id: '0123456789ab' }),
    listTokens: () => [],
    revokeNode: () => undefined,
  };
}

const DEPLOYMENT = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 1
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: c, image: busybox:1 }] }
`;

describe("the API's write barrier on a remote store", () => {
  const store = new BarrierStore();
  const log = createLogger('hub', 'silent');
  let app: FastifyInstance;
  const controllerMarks: number[] = [];
  // A controller: on a new Deployment, a burst of 20 writes from its work queue.
  const queue = new WorkQueue(
    'burst',
    (key: string) => {
      for (let i = 0; i < 20; i++)
        store.create({ apiVersion: 'orchard/v1', kind: 'ConfigMap', metadata: { name: `${key}-${i}`, labels: {}, annotations: {} }, data: {}, binaryData: {} });
      controllerMarks.push(store.mark);
    },
    log,
  );
  store.watch((ev) => {
    if (ev.type === 'ADDED' && ev.object.kind === 'Deployment') queue.add(ev.object.metadata.name);
  });

  beforeAll(async () => {
    app = await buildApi({
      store,
      ops: new Operations({ store, log, now: () => new Date() }),
      auth: auth(),
      log,
      mqttPort: () => 8883,
      deleteNode: async () => undefined,
    });
    await app.ready();
  });
  afterAll(async () => {
    queue.stop();
    await app.close();
  });

  it("waits for the request's own writes, not for a controller's burst they started", async () => {
    const before = store.mark;
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/apply',
      headers: { authorization: 'Bearer admin', 'content-type': 'application/yaml' },
      payload: DEPLOYMENT,
    });
    expect(r.statusCode, r.body).toBeLessThan(300);
    await queue.idle();
    const upTo = store.syncs.at(-1);
    expect(upTo).toBeGreaterThan(before);
    // The burst ran (20 writes after the apply's) and is not part of the answer's barrier.
    expect(controllerMarks).toHaveLength(1);
    expect(controllerMarks[0]).toBeGreaterThanOrEqual(upTo! + 20);
  });

  it('a write that changes nothing waits for what was committed before it began (what it read)', async () => {
    const before = store.mark;
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/apply',
      headers: { authorization: 'Bearer admin', 'content-type': 'application/yaml' },
      payload: DEPLOYMENT,
    });
    expect(r.statusCode, r.body).toBeLessThan(300);
    expect(store.syncs.at(-1)).toBe(before);
  });

  it("a work queue started inside a request's scope runs outside it", async () => {
    const scope = { last: 0, start: 0 };
    const before = store.mark;
    writeScope.run(scope, () => queue.add('inside'));
    await queue.idle();
    expect(store.mark).toBe(before + 20);
    expect(scope.last).toBe(0);
  });
});
