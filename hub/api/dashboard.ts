import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { OrchardError } from '../../protocol/errors.js';

/**
 * The dashboard: a single page of plain ES modules in hub/dashboard/ (no build step, no CDN,
 * no framework: hubs are often offline). This module serves them:
 *   GET /                 index.html
 *   GET /dashboard.css    the style sheet
 *   GET /dashboard/NAME   boot.js (which imports app.js) and the modules (a fixed list: nothing else on disk is reachable)
 *
 * Script and style are separate same-origin files, never inline: the hub sends
 * `Content-Security-Policy: default-src 'self'` with no 'unsafe-inline' (security-headers.ts), so
 * markup injected into the page could not run script even if an escape were missed. The modules
 * themselves never parse data as HTML (hub/dashboard/dom.js).
 *
 * The files are read once, when the API is built. `tsc` does not copy them to dist/: a hub run
 * from dist/ reads them from the source tree beside it (../../../hub/dashboard/).
 */

const TYPES = { html: 'text/html; charset=utf-8', css: 'text/css; charset=utf-8', js: 'text/javascript; charset=utf-8' } as const;

/** The modules served under /dashboard/NAME: the entry (app.js) and what it imports. */
export const DASHBOARD_MODULES = ['app.js', 'api.js', 'dom.js', 'charts.js', 'views-fleet.js', 'views-workloads.js', 'views-logs.js'] as const;
/**
 * The scripts served under /dashboard/NAME: the modules and boot.js, the classic script the page
 * loads, which imports app.js and reloads the page when the browser cancelled one of the modules.
 */
export const DASHBOARD_SCRIPTS = ['boot.js', ...DASHBOARD_MODULES] as const;

export interface DashboardAsset {
  type: string;
  body: string;
}

/** hub/dashboard/ next to this module (run from source), else in the source tree beside dist/. */
export function dashboardDir(): string {
  for (const rel of ['../dashboard/', '../../../hub/dashboard/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}app.js`)) return dir;
  }
  throw new Error('the dashboard files (hub/dashboard/) were not found next to the hub');
}

export function loadDashboard(dir = dashboardDir()): Map<string, DashboardAsset> {
  const out = new Map<string, DashboardAsset>();
  for (const name of ['index.html', 'dashboard.css', ...DASHBOARD_SCRIPTS]) {
    const ext = name.slice(name.lastIndexOf('.') + 1) as keyof typeof TYPES;
    out.set(name, { type: TYPES[ext], body: readFileSync(`${dir}${name}`, 'utf8') });
  }
  return out;
}

/** Registers the public dashboard routes (route-rules.ts PUBLIC_ROUTES lists them). */
export function registerDashboardRoutes(app: FastifyInstance, assets: Map<string, DashboardAsset> = loadDashboard()): void {
  const send = (name: string, reply: FastifyReply): FastifyReply => {
    const a = assets.get(name);
    if (a === undefined) throw new OrchardError('ERR_NOT_FOUND', `no dashboard file ${name}`);
    // no-cache: the browser revalidates, so after a hub upgrade no old module runs beside a new one.
    return reply.type(a.type).header('cache-control', 'no-cache').send(a.body);
  };
  app.get('/', async (_req, reply) => send('index.html', reply));
  app.get('/dashboard.css', async (_req, reply) => send('dashboard.css', reply));
  app.get('/dashboard/:file', async (req, reply) => {
    const { file } = req.params as { file: string };
    if (!(DASHBOARD_SCRIPTS as readonly string[]).includes(file)) throw new OrchardError('ERR_NOT_FOUND', `no dashboard file ${file}`);
    return send(file, reply);
  });
}
