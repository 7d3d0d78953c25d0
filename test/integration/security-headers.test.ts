import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { waitFor } from '../helpers/http.js';

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
      ['GET', '/dashboard.js', 200, undefined],
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

  it('the dashboard page has no inline script or style, and its script runs and fills the tables', async () => {
    const page = await t.api('GET', '/');
    const html = page.text;
    // Under script-src 'self' an inline <script> or on* handler would not run: there must be none.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(html).not.toMatch(/<style/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect(html).not.toMatch(/\sstyle=/i);
    const src = /<script src="([^"]+)"><\/script>/.exec(html)?.[1];
    const href = /<link rel="stylesheet" href="([^"]+)">/.exec(html)?.[1];
    expect(src).toBe('/dashboard.js');
    expect(href).toBe('/dashboard.css');
    const css = await t.api('GET', href!);
    expect(css.headers['content-type']).toMatch(/^text\/css/);
    const js = await t.api('GET', src!);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);

    // Run the served script against a minimal DOM; its fetches go to the real hub.
    const elements = new Map<string, { value: string; textContent: string; innerHTML: string; onclick?: () => void }>();
    const el = (id: string) => {
      let e = elements.get(id);
      if (e === undefined) elements.set(id, (e = { value: '', textContent: '', innerHTML: '' }));
      return e;
    };
    const storage = new Map<string, string>([['orchardToken', t.adminToken]]);
    const sandbox = {
      document: { getElementById: el },
      localStorage: { getItem: (k: string) => storage.get(k) ?? null, setItem: (k: string, v: string) => storage.set(k, v) },
      fetch: async (path: string, init: { headers: Record<string, string> }) => {
        const token = init.headers['authorization']!.replace(/^Bearer /, '');
        const r = await t.api('GET', path, undefined, token);
        return { ok: r.status < 400, statusText: String(r.status), json: async () => r.body };
      },
      setInterval: () => 0,
    };
    vm.runInNewContext(js.text, sandbox);
    await waitFor(
      'the dashboard filled its tables',
      () => el('nodes').innerHTML.includes('<th>Name</th>') && el('events').innerHTML.includes('<th>Reason</th>'),
      5_000,
      20,
    );
    expect(el('err').textContent).toBe('');
  });
});
