import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/http.js';
import { orchard, readToken } from '../helpers/procs.js';

/**
 * Issue 13 item 12, with real processes from dist/: the admin token never reaches a piped
 * stdout (a log file), the hub's state is private (umask 077: data dir 0700, every file 0600,
 * SQLite's included), and the agent joins with a token from a 0600 file instead of argv.
 */
describe('secrets stay out of logs, ps and world-readable files', () => {
  const c = new Cluster();
  beforeAll(async () => {
    await c.startHub();
  }, 120_000);
  afterAll(async () => {
    await c.cleanup();
  });

  it('does not print the admin token when stdout is not a terminal; says where the 0600 file is', async () => {
    const hubDir = join(c.dir, 'hub');
    const token = readToken(hubDir);
    await waitFor('hub said where the token is', () => c.hub!.output().includes('admin.token'), 10_000, 100);
    expect(c.hub!.output()).not.toContain(token);
    expect(c.hub!.output()).toContain(`Admin token created in ${join(hubDir, 'admin.token')} (mode 0600); not printed because stdout is not a terminal`);
  });

  it("keeps the hub's data dir 0700 and every file in it 0600, the store's files included", () => {
    const hubDir = join(c.dir, 'hub');
    expect(statSync(hubDir).mode & 0o777).toBe(0o700);
    const files = readdirSync(hubDir);
    expect(files).toEqual(expect.arrayContaining(['admin.token', 'auth.json', 'ca.key']));
    expect(files.some((f) => /\.(db|sqlite)/.test(f))).toBe(true);
    for (const f of files) {
      const mode = statSync(join(hubDir, f)).mode & 0o777;
      expect({ f, groupOrOther: mode & 0o077 }).toEqual({ f, groupOrOther: 0 });
    }
  });

  it('joins an agent with --token-file, without the token on its command line or a warning', async () => {
    const tokenFile = join(c.dir, 'join.token');
    writeFileSync(tokenFile, `${await c.joinToken(1)}\n`, { mode: 0o600 });
    const name = c.nodeName('tf');
    const p = orchard([
      'agent',
      '--hub',
      `127.0.0.1:${c.httpPort}`,
      '--token-file',
      tokenFile,
      '--name',
      name,
      '--data-dir',
      join(c.dir, 'agents', 'tf'),
      '--no-services',
    ]);
    c.agents.set('tf', p);
    await c.waitNodeReady('tf');
    expect(p.child.spawnargs.join(' ')).not.toMatch(/K10[0-9a-f]{64}/);
    expect(p.output()).not.toMatch(/--token is visible/);
  }, 60_000);

  it('still accepts --token, with a warning that ps shows it', async () => {
    const p = await c.startAgent('tok');
    await c.waitNodeReady('tok');
    expect(p.output()).toMatch(/--token is visible to every local user/);
  }, 60_000);
});
