import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';

/**
 * Issue 13 item 13: every hub HTTP answer carries a strict CSP, X-Frame-Options,
 * nosniff and Referrer-Policy, and the dashboard still works under that CSP (its script and
 * style are separate same-origin files, nothing inline). Real hub, real HTTPS.
 */
describe('security headers on the dashboard and the API', () => {
  let t: TestHub;
  beforeAll(async () => {
    t = await startTestHub();
  });
  afterAll(async () => {
    await t.cleanup();
  });

  const expectHeaders = (h: Record<string, string | string[] | undefined>, what: string): void => {
    const csp = String(h['content-security-policy'] ?? '');
    expect(csp, what).toMatch(/(^|; )default-src 'self'(;|$)/);
    expect(csp, what).toMatch(/(^|; )script-src 'self'(;|$)/);
    expect(csp, what).toMatch(/(^|; )frame-ancestors 'none'(;|$)/);
    expect(csp, what).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    expect(h['x-frame-options'], what).toBe('DENY');
    expect(h['x-content-type-options'], what).toBe('nosniff');
    expect(h['referrer-policy'], what).toBe('no-referrer');
  };

  it('sends them on the page, its assets, API answers, errors and 404s', async () => {
    const cases: Array<[string, string, number, string | undefined]> = [
      ['GET', '/', 200, undefined],
      ['GET', '/dashboard/app.js', 200, undefined],
      ['GET', '/dashboard.css', 200, undefined],
      ['GET', '/healthz', 200, undefined],
      ['GET', '/api/v1/nodes', 200, undefined],
      ['GET', '/api/v1/nodes', 401, 'orc_000000000000.nope'],
      ['GET', '/no/such/route', 404, undefined],
      ['POST', '/api/v1/apply', 400, undefined],
    ];
    for (const [method, path, status, token] of cases) {
      const r = await t.api(method, path, method === 'POST' ? 'kind: [' : undefined, token);
      expect(r.status, `${method} ${path}`).toBe(status);
      expectHeaders(r.headers, `${method} ${path}`);
    }
  });

  it('sends them on the watch stream', async () => {
    const { default: https } = await import('node:https');
    const headers = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
      const req = https.get(
        new URL('/api/v1/watch', t.hub.apiUrl),
        { headers: { authorization: `Bearer ${t.adminToken}` }, ca: t.hub.pki!.caPem, agent: false },
        (res) => {
          resolve(res.headers);
          req.destroy();
        },
      );
      req.on('error', reject);
    });
    expectHeaders(headers, 'watch');
  });

  it('the dashboard page has no inline script or style; its modules are same-origin files with the headers', async () => {
    const page = await t.api('GET', '/');
    const html = page.text;
    // Under script-src 'self' an inline <script> or on* handler would not run: there must be none.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(html).not.toMatch(/<style/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect(html).not.toMatch(/\sstyle=/i);
    const boot = /<script src="([^"]+)" defer><\/script>/.exec(html)?.[1];
    const href = /<link rel="stylesheet" href="([^"]+)">/.exec(html)?.[1];
    expect(boot).toBe('/dashboard/boot.js');
    const bootJs = await t.api('GET', boot!);
    expect(bootJs.headers['content-type']).toMatch(/^text\/javascript/);
    // boot.js imports the entry module (relative to itself: /dashboard/app.js).
    expect(/import\('([^']+)'\)/.exec(bootJs.text)?.[1]).toBe('./app.js');
    const src = '/dashboard/app.js';
    expect(href).toBe('/dashboard.css');
    const css = await t.api('GET', href!);
    expect(css.headers['content-type']).toMatch(/^text\/css/);
    const js = await t.api('GET', src!);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    // Every module the entry imports is served, with the same headers.
    const imports = [...js.text.matchAll(/from '\.\/([\w-]+\.js)'/g)].map((m) => `/dashboard/${m[1]}`);
    expect(imports.length).toBeGreaterThan(3);
    for (const path of imports) {
      const r = await t.api('GET', path);
      expect(r.status, path).toBe(200);
      expect(r.headers['content-type'], path).toMatch(/^text\/javascript/);
      expectHeaders(r.headers, path);
    }
    // Only the listed modules: nothing else on disk is reachable.
    for (const path of [
      '/dashboard.js',
      '/dashboard/index.html',
      '/dashboard/tsconfig.json',
      '/dashboard/..%2Fapi%2Fserver.ts',
      '/dashboard/%2e%2e%2fdashboard.ts',
    ]) {
      expect((await t.api('GET', path)).status, path).toBe(404);
    }
    // That the page runs under this CSP in a real browser: test/integration/dashboard-browser.test.ts.
  });
});
