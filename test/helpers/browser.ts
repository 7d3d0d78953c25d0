import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page, type Request } from 'playwright-core';

/** Debian's chromium (scripts/lib/system-packages.txt), driven by playwright-core. */
export const CHROMIUM = '/usr/bin/chromium';

export interface TestBrowser {
  context: BrowserContext;
  /** A new tab that records page errors and CSP violations (`problems`). */
  page(): Promise<Page>;
  /** Errors thrown by page scripts and console errors (CSP violations among them). */
  problems: string[];
  close(): Promise<void>;
}

/**
 * A headless Chromium with a fresh profile. The hub's certificate is self-signed: the context
 * ignores HTTPS errors (the tests talk to the hub they started, on loopback).
 */
export async function launchBrowser(): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'orchard-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1400, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const problems: string[] = [];
  return {
    context,
    problems,
    async page() {
      const page = await context.newPage();
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      // A request Chromium gave up on says why in the test's output (ERR_NETWORK_CHANGED: see loadDashboard).
      page.on('requestfailed', (r) => console.error(`browser: ${r.method()} ${r.url()} failed: ${r.failure()?.errorText ?? '?'}`));
      page.on('console', (m) => {
        // A failed request (401/403/404 the test provokes) is logged by Chromium as a console error too: only script and CSP errors count.
        if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
      });
      return page;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Loads the dashboard at `url` until it shows the sign-in form or the app. Chromium cancels every
 * request in flight when the host's network interfaces change (`net::ERR_NETWORK_CHANGED`), and
 * the Docker Engine adds a veth interface for each container it starts: a load that overlaps a
 * container start loses some of the app's ES modules, and the page stays blank until reloaded
 * (seen in CI, 2026-12-04: Debian's Chromium 156 on a fresh machine, the e2e agent starting its
 * pod). So a load that lost a request to that error is reloaded (at most 3 times); any other
 * failure is reported with what the page showed.
 */
async function loadDashboard(page: Page, url: string): Promise<void> {
  let changed = 0;
  const onFailed = (r: Request): void => {
    if (r.failure()?.errorText === 'net::ERR_NETWORK_CHANGED') changed++;
  };
  page.on('requestfailed', onFailed);
  try {
    for (let attempt = 1; ; attempt++) {
      changed = 0;
      // The document itself can be the request the network change cancels: goto throws then.
      const loaded = await page.goto(url).then(
        () => true,
        (err: unknown) => {
          if (!String(err).includes('ERR_NETWORK_CHANGED')) throw err;
          changed++;
          return false;
        },
      );
      if (!loaded && attempt < 4) continue;
      const shown = await page
        .locator('#login:visible, #app:visible')
        .first()
        .waitFor({ timeout: changed > 0 ? 5_000 : 30_000 })
        .then(() => true)
        .catch(() => false);
      if (shown) return;
      if (changed > 0 && attempt < 4) continue;
      // Say what the page showed instead (another hub's page, a module that failed to load …).
      throw new Error(
        `the dashboard at ${page.url()} showed neither the sign-in form nor the app (attempt ${attempt}, requests lost to a network change: ${changed}):\n${(await page.content()).slice(0, 2000)}`,
      );
    }
  } finally {
    page.off('requestfailed', onFailed);
  }
}

/** Signs in on the dashboard at `url` with `token` and waits for the app to show. */
export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await loadDashboard(page, url);
  if (await page.locator('#app').isVisible()) await page.click('#signout');
  await page.fill('#token', token);
  await page.click('#signin');
  await page.locator('#app').waitFor({ state: 'visible' });
}
