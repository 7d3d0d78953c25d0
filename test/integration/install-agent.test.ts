import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, ensureBuilt } from '../helpers/procs.js';

describe('scripts/install-agent.sh (device install as a systemd service)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-install-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const token = `K10${'a'.repeat(64)}::abcdef.${'s'.repeat(32)}`;

  it('writes a unit that runs the agent with --token-file: the token is in a 0600 file, never on a command line', () => {
    ensureBuilt();
    const given = join(dir, 'given.token');
    writeFileSync(given, `${token}\n`, { mode: 0o600 });
    const r = spawnSync(
      'bash',
      [join(REPO, 'scripts', 'install-agent.sh'), '--hub', 'hub.local:8443', '--token-file', given, '--name', 'pi-7', '--labels', 'zone=north', '--no-start'],
      {
        env: { ...process.env, ORCHARD_ETC_DIR: join(dir, 'etc'), ORCHARD_SYSTEMD_DIR: join(dir, 'systemd') },
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/visible to other users/);
    const unit = readFileSync(join(dir, 'systemd', 'orchard-agent.service'), 'utf8');
    const tokenFile = join(dir, 'etc', 'join.token');
    expect(unit).toMatch(
      /^ExecStart=\S+node \S+\/dist\/cli\/main\.js agent --hub hub\.local:8443 --name pi-7 --data-dir \/var\/lib\/orchard-agent --token-file \S+\/etc\/join\.token --labels zone=north$/m,
    );
    expect(unit).toContain('KillMode=process');
    expect(unit).toContain('Restart=always');
    expect(unit).not.toContain(token);
    expect(unit).not.toContain('EnvironmentFile');
    expect(readFileSync(tokenFile, 'utf8')).toBe(`${token}\n`);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'etc')).mode & 0o777).toBe(0o700);
  });

  it('takes the token from ORCHARD_TOKEN too, and warns when it is given with --token (visible in ps)', () => {
    const run = (args: string[], env: Record<string, string>) =>
      spawnSync('bash', [join(REPO, 'scripts', 'install-agent.sh'), '--hub', 'h:8443', '--name', 'pi-8', '--no-start', ...args], {
        env: { ...process.env, ORCHARD_ETC_DIR: join(dir, 'etc3'), ORCHARD_SYSTEMD_DIR: join(dir, 'sd3'), ...env },
        encoding: 'utf8',
      });
    const viaEnv = run([], { ORCHARD_TOKEN: token });
    expect(viaEnv.status, viaEnv.stderr).toBe(0);
    expect(readFileSync(join(dir, 'etc3', 'join.token'), 'utf8')).toBe(`${token}\n`);
    const viaFlag = run(['--token', token], {});
    expect(viaFlag.status, viaFlag.stderr).toBe(0);
    expect(viaFlag.stderr).toMatch(/--token is visible to other users in ps/);
    const none = run([], { ORCHARD_TOKEN: '' });
    expect(none.status).not.toBe(0);
    expect(none.stderr).toMatch(/--token-file FILE or ORCHARD_TOKEN/);
  });

  it('never lets npm (and its lifecycle scripts, run as root) see ORCHARD_TOKEN', () => {
    // A checkout with no node_modules and no dist/, so the script must run `npm install` and
    // `npm run build`; the npm on PATH is a fake that records the environment it was given.
    const root = join(dir, 'checkout');
    mkdirSync(join(root, 'scripts', 'lib'), { recursive: true });
    copyFileSync(join(REPO, 'scripts', 'install-agent.sh'), join(root, 'scripts', 'install-agent.sh'));
    copyFileSync(join(REPO, 'scripts', 'lib', 'common.sh'), join(root, 'scripts', 'lib', 'common.sh'));
    const bin = join(dir, 'fake-bin');
    const seen = join(dir, 'npm-env.txt');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'npm'), `#!/bin/sh\necho "npm $*" >> '${seen}'\nenv >> '${seen}'\nexit 0\n`);
    chmodSync(join(bin, 'npm'), 0o755);
    const r = spawnSync('bash', [join(root, 'scripts', 'install-agent.sh'), '--hub', 'h:8443', '--name', 'pi-9', '--no-start'], {
      env: {
        ...process.env,
        PATH: `${bin}:${process.env.PATH ?? ''}`,
        ORCHARD_TOKEN: token,
        TOKEN: 'caller-own-token-variable',
        ORCHARD_ETC_DIR: join(dir, 'etc4'),
        ORCHARD_SYSTEMD_DIR: join(dir, 'sd4'),
      },
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const env = readFileSync(seen, 'utf8');
    expect(env).toMatch(/^npm install /m);
    expect(env).toMatch(/^npm run --silent build$/m);
    expect(env).not.toContain(token);
    expect(env).not.toMatch(/^ORCHARD_TOKEN=/m);
    // The token still reaches its 0600 file.
    expect(readFileSync(join(dir, 'etc4', 'join.token'), 'utf8')).toBe(`${token}\n`);
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
