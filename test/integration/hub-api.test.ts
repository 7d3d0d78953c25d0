import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

const hello = (replicas: number | string = 2, extra = ''): string => `
apiVersion: orchard/v1
kind: Deployment
metadata:
  name: hello
  labels: { app: hello }
spec:
  replicas: ${replicas}
  template:
    metadata: { labels: { app: hello } }
    spec:
      containers:
        - name: web
          image: orchard-test/busybox:1
          command: ["sleep", "3600"]
          resources: { requests: { cpu: 50m, memory: 16Mi } }${extra}
`;

interface Item {
  metadata: { name: string };
  spec: Record<string, unknown>;
  status: Record<string, unknown>;
}
interface ErrorBody {
  code: string;
  message: string;
  details?: { issues?: Array<{ path: string; message: string }> };
}

describe('hub web API (real HTTPS, real SQLite, real broker)', () => {
  let t: TestHub;
  beforeAll(async () => {
    t = await startTestHub();
  });
  afterAll(async () => {
    await t.cleanup();
  });

  it('serves /healthz and the dashboard', async () => {
    expect((await t.api('GET', '/healthz')).body).toEqual({ ok: true, role: 'single' });
    const page = await t.api('GET', '/');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<title>Orchard</title>');
  });

  it('applies a deployment: created, then unchanged, then configured', async () => {
    const a = await t.api('POST', '/api/v1/apply', hello(2));
    expect(a.status).toBe(200);
    expect(a.body).toEqual({ results: [{ kind: 'Deployment', name: 'hello', action: 'created' }] });
    expect((await t.api('POST', '/api/v1/apply', hello(2))).body).toEqual({ results: [{ kind: 'Deployment', name: 'hello', action: 'unchanged' }] });
    expect((await t.api('POST', '/api/v1/apply', hello(3))).body).toEqual({ results: [{ kind: 'Deployment', name: 'hello', action: 'configured' }] });
    const d = (await t.api('GET', '/api/v1/deployments/hello')).body as Item;
    expect(d.metadata.name).toBe('hello');
    expect(d.spec['replicas']).toBe(3);
  });

  it('creates pods that stay Pending with a reason when no node fits', async () => {
    await t.hub.settle();
    const pods = await waitFor('3 pods', async () => {
      const items = ((await t.api('GET', '/api/v1/pods')).body as { items: Item[] }).items;
      return items.length === 3 && items.every((p) => (p.status['unschedulable'] as { summary?: string } | undefined)?.summary) ? items : undefined;
    });
    for (const p of pods) {
      expect(p.status['phase']).toBe('Pending');
      expect((p.status['unschedulable'] as { summary: string }).summary).toBe('0/0 nodes fit: no nodes registered');
    }
    const events = ((await t.api('GET', `/api/v1/events?involvedObject=Pod/${pods[0]?.metadata.name}`)).body as { items: Array<{ reason: string }> }).items;
    expect(events.map((e) => e.reason)).toContain('FailedScheduling');
  });

  it('scales and deletes through the API', async () => {
    const s = await t.api('POST', '/api/v1/deployments/hello/scale', { replicas: 1 });
    expect(s.status).toBe(200);
    await waitFor('1 pod', async () => ((await t.api('GET', '/api/v1/pods')).body as { items: Item[] }).items.length === 1);
    const bad = await t.api('POST', '/api/v1/deployments/hello/scale', { replicas: -1 });
    expect(bad.status).toBe(400);
    expect((bad.body as ErrorBody).details?.issues?.[0]?.path).toBe('replicas');
    const del = await t.api('DELETE', '/api/v1/deployments/hello');
    expect(del.status).toBe(200);
    expect(((await t.api('GET', '/api/v1/pods')).body as { items: Item[] }).items).toHaveLength(0);
    expect((await t.api('GET', '/api/v1/deployments/hello')).status).toBe(404);
  });

  describe('bad input gets a clear error naming the field, and nothing is stored', () => {
    const cases: Array<[string, string, number, string, string | RegExp]> = [
      ['invalid YAML', 'apiVersion: orchard/v1\nkind: [unclosed', 400, 'ERR_BAD_YAML', /documents\[0\]/],
      ['unknown kind', hello().replace('kind: Deployment', 'kind: Gadget'), 400, 'ERR_UNKNOWN_KIND', 'kind'],
      ['unknown apiVersion', hello().replace('orchard/v1', 'apps/v1'), 400, 'ERR_UNKNOWN_KIND', 'apiVersion'],
      ['missing image', hello().replace('image: orchard-test/busybox:1', ''), 400, 'ERR_VALIDATION', 'spec.template.spec.containers[0].image'],
      ['replicas: -1', hello(-1), 400, 'ERR_VALIDATION', 'spec.replicas'],
      ['cpu: abc', hello().replace('cpu: 50m', 'cpu: abc'), 400, 'ERR_VALIDATION', 'spec.template.spec.containers[0].resources.requests.cpu'],
      ['uppercase name', hello().replace('name: hello', 'name: Hello'), 400, 'ERR_VALIDATION', 'metadata.name'],
      ['unknown field', hello().replace('replicas: 2', 'replicas: 2\n  replicaz: 3'), 400, 'ERR_VALIDATION', 'spec'],
    ];
    it.each(cases)('%s', async (_name, body, status, code, path) => {
      const before = ((await t.api('GET', '/api/v1/deployments')).body as { items: Item[] }).items.length;
      const r = await t.api('POST', '/api/v1/apply', body);
      expect(r.status).toBe(status);
      const err = r.body as ErrorBody;
      expect(err.code).toBe(code);
      const paths = (err.details?.issues ?? []).map((i) => i.path).join(' ');
      if (typeof path === 'string') expect(paths).toContain(path);
      else expect(paths).toMatch(path);
      expect(err.message.length).toBeGreaterThan(10);
      expect(((await t.api('GET', '/api/v1/deployments')).body as { items: Item[] }).items.length).toBe(before);
    });

    it('a 10 MB body is refused with 413 and the hub keeps serving', async () => {
      const r = await t.api('POST', '/api/v1/apply', 'x'.repeat(10 * 1024 * 1024));
      expect(r.status).toBe(413);
      expect((r.body as ErrorBody).code).toBe('ERR_PAYLOAD_TOO_LARGE');
      expect((await t.api('GET', '/healthz')).status).toBe(200);
    });

    it('a multi-document apply with one bad document stores none of them', async () => {
      const two = `${hello(1).replace('name: hello', 'name: first')}\n---\n${hello(1).replace('name: hello', 'name: second').replace('cpu: 50m', 'cpu: lots')}`;
      const r = await t.api('POST', '/api/v1/apply', two);
      expect(r.status).toBe(400);
      expect((r.body as ErrorBody).details?.issues?.[0]?.path).toBe('documents[1].spec.template.spec.containers[0].resources.requests.cpu');
      expect((await t.api('GET', '/api/v1/deployments/first')).status).toBe(404);
    });

    it('unknown resource types and objects give 4xx, not 500', async () => {
      expect((await t.api('GET', '/api/v1/gadgets')).status).toBe(400);
      expect((await t.api('GET', '/api/v1/pods/nope')).status).toBe(404);
      expect((await t.api('DELETE', '/api/v1/deployments/nope')).status).toBe(404);
      expect((await t.api('POST', '/api/v1/deployments/nope/scale', '{not json')).status).toBe(400);
    });
  });

  describe('authentication and roles', () => {
    it('refuses requests without a token or with a bad one', async () => {
      const none = await t.api('GET', '/api/v1/pods', undefined, '');
      expect(none.status).toBe(401);
      expect((none.body as ErrorBody).code).toBe('ERR_UNAUTHENTICATED');
      expect((await t.api('GET', '/api/v1/pods', undefined, 'orc_nope.nope')).status).toBe(401);
    });

    it('a viewer token can read but not apply; an operator can apply but not mint tokens', async () => {
      const v = await t.api('POST', '/api/v1/tokens', { type: 'api', role: 'viewer', name: 'ro' });
      expect(v.status).toBe(200);
      const viewer = (v.body as { token: string }).token;
      expect((await t.api('GET', '/api/v1/deployments', undefined, viewer)).status).toBe(200);
      const denied = await t.api('POST', '/api/v1/apply', hello(1), viewer);
      expect(denied.status).toBe(403);
      expect((denied.body as ErrorBody).code).toBe('ERR_FORBIDDEN');
      const o = await t.api('POST', '/api/v1/tokens', { role: 'operator', name: 'ops' });
      const operator = (o.body as { token: string }).token;
      expect((await t.api('POST', '/api/v1/apply', hello(0), operator)).status).toBe(200);
      expect((await t.api('POST', '/api/v1/tokens', { role: 'admin' }, operator)).status).toBe(403);
      await t.api('DELETE', '/api/v1/deployments/hello');
    });
  });

  it('keeps every object across a hub restart', async () => {
    await t.api('POST', '/api/v1/apply', hello(2).replace('name: hello', 'name: durable'));
    await t.hub.settle();
    const before = ((await t.api('GET', '/api/v1/pods')).body as { items: Item[] }).items.map((p) => p.metadata.name).sort();
    expect(before).toHaveLength(2);
    await t.restart();
    const d = await t.api('GET', '/api/v1/deployments/durable');
    expect(d.status).toBe(200);
    await t.hub.settle();
    const after = ((await t.api('GET', '/api/v1/pods')).body as { items: Item[] }).items.map((p) => p.metadata.name).sort();
    expect(after).toEqual(before);
  });
});
