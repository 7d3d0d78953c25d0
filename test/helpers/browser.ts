import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

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

/** Signs in on the dashboard at `url` with `token` and waits for the app to show. */
export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(url);
  await page
    .locator('#login:visible, #app:visible')
    .first()
    .waitFor({ timeout: 30_000 })
    .catch(async (err: unknown) => {
      // Say what the page showed instead (another hub's page, a module that failed to load …).
      throw new Error(`the dashboard at ${page.url()} showed neither the sign-in form nor the app:\n${(await page.content()).slice(0, 2000)}`, { cause: err });
    });
  if (await page.locator('#app').isVisible()) await page.click('#signout');
  await page.fill('#token', token);
  await page.click('#signin');
  await page.locator('#app').waitFor({ state: 'visible' });
}
