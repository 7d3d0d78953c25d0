import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { OrchardError } from '../../protocol/errors.js';

/**
 * The single-file agent for devices (scripts/install-agent.sh fetches it):
 *
 *   GET /agent/orchard-agent.mjs         the file (text/javascript), X-Orchard-Agent-Sha256 header
 *   GET /agent/orchard-agent.mjs.sha256  `<sha256 hex>  orchard-agent.mjs` (sha256sum's format)
 *   GET /agent/orchard-agent-launcher.mjs[.sha256]  the same for the launcher systemd runs
 *
 * Public, like /api/v1/ca: the file is the same code as the release and holds no secret. A device
 * trusts it because it comes over TLS pinned to the hub CA whose fingerprint is in its join token
 * (the installer checks the CA first, as the agent's join does), and the sha256 confirms it arrived
 * whole. Asking for the join token here would spend a use of a (often single-use) token before the
 * join itself and send it one more time; nothing would be gained, since the file is not secret.
 *
 * The file is dist/orchard-agent.mjs beside the hub's own build (or `agentFile`); it is read and
 * hashed once, and again only when its size or mtime changes (a rebuild, an upgrade).
 */

export const AGENT_FILE_ROUTE = '/agent/orchard-agent.mjs';
/** The launcher systemd runs, which starts the agent file and rolls an upgrade back (docs/agent.md "Upgrades"). */
export const LAUNCHER_FILE_ROUTE = '/agent/orchard-agent-launcher.mjs';

/** dist/NAME: from dist/hub/api/ (the build) or hub/api/ (sources run with tsx). */
export function defaultAgentFiles(name = 'orchard-agent.mjs'): string[] {
  return [fileURLToPath(new URL(`../../${name}`, import.meta.url)), fileURLToPath(new URL(`../../dist/${name}`, import.meta.url))];
}

interface Loaded {
  key: string;
  bytes: Buffer;
  sha256: string;
}

/** One served file: read and hashed once, and again only when its size or mtime changes. */
function servedFile(route: string, candidates: string[]): () => Loaded {
  let cached: Loaded | undefined;
  return () => {
    for (const path of candidates) {
      let key: string;
      try {
        const st = statSync(path);
        if (!st.isFile()) continue;
        key = `${path}:${st.size}:${st.mtimeMs}`;
      } catch {
        continue;
      }
      if (cached?.key === key) return cached;
      const bytes = readFileSync(path);
      cached = { key, bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
      return cached;
    }
    throw new OrchardError(
      'ERR_NOT_FOUND',
      `this hub has no ${route.slice('/agent/'.length)} to serve (looked for ${candidates.join(', ')}; npm run build makes it)`,
    );
  };
}

export function registerAgentRoutes(app: FastifyInstance, opts: { agentFile?: string; launcherFile?: string }): void {
  const files: [string, string[]][] = [
    [AGENT_FILE_ROUTE, opts.agentFile !== undefined ? [opts.agentFile] : defaultAgentFiles()],
    [LAUNCHER_FILE_ROUTE, opts.launcherFile !== undefined ? [opts.launcherFile] : defaultAgentFiles('orchard-agent-launcher.mjs')],
  ];
  for (const [route, candidates] of files) {
    const load = servedFile(route, candidates);
    const name = route.slice('/agent/'.length);
    app.get(route, async (_req, reply) => {
      const f = load();
      return reply.type('text/javascript; charset=utf-8').header('x-orchard-agent-sha256', f.sha256).header('cache-control', 'no-store').send(f.bytes);
    });
    app.get(`${route}.sha256`, async (_req, reply) => {
      const f = load();
      return reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store').send(`${f.sha256}  ${name}\n`);
    });
  }
}
