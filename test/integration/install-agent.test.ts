import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, ensureBuilt } from '../helpers/procs.js';

describe('scripts/install-agent.sh (device install as a systemd service)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-install-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a unit that runs the agent and keeps the token out of the command line', () => {
    ensureBuilt();
    const token = `K10${'a'.repeat(64)}::abcdef.${'s'.repeat(32)}`;
    execFileSync('bash', [join(REPO, 'scripts', 'install-agent.sh'), '--hub', 'hub.local:8443', '--token', token, '--name', 'pi-7', '--labels', 'zone=north', '--no-start'], {
      env: { ...process.env, ORCHARD_ETC_DIR: join(dir, 'etc'), ORCHARD_SYSTEMD_DIR: join(dir, 'systemd') },
      stdio: 'pipe',
    });
    const unit = readFileSync(join(dir, 'systemd', 'orchard-agent.service'), 'utf8');
    expect(unit).toMatch(/^ExecStart=\S+node \S+\/dist\/cli\/main\.js agent --hub hub\.local:8443 --name pi-7 --data-dir \/var\/lib\/orchard-agent --labels zone=north$/m);
    expect(unit).toContain('KillMode=process');
    expect(unit).toContain('Restart=always');
    expect(unit).not.toContain(token);
    const envFile = join(dir, 'etc', 'agent.env');
    expect(readFileSync(envFile, 'utf8')).toBe(`ORCHARD_TOKEN=${token}\n`);
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
  });

  it('refuses a node name that is not a DNS label', () => {
    expect(() =>
      execFileSync('bash', [join(REPO, 'scripts', 'install-agent.sh'), '--hub', 'h', '--token', 't', '--name', 'Bad_Name', '--no-start'], {
        env: { ...process.env, ORCHARD_ETC_DIR: join(dir, 'etc2'), ORCHARD_SYSTEMD_DIR: join(dir, 'sd2') },
        stdio: 'pipe',
      }),
    ).toThrow(/DNS-1123/);
  });
});
