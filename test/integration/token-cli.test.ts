import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferIo } from '../../cli/io.js';
import { runCli } from '../../cli/run.js';
import { apiTokenId } from '../../protocol/api.js';
import { startTestHub, type TestHub } from '../helpers/hub-harness.js';
import { request } from '../helpers/http.js';

/**
 * API tokens made with the real CLI (`orchard token create --role …`, in-process) against a real
 * hub (HTTPS, SQLite): the role the CLI sends is the one the hub enforces. cli/client.test.ts has
 * the request shapes against a fake hub; this is the scrape role end to end (issue 16): a token
 * for a Prometheus server that reads GET /metrics and nothing else.
 */
describe('orchard token create --role, against a real hub', () => {
  let t: TestHub;
  const dir = mkdtempSync(join(tmpdir(), 'orchard-token-cli-'));
  const caFile = join(dir, 'ca.crt');

  beforeAll(async () => {
    t = await startTestHub();
    writeFileSync(caFile, t.hub.pki?.caPem ?? '');
  });
  afterAll(async () => {
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = async (argv: string[], token = t.adminToken): Promise<{ code: number; stdout: string; stderr: string }> => {
    const b = bufferIo({ env: { ORCHARD_SERVER: t.hub.apiUrl, ORCHARD_TOKEN: token }, homeDir: dir });
    const code = await runCli([...argv, '--ca', caFile], b.io);
    return { code, stdout: b.stdout(), stderr: b.stderr() };
  };
  const get = (path: string, token: string) => request(t.hub.apiUrl, 'GET', path, { token, ca: t.hub.pki?.caPem ?? '' });

  it('the usage names every role, scrape included, and a wrong role is told the four', async () => {
    const help = await cli(['token', 'create', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('[--role admin|operator|viewer|scrape [--name NAME]]');
    expect(help.stdout).toMatch(/--role ROLE\s+admin, operator, viewer, or scrape \(reads GET \/metrics only/);
    const wrong = await cli(['token', 'create', '--role', 'prometheus']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('error: --role "prometheus" is not one of: admin, operator, viewer, scrape\n');
  });

  it('a scrape token made with the CLI reads /metrics (200) and is refused everything else (403)', async () => {
    const made = await cli(['token', 'create', '--role', 'scrape', '--name', 'prometheus']);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toBe('');
    // Only the token, on one line (a script captures it with $(…)).
    expect(made.stdout).toMatch(/^\S+\n$/);
    const token = made.stdout.trim();
    const id = apiTokenId(token);
    expect(id).toBeDefined();

    const list = await cli(['token', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${id}\\s+prometheus\\s+scrape\\s+\\S+\\s+usable\\s`, 'm'));

    const metrics = await get('/metrics', token);
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    expect(metrics.text).toMatch(/^# TYPE orchard_\w+ (gauge|counter|histogram)$/m);

    // Objects, the top API and token administration are all above scrape.
    for (const path of ['/api/v1/pods', '/api/v1/nodes', '/api/v1/metrics/nodes', '/api/v1/tokens']) {
      const r = await get(path, token);
      expect(r.status, path).toBe(403);
      expect(r.body, path).toMatchObject({ code: 'ERR_FORBIDDEN' });
    }
    const apply = await request(t.hub.apiUrl, 'POST', '/api/v1/apply', {
      token,
      ca: t.hub.pki?.caPem ?? '',
      body: 'apiVersion: orchard/v1\nkind: ConfigMap\nmetadata: { name: nope }\ndata: { a: b }\n',
    });
    expect(apply.status).toBe(403);
    const configMaps = await get('/api/v1/configmaps', t.adminToken);
    expect(configMaps.status).toBe(200);
    expect(configMaps.body).toEqual(expect.objectContaining({ items: [] }));
    // The CLI with that token says why.
    const denied = await cli(['get', 'nodes'], token);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/role "scrape" may not do this \(needs viewer\)/);
    const mint = await cli(['token', 'create', '--role', 'admin'], token);
    expect(mint.code).toBe(1);
    expect(mint.stderr).toMatch(/role "scrape" may not do this \(needs admin\)/);
  });
});
