import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TEST_IMAGE } from '../helpers/cluster.js';
import { launchBrowser, open, signIn, type TestBrowser } from '../helpers/browser.js';
import { waitFor } from '../helpers/http.js';
import { docker } from '../helpers/procs.js';

/**
 * The dashboard in Debian's Chromium against a real hub and one real agent on the Docker Engine:
 * sign in with a token, the fleet view shows the node, an operator scales from the page and the
 * engine runs the new container, a viewer gets no buttons and the hub refuses its forced call,
 * and the logs view shows a line the container prints after the view opened.
 * Screenshots of each view go to /tmp/orchard-dashboard-<view>.png (for a person to look at).
 */
const app = `apiVersion: orchard/v1
kind: Deployment
metadata: { name: e2e-dash }
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: app
          image: ${TEST_IMAGE}
          command: ["sh", "-c", "echo started; while :; do sleep 1; done"]
          resources: { requests: { cpu: 50m, memory: 16Mi }, limits: { memory: 64Mi } }
`;

describe('dashboard in Chromium: real hub, real agent, real engine', () => {
  const c = new Cluster();
  let browser: TestBrowser;
  let page: Page;
  let operator = '';
  let viewer = '';
  const shot = (view: string) => page.screenshot({ path: `/tmp/orchard-dashboard-${view}.png`, fullPage: true });

  /** Running containers of the deployment on the engine, by the agent's labels. */
  const running = (): string[] =>
    docker([
      'ps',
      '-q',
      '--filter',
      `label=orchard.node=${c.nodeName('a')}`,
      '--filter',
      'label=orchard.deployment=e2e-dash',
      '--filter',
      'label=orchard.container=app',
    ])
      .split('\n')
      .filter(Boolean);

  const apiToken = async (role: string): Promise<string> => {
    const r = await c.api('POST', '/api/v1/tokens', { type: 'api', role, name: `e2e-${role}` });
    expect(r.status, r.text).toBe(200);
    return (r.body as { token: string }).token;
  };

  beforeAll(async () => {
    await c.startHub();
    await c.startAgent('a');
    await c.waitNodeReady('a');
    writeFileSync(join(c.dir, 'app.yaml'), app);
    const r = c.cli(['apply', '-f', join(c.dir, 'app.yaml')]);
    expect(r.code, r.stderr).toBe(0);
    operator = await apiToken('operator');
    viewer = await apiToken('viewer');
    // The container's start adds a veth interface, and Chromium cancels requests in flight on a
    // network change (signIn reloads then): open the page once the engine has settled.
    await waitFor('the e2e-dash container running', () => running().length === 1, 60_000, 500);
    browser = await launchBrowser();
    page = await browser.page();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await c.cleanup();
  });

  it('signs in with an operator token and shows the node in the fleet view', async () => {
    await signIn(page, c.server, operator);
    expect(await page.textContent('#me')).toBe('e2e-operator (operator)');
    const row = page.locator(`tr[data-node="${c.nodeName('a')}"]`);
    await expect.poll(() => row.textContent(), { timeout: 15_000 }).toMatch(/Ready/);
    expect(await row.textContent()).toMatch(/amd64|arm64|arm/);
    expect(await row.locator('svg.bar').count()).toBe(2);
  });

  it('scales from the page; the engine runs the new container', async () => {
    await waitFor('one container running', () => running().length === 1, 60_000, 500);
    await open(page, `${c.server}/#/deployments`);
    const row = page.locator('tr[data-deployment="e2e-dash"]');
    await expect.poll(() => row.textContent(), { timeout: 30_000 }).toMatch(/1\/1 ready/);
    await shot('deployments');
    await row.locator('button[data-action="scale"]').click();
    await page.fill('#dialog-input', '2');
    await page.click('#dialog-ok');
    await waitFor('two containers running on the engine', () => running().length === 2, 45_000, 500);
    await expect.poll(() => row.textContent(), { timeout: 30_000 }).toMatch(/2\/2 ready/);
    await open(page, `${c.server}/#/deployments/e2e-dash`);
    await page.locator('main table').first().waitFor();
    await shot('deployment');
    for (const view of ['pods', 'services', 'events']) {
      await open(page, `${c.server}/#/${view}`);
      await page.locator('main table').first().waitFor();
      await shot(view);
    }
  });

  it('gives a viewer no action buttons; the hub refuses a scale the viewer forces', async () => {
    await signIn(page, c.server, viewer);
    expect(await page.textContent('#me')).toBe('e2e-viewer (viewer)');
    for (const view of ['fleet', 'deployments', 'deployments/e2e-dash']) {
      await open(page, `${c.server}/#/${view}`);
      await page.locator('main table').first().waitFor();
      await expect.poll(() => page.locator('main tbody tr').count()).toBeGreaterThan(0);
      expect(await page.locator('main button[data-action]').count(), view).toBe(0);
    }
    const forced = await page.evaluate(async (tok) => {
      const r = await fetch('/api/v1/deployments/e2e-dash/scale', {
        method: 'POST',
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
        body: '{"replicas":0}',
      });
      return { status: r.status, code: ((await r.json()) as { code: string }).code };
    }, viewer);
    expect(forced).toEqual({ status: 403, code: 'ERR_FORBIDDEN' });
    expect(running()).toHaveLength(2);
  });

  it('streams a pod log: a line the container prints after the view opened appears', async () => {
    const pod = (await c.pods('e2e-dash')).find((p) => p.status.phase === 'Running');
    expect(pod).toBeDefined();
    await open(page, `${c.server}/#/logs/${pod!.metadata.name}`);
    // Status and text together, so a failure shows the hub's error (e.g. ERR_NOT_FOUND without the logs API).
    const view = async () => `${await page.textContent('#logs-status')}\n${await page.textContent('pre.logs')}`;
    await expect.poll(view, { timeout: 15_000 }).toMatch(/^streaming…\n[^]*started/);
    // Printed now, on the container's own stdout (PID 1's), long after the stream opened.
    const marker = `marker-${Date.now()}`;
    const id = docker(['ps', '-q', '--filter', `label=orchard.pod=${pod!.metadata.name}`, '--filter', 'label=orchard.container=app']).trim();
    docker(['exec', id, 'sh', '-c', `echo ${marker} > /proc/1/fd/1`]);
    await expect.poll(view, { timeout: 15_000 }).toContain(marker);
    await shot('logs');
  });

  it("shows the node's reported usage against its capacity in the fleet view", async () => {
    // Agents report every 10 s and the page polls every 10 s: by now, or within 25 s.
    await open(page, `${c.server}/#/fleet`);
    const row = page.locator(`tr[data-node="${c.nodeName('a')}"]`);
    await expect.poll(() => row.textContent(), { timeout: 25_000 }).toMatch(/(\d+m|[\d.]+) \/ \d+.*\d+(B|Ki|Mi|Gi) \/ [\d.]+(Mi|Gi)/);
    await shot('fleet');
  });

  it('ran without script errors or CSP violations', () => {
    expect(browser.problems).toEqual([]);
  });
});
