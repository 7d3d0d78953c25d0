import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page, Request } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Agent } from '../../agent/agent.js';
import { MemoryRuntime } from '../../agent/runtime/memory-runtime.js';
import type { Deployment, EventObject, NodeObject, Pod } from '../../protocol/objects.js';
import { launchBrowser, open, signIn, type TestBrowser } from '../helpers/browser.js';
import { startMemoryAgent, startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core) against a real
 * hub (HTTPS, its strict CSP) with a hollow agent (real Agent, MemoryRuntime). The logs API is
 * stubbed inside the page only (a fetch wrapper the test feeds chunk by chunk), so the view's
 * streaming and escaping are tested here; test/e2e/dashboard.test.ts reads a real container.
 */
const XSS = '<img src=x id=pwned onerror="window.__xss=1">';
const manifest = (replicas: number, image = 'app:v1', cause = 'first') => `
apiVersion: orchard/v1
kind: Deployment
metadata:
  name: web
  annotations: { orchard.dev/change-cause: '${cause}' }
spec:
  replicas: ${replicas}
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: app
          image: ${image}
          resources: { requests: { cpu: 100m, memory: 32Mi }, limits: { memory: 64Mi } }
---
apiVersion: orchard/v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
`;

/** One pod on every node (Orchard's DaemonSet): drain leaves it in place. */
const GLOBAL = `
apiVersion: orchard/v1
kind: Deployment
metadata: { name: node-agent }
spec:
  mode: global
  template:
    spec:
      containers:
        - name: app
          image: app:v1
          resources: { requests: { cpu: 50m, memory: 16Mi } }
`;

/** Replaces fetch for …/logs URLs with a stream the test writes to (window.__log(text), window.__logEnd()). */
const STUB_LOGS = `(() => {
  const real = window.fetch.bind(window);
  window.__logRequests = [];
  window.fetch = (input, init) => {
    const url = String(input);
    if (!url.includes('/logs?')) return real(input, init);
    window.__logRequests.push({ url, auth: init?.headers?.authorization ?? '' });
    const enc = new TextEncoder();
    const body = new ReadableStream({ start(c) { window.__log = (t) => c.enqueue(enc.encode(t)); window.__logEnd = () => c.close(); } });
    return Promise.resolve(new Response(body, { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' } }));
  };
})();`;

