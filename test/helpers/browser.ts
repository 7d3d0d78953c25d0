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
      // An error page must not reload itself later, in the middle of another navigation (see open).
      '--disable-auto-reload',
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
      // A request Chromium gave up on says why in the test's output (ERR_NETWORK_CHANGED: see open).
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
 * A failed navigation worth another try: Chromium cancels every request in flight when the host's
 * network interfaces change (`net::ERR_NETWORK_CHANGED`; the cancelled document shows as
 * `net::ERR_ABORTED` and a `chrome-error://` page), and the Docker Engine adds a veth interface
 * for each container it starts, here or in another test file of the tier.
 */
const LOST_TO_NETWORK_CHANGE = /ERR_NETWORK_CHANGED|ERR_ABORTED|chrome-error:\/\//;

/**
 * Opens the dashboard at `url` (a view: `${server}/#/pods`) until it shows the sign-in form or
 * the app. A load that overlaps a container start can lose the document or some of the app's ES
 * modules to a network change (see LOST_TO_NETWORK_CHANGE; seen in CI 2026-12-04 and -05:
 * Debian's Chromium 156 on a fresh machine), and the page stays blank or on Chromium's error
 * page: such a load is repeated, at most 5 times; any other failure is reported with what the
 * page showed. (The browser runs with `--disable-auto-reload`, so an error page does not reload
 * itself later and interrupt the next test's navigation — what turned one lost load into five
 * failed tests in the CI of 2026-12-05.)
 */
export async function open(page: Page, url: string): Promise<void> {
  let changed = 0;
  const onFailed = (r: Request): void => {
    if (r.failure()?.errorText === 'net::ERR_NETWORK_CHANGED') changed++;
  };
  page.on('requestfailed', onFailed);
  try {
    for (let attempt = 1; ; attempt++) {
      changed = 0;
      let lost = '';
      await page.goto(url).catch((err: unknown) => {
        if (!LOST_TO_NETWORK_CHANGE.test(String(err))) throw err;
        lost = String(err).split('\n')[0]!;
      });
      if (page.url().startsWith('chrome-error:')) lost ||= `Chromium's error page at ${page.url()}`;
      if (lost) {
        console.error(`browser: opening ${url} (attempt ${attempt}): ${lost}`);
        if (attempt < 6) {
          // The engine may still be changing interfaces: let it settle before the next load.
          await new Promise((r) => setTimeout(r, 400));
          continue;
        }
        throw new Error(`the dashboard at ${url} did not load in ${attempt} attempts: ${lost}`);
      }
      const shown = await page
        .locator('#login:visible, #app:visible')
        .first()
        .waitFor({ timeout: changed > 0 ? 5_000 : 30_000 })
        .then(() => true)
        .catch(() => false);
      if (shown) return;
      if (changed > 0 && attempt < 6) continue;
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
  await open(page, url);
  if (await page.locator('#app').isVisible()) await page.click('#signout');
  await page.fill('#token', token);
  await page.click('#signin');
  await page.locator('#app').waitFor({ state: 'visible' });
}