describe('dashboard in Chromium against a real hub', () => {
  let t: TestHub;
  let agent: Agent;
  let agent2: Agent | undefined;
  let browser: TestBrowser;
  let page: Page;
  let operatorToken = '';
  let viewerToken = '';
  const dir = mkdtempSync(join(tmpdir(), 'orchard-dash-'));
  const runtime = new MemoryRuntime({ images: ['app:v1', 'app:v2'], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
  const t0 = Date.now();
  runtime.usageOf = () => ({ cpuSeconds: ((Date.now() - t0) / 1000) * 0.2, memoryBytes: 24 * 1024 ** 2 });

  beforeAll(async () => {
    t = await startTestHub();
    operatorToken = t.hub.auth.createApiToken({ name: 'ops', role: 'operator' }).token;
    viewerToken = t.hub.auth.createApiToken({ name: 'look', role: 'viewer' }).token;
    agent = await startMemoryAgent(t, { node: 'pi-1', dataDir: join(dir, 'agent'), runtime, usageIntervalMs: 200 });
    expect((await t.api('POST', '/api/v1/apply', manifest(2, 'app:v1', `first ${XSS}`))).status).toBe(200);
    browser = await launchBrowser();
    page = await browser.page();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await agent2?.stop();
    await agent?.stop();
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const deployment = async () => (await t.api('GET', '/api/v1/deployments/web')).body as Deployment;
  const node = async (name: string) => (await t.api('GET', `/api/v1/nodes/${name}`)).body as NodeObject;
  const pods = async () => ((await t.api('GET', '/api/v1/pods')).body as { items: Pod[] }).items;

  it('asks for a token, refuses a wrong one, and shows the fleet with the node', async () => {
    await open(page, t.hub.apiUrl);
    await page.locator('#login').waitFor();
    await page.fill('#token', 'orc_000000000000.wrong');
    await page.click('#signin');
    await expect.poll(() => page.textContent('#login-error')).toMatch(/unknown, expired or revoked/);
    await signIn(page, t.hub.apiUrl, operatorToken);
    expect(await page.textContent('#me')).toBe('ops (operator)');
    const row = page.locator('tr[data-node="pi-1"]');
    await row.waitFor();
    await expect.poll(() => row.textContent()).toMatch(/Ready.*amd64/);
    // Usage bars once the agent's first reports are in (polled every 10 s by the page).
    await expect.poll(() => row.locator('svg.bar').count(), { timeout: 20_000 }).toBe(2);
    await expect.poll(() => row.textContent(), { timeout: 20_000 }).toMatch(/\d+m \/ 4.*\d+(B|Ki|Mi|Gi) \/ 4\.0Gi/);
    expect(await page.locator('.donut').first().getAttribute('class')).toBe('donut');
    expect(await page.locator('#live').textContent()).toBe('live');
  });

  it('shows deployments with progress, pods with conditions, services and events, live', async () => {
    await open(page, `${t.hub.apiUrl}/#/deployments`);
    await expect.poll(() => page.locator('tr[data-deployment="web"]').textContent(), { timeout: 15_000 }).toMatch(/2\/2 ready/);
    await open(page, `${t.hub.apiUrl}/#/pods`);
    await expect.poll(() => page.locator('tr[data-pod]').count()).toBe(2);
    expect(await page.locator('tr[data-pod] .chips').first().textContent()).toBe('PodScheduledContainersReadyReady');
    await open(page, `${t.hub.apiUrl}/#/services`);
    await expect.poll(() => page.locator('tr[data-service="web"]').textContent()).toMatch(/80→8080\/TCP.*app=web.*2\/2 ready/);
    await open(page, `${t.hub.apiUrl}/#/events`);
    await expect.poll(() => page.locator('main tbody tr').count()).toBeGreaterThan(1);
    // The detail pages: a node (charts, conditions, its pods) and a pod (conditions, containers, usage, events).
    await open(page, `${t.hub.apiUrl}/#/nodes/pi-1`);
    await expect.poll(() => page.locator('main').textContent()).toMatch(/Node pi-1.*CPU, last hour.*Conditions.*Pods on this node.*web-/);
    const pod = await page.locator('main a[href^="#/pods/web-"]').first().textContent();
    await open(page, `${t.hub.apiUrl}/#/pods/${pod}`);
    await expect.poll(() => page.locator('main').textContent()).toMatch(/Deploymentweb.*Nodepi-1.*ContainersReady.*appapp:v1running/);
    await expect.poll(() => page.locator('main figure.chart').count()).toBe(2);
  });

  it('shows a change cause holding markup as text, in the rollout history', async () => {
    await open(page, `${t.hub.apiUrl}/#/deployments/web`);
    await expect.poll(() => page.locator('main').textContent()).toContain(`first ${XSS}`);
    expect(await page.locator('#pwned').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
  });

  it('scales from the page (operator): the hub stores it and the page follows the watch', async () => {
    await open(page, `${t.hub.apiUrl}/#/deployments`);
    await page.locator('tr[data-deployment="web"] button[data-action="scale"]').click();
    await page.fill('#dialog-input', '3');
    await page.click('#dialog-ok');
    await waitFor('spec.replicas 3 in the store', async () => (await deployment()).spec.replicas === 3);
    await expect.poll(() => page.locator('tr[data-deployment="web"]').textContent(), { timeout: 15_000 }).toMatch(/3\/3 ready/);
    await expect.poll(() => page.locator('.toast').last().textContent()).toBe('scale web to 3: done');
  });

  it('rolls back from the history (operator)', async () => {
    expect((await t.api('POST', '/api/v1/apply', manifest(3, 'app:v2', 'second'))).status).toBe(200);
    await open(page, `${t.hub.apiUrl}/#/deployments/web`);
    await page.locator('button[data-action="undo"]').first().waitFor();
    await page.locator('h2 button[data-action="undo"]').click();
    await page.click('#dialog-ok');
    await waitFor('image back to app:v1', async () => (await deployment()).spec.template.spec.containers[0]?.image === 'app:v1');
  });

  it('cordons and uncordons a node from the fleet view (operator)', async () => {
    await open(page, `${t.hub.apiUrl}/#/fleet`);
    await page.locator('tr[data-node="pi-1"] button[data-action="cordon"]').click();
    await waitFor('pi-1 unschedulable', async () => ((await t.api('GET', '/api/v1/nodes/pi-1')).body as NodeObject).spec.unschedulable);
    await expect.poll(() => page.locator('tr[data-node="pi-1"]').textContent()).toContain('SchedulingDisabled');
    await page.locator('tr[data-node="pi-1"] button[data-action="uncordon"]').click();
    await waitFor('pi-1 schedulable', async () => !((await t.api('GET', '/api/v1/nodes/pi-1')).body as NodeObject).spec.unschedulable);
  });

  it('drains a node from the fleet view (operator), after a confirmation: cordoned, replicas evicted and replaced on the other node, the global pod kept', async () => {
    // web's rollback has finished: its three replicas run app:v1 on pi-1, the only node so far.
    await waitFor(
      "web's 3 replicas running app:v1 on pi-1",
      async () => {
        const web = (await pods()).filter((p) => p.metadata.ownerName === 'web');
        return web.length === 3 && web.every((p) => p.spec.nodeName === 'pi-1' && p.status.phase === 'Running' && p.spec.containers[0]?.image === 'app:v1');
      },
      30_000,
    );
    const runtime2 = new MemoryRuntime({ images: ['app:v1', 'app:v2'], info: { ncpu: 4, memTotal: 4 * 1024 ** 3 } });
    agent2 = await startMemoryAgent(t, { node: 'pi-2', dataDir: join(dir, 'agent-2'), runtime: runtime2 });
    expect((await t.api('POST', '/api/v1/apply', GLOBAL)).status).toBe(200);
    const before = await waitFor('a running global pod on each node', async () => {
      const all = await pods();
      const global = all.filter((p) => p.metadata.ownerName === 'node-agent' && p.status.phase === 'Running');
      return global.length === 2 ? all : undefined;
    });
    const webBefore = before.filter((p) => p.metadata.ownerName === 'web').map((p) => p.metadata.name);
    const keep = before.find((p) => p.metadata.ownerName === 'node-agent' && p.spec.nodeName === 'pi-1');
    expect(webBefore).toHaveLength(3);
    expect(keep).toBeDefined();

    await open(page, `${t.hub.apiUrl}/#/fleet`);
    await expect.poll(() => page.locator('tr[data-node="pi-2"]').count()).toBe(1);
    const drains: string[] = [];
    const onRequest = (r: Request): void => {
      if (r.url().includes('/drain')) drains.push(`${r.method()} ${new URL(r.url()).pathname}`);
    };
    page.on('request', onRequest);
    const drain = page.locator('tr[data-node="pi-1"] button[data-action="drain"]');
    // Cancelled: nothing is sent, nothing changes.
    await drain.click();
    expect(await page.textContent('dialog h3')).toBe('Drain pi-1?');
    expect(await page.textContent('dialog p')).toBe('Cordons pi-1 and evicts its pods so they are rescheduled on other nodes.');
    await page.click('#dialog-cancel');
    await page.locator('dialog').waitFor({ state: 'detached' });
    expect((await node('pi-1')).spec.unschedulable).toBe(false);
    // Confirmed: one request in all (a cancelled drain sent anyway would make two).
    await drain.click();
    await page.click('#dialog-ok');
    await expect.poll(() => page.locator('.toast').last().textContent()).toBe('drain pi-1: done');
    page.off('request', onRequest);
    expect(drains).toEqual(['POST /api/v1/nodes/pi-1/drain']);
    expect((await node('pi-1')).spec.unschedulable).toBe(true);
    expect((await node('pi-2')).spec.unschedulable).toBe(false);
    // The evicted replicas are gone and the deployment's replacements run on pi-2 (pi-1 is cordoned).
    const after = await waitFor(
      "web's 3 replacements running on pi-2",
      async () => {
        const all = await pods();
        const web = all.filter((p) => p.metadata.ownerName === 'web');
        return web.length === 3 && web.every((p) => p.spec.nodeName === 'pi-2' && p.status.phase === 'Running') ? all : undefined;
      },
      30_000,
    );
    const names = after.map((p) => p.metadata.name);
    for (const evicted of webBefore) expect(names).not.toContain(evicted);
    // The global pod on pi-1 is the same pod as before (kept, not recreated); pi-2 has its own.
    const global = after.filter((p) => p.metadata.ownerName === 'node-agent');
    expect(global.map((p) => p.spec.nodeName).sort()).toEqual(['pi-1', 'pi-2']);
    expect(global.find((p) => p.spec.nodeName === 'pi-1')?.metadata.uid).toBe(keep?.metadata.uid);
    expect((await deployment()).spec.replicas).toBe(3);
    const events = (await t.api('GET', '/api/v1/events?involvedObject=Node/pi-1')).body as { items: EventObject[] };
    expect(events.items.find((e) => e.reason === 'Drained')?.message).toBe('node drained: 3 pod(s) evicted for rescheduling, 1 global pod(s) kept');
    // The page follows: pi-1 cordoned, offering Uncordon instead of Cordon.
    const row = page.locator('tr[data-node="pi-1"]');
    await expect.poll(() => row.textContent()).toContain('SchedulingDisabled');
    expect(await row.locator('button[data-action="uncordon"]').count()).toBe(1);
    expect(await row.locator('button[data-action="cordon"]').count()).toBe(0);
  });

  it('gives a viewer no action buttons, and the hub refuses a forced scale or drain', async () => {
    const me = (await t.api('GET', '/api/v1/whoami', undefined, viewerToken)).body as { name: string; role: string; operations: string[] };
    expect(me).toMatchObject({ name: 'look', role: 'viewer' });
    expect(me.operations).toEqual(expect.arrayContaining(['list', 'watch', 'metrics.read', 'rollout.history']));
    expect(me.operations).not.toContain('scale');
    await signIn(page, t.hub.apiUrl, viewerToken);
    expect(await page.textContent('#me')).toBe('look (viewer)');
    for (const view of ['deployments', 'fleet', 'deployments/web', 'nodes/pi-2']) {
      await open(page, `${t.hub.apiUrl}/#/${view}`);
      await page.locator('main table').first().waitFor();
      expect(await page.locator('main button[data-action]').count(), view).toBe(0);
    }
    const forced = await page.evaluate(async (tok) => {
      const r = await fetch('/api/v1/deployments/web/scale', {
        method: 'POST',
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
        body: '{"replicas":1}',
      });
      return { status: r.status, body: (await r.json()) as { code: string } };
    }, viewerToken);
    expect(forced.status).toBe(403);
    expect(forced.body.code).toBe('ERR_FORBIDDEN');
    expect((await deployment()).spec.replicas).toBe(3);
    // Nor may a viewer drain a node: pi-2 stays schedulable and keeps its pods.
    const podsOnPi2 = (await pods()).filter((p) => p.spec.nodeName === 'pi-2').map((p) => p.metadata.name);
    expect(podsOnPi2.length).toBeGreaterThan(0);
    const drain = await page.evaluate(async (tok) => {
      const r = await fetch('/api/v1/nodes/pi-2/drain', {
        method: 'POST',
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
        body: '{}',
      });
      return { status: r.status, body: (await r.json()) as { code: string } };
    }, viewerToken);
    expect(drain).toEqual({ status: 403, body: expect.objectContaining({ code: 'ERR_FORBIDDEN' }) });
    expect((await node('pi-2')).spec.unschedulable).toBe(false);
    expect((await pods()).filter((p) => p.spec.nodeName === 'pi-2').map((p) => p.metadata.name)).toEqual(podsOnPi2);
  });

  it('streams a pod log chunk by chunk, as text', async () => {
    const logs = await browser.page();
    await logs.addInitScript(STUB_LOGS);
    await signIn(logs, t.hub.apiUrl, viewerToken);
    const pod = await waitFor('a pod', async () => (await t.api('GET', '/api/v1/pods')).body as { items: Array<{ metadata: { name: string } }> });
    const name = pod.items[0]!.metadata.name;
    await open(logs, `${t.hub.apiUrl}/#/logs/${name}`);
    await expect.poll(() => logs.evaluate(() => (globalThis as unknown as { __logRequests: unknown[] }).__logRequests.length)).toBe(1);
    const req = await logs.evaluate(() => (globalThis as unknown as { __logRequests: Array<{ url: string; auth: string }> }).__logRequests[0]);
    expect(req?.url).toBe(`/api/v1/pods/${name}/logs?container=app&tail=200&follow=true`);
    expect(req?.auth).toBe(`Bearer ${viewerToken}`);
    await logs.evaluate(() => (globalThis as unknown as { __log: (t: string) => void }).__log('first line\n'));
    await expect.poll(() => logs.textContent('pre.logs')).toBe('first line\n');
    await logs.evaluate((x) => (globalThis as unknown as { __log: (t: string) => void }).__log(`${x}\nthird line\n`), XSS);
    await expect.poll(() => logs.textContent('pre.logs')).toBe(`first line\n${XSS}\nthird line\n`);
    expect(await logs.locator('#pwned').count()).toBe(0);
    expect(await logs.textContent('#logs-status')).toBe('streaming…');
    await logs.evaluate(() => (globalThis as unknown as { __logEnd: () => void }).__logEnd());
    await expect.poll(() => logs.textContent('#logs-status')).toMatch(/stream ended/);
    await logs.close();
  });

  // Chromium cancels requests in flight when the host's interfaces change (ERR_NETWORK_CHANGED; the
  // engine adds a veth per container): a lost module used to leave the page blank. boot.js reloads.
  it('comes up when the browser lost one of its modules: the page reloads itself (boot.js), and after 3 tries says so', async () => {
    const p = await browser.page();
    let lost = 0;
    await p.route('**/dashboard/views-logs.js', async (route) => {
      if (lost < 2) {
        lost++;
        await route.abort('internetdisconnected');
      } else await route.continue();
    });
    await p.goto(t.hub.apiUrl);
    // Signed in already (the earlier tests' token is in this profile's localStorage): the app shows.
    await p.locator('#app').waitFor({ state: 'visible', timeout: 20_000 });
    expect(lost).toBe(2);
    await expect.poll(() => p.locator('tr[data-node="pi-1"]').count()).toBe(1);
    const retries = () =>
      (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem('orchard.dashboard.bootRetries');
    expect(await p.evaluate(retries)).toBeNull();
    // A module that never loads: three reloads, then a message with a Reload button, not a blank page.
    await p.unroute('**/dashboard/views-logs.js');
    let refused = 0;
    await p.route('**/dashboard/views-logs.js', async (route) => {
      refused++;
      await route.abort('internetdisconnected');
    });
    await p.reload();
    await p.locator('#boot-error').waitFor({ state: 'visible', timeout: 20_000 });
    expect(refused).toBe(4);
    expect(await p.locator('#app').isVisible()).toBe(false);
    expect(await p.textContent('#boot-error .reason')).not.toBe('');
    // Reload works once the module can be fetched again.
    await p.unroute('**/dashboard/views-logs.js');
    await p.click('#boot-error button');
    await p.locator('#app').waitFor({ state: 'visible', timeout: 20_000 });
    // An error thrown by the app's own code is no lost module: no reload, the message at once, and
    // the error reported as the page's (pageerror).
    let served = 0;
    await p.route('**/dashboard/app.js', async (route) => {
      served++;
      await route.fulfill({ status: 200, contentType: 'text/javascript', body: "throw new Error('app bug 42');" });
    });
    const before = browser.problems.length;
    await p.reload();
    await p.locator('#boot-error').waitFor({ state: 'visible', timeout: 20_000 });
    expect(await p.textContent('#boot-error .reason')).toBe('app bug 42');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(served).toBe(1);
    expect(browser.problems.splice(before)).toEqual(['pageerror: app bug 42']);
    await p.close();
  });

  // The same network change can drop the app's API requests: a GET dropped without an answer is
  // sent again (api.js), and a list that still fails ends that watch, so the page lists again
  // instead of waiting for good on a stream whose list never came (app.js).
  it('comes up when the browser drops its API requests: GETs are sent again, a failed list is listed again', async () => {
    const p = await browser.page();
    const dropped = { whoami: 0, nodes: 0 };
    await p.route('**/api/v1/whoami', async (route) => {
      if (dropped.whoami < 1) {
        dropped.whoami++;
        await route.abort('internetdisconnected');
      } else await route.continue();
    });
    // Three drops: more than one list's retries (two), so the first list fails as a whole.
    await p.route('**/api/v1/nodes', async (route) => {
      if (dropped.nodes < 3) {
        dropped.nodes++;
        await route.abort('internetdisconnected');
      } else await route.continue();
    });
    const watches: string[] = [];
    p.on('request', (r) => {
      if (r.url().includes('/api/v1/watch')) watches.push(r.url());
    });
    await p.goto(`${t.hub.apiUrl}/#/fleet`);
    // Signed in already (this profile's localStorage): whoami is sent again, and the app shows.
    await p.locator('#app').waitFor({ state: 'visible', timeout: 20_000 });
    expect(dropped.whoami).toBe(1);
    await expect.poll(() => p.locator('tr[data-node="pi-1"]').count(), { timeout: 20_000 }).toBe(1);
    expect(dropped.nodes).toBe(3);
    // The first watch was ended by its failed list, and a second one opened.
    expect(watches.length).toBeGreaterThanOrEqual(2);
    await expect.poll(() => p.textContent('#live'), { timeout: 10_000 }).toBe('live');
    await p.close();
  });

  it('ran without script errors or CSP violations', () => {
    expect(browser.problems).toEqual([]);
  });
});
